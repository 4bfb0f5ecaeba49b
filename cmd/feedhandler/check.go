package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/preflight"
)

func init() {
	register(&command{name: "check", summary: "check a feed file and this host before running it: feedhandler check --feed FILE.yaml", run: checkFeed})
}

// exitNotReady is check's exit status when the feed file is valid but the
// host would not run it as configured (a FAIL line).
const exitNotReady = 1

// notReady is check's error when a check failed, or with --strict warned;
// the FAIL and warn lines say why. config counts the FAILs run refuses as
// config errors (preflight.Finding.Config).
type notReady struct{ fails, strictWarns, config int }

func (e notReady) Error() string {
	s := fmt.Sprintf("%d check(s) failed", e.fails)
	if e.config > 0 {
		s += fmt.Sprintf(" (%d that run refuses as a config error, exit %d: no restart fixes it)", e.config, exitConfig)
	}
	if e.strictWarns > 0 {
		s += fmt.Sprintf(" and %d warned (--strict fails warnings too)", e.strictWarns)
	}
	return s
}

// ExitCode is run's status for the same start: exitConfig when a FAIL is
// one run refuses as a config error, else exitNotReady. Before, a FAIL
// was exitNotReady whatever run would do, so a pre-start check or a
// script read a refusal no restart fixes (a capability, a limit, a
// driver's feature) as one a restart may clear.
func (e notReady) ExitCode() int {
	if e.config > 0 {
		return exitConfig
	}
	return exitNotReady
}

// checkFeed loads the feed file as run would, then checks this host
// against it (internal/preflight) and prints one line per finding, the
// config errors run would stop at among them (config.CheckHost's, and the
// snapshot password's, config.LoadCheck). It exits 0 when nothing failed
// (warnings allowed; --strict fails them too), exitNotReady when a check
// failed, and exitConfig, as run does, when the file cannot be read (its
// errors on stderr, nothing checked), or a check failed that run refuses
// as a config error.
func checkFeed(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler check [--strict] [-q] --feed FILE.yaml")
		fs.PrintDefaults()
	}
	feed := fs.String("feed", "", "feed config `FILE.yaml`")
	strict := fs.Bool("strict", false, "exit 1 on warnings too")
	quiet := fs.Bool("q", false, "print warnings and failures only")
	if err := parseFeedFlags(fs, args, feed); err != nil {
		return err
	}
	// Every problem in one run: what stops the file from being read at
	// all (YAML syntax, an unknown key, a wrong type or value) stops here,
	// all of them at once, as run says them; what run refuses and the
	// rest can still be checked past (the snapshot password's variable
	// not set, an interface or a core this host lacks) is a FAIL line each,
	// "file:line: field: what", with the host's findings.
	cfg, err := config.LoadCheck(*feed)
	if err != nil {
		return configError{err}
	}
	return printChecks(os.Stdout, cfg, preflight.RunRefused(cfg, preflight.Host{}, cfg.CheckHost()), *strict, *quiet)
}

// printChecks prints the findings after a summary of the config, and returns
// notReady when one failed (or, strict, warned).
func printChecks(w io.Writer, cfg *config.Config, fs []preflight.Finding, strict, quiet bool) error {
	mode := "run to completion"
	if len(cfg.Cores.Shards) >= 2 {
		mode = fmt.Sprintf("sharded over %d book threads", len(cfg.Cores.Shards))
	}
	// The file read: "ok" when nothing in it is refused, "read" when
	// FAIL config lines follow (an ok above them read as a contradiction),
	// not counted among the ok then.
	level, readOK := preflight.OK.String(), 1
	for _, f := range fs {
		if f.Level == preflight.Fail && f.Topic == "config" {
			level, readOK = "read", 0
		}
	}
	if !quiet {
		fmt.Fprintf(w, "%-4s  %-9s %s: feed %s, %d line(s), backend %s, %s\n", level, "config", cfg.File, cfg.Feed.Name, len(cfg.Lines), cfg.Receive.Backend, mode)
	}
	var fails, warns, refused int
	for _, f := range fs {
		switch f.Level {
		case preflight.Fail:
			fails++
			if f.Config {
				refused++
			}
		case preflight.Warn:
			warns++
		}
		if !quiet || f.Level != preflight.OK {
			fmt.Fprintln(w, f)
		}
	}
	fmt.Fprintf(w, "%d failed, %d warning(s), %d ok\n", fails, warns, len(fs)+readOK-fails-warns)
	if !strict {
		warns = 0
	}
	if fails+warns > 0 {
		return notReady{fails, warns, refused}
	}
	return nil
}
