package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

func init() {
	register(&command{name: "version", summary: "print the module version and VCS revision (also: feedhandler --version)", run: printVersion})
}

// printVersion prints versionLine for this binary on stdout: what a bug
// report or a deployment's inventory names the build by.
func printVersion(args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler version (or feedhandler --version)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return configError{err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return configError{fmt.Errorf("unexpected argument %q: version takes no arguments", fs.Arg(0))}
	}
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprintln(os.Stdout, versionLine(bi, ok))
	return nil
}

// versionLine is "feedhandler VERSION, revision REV[ (modified)][, TIME],
// GO OS/ARCH" from the build information the go command embeds: the main
// module's version ("(devel)" when built from a checkout rather than
// `go install module@version`, and when the binary has none) and the VCS
// revision it was built at (vcs.revision; "(devel)" when the build
// stamped none: -buildvcs=false, or not built in a repository).
func versionLine(bi *debug.BuildInfo, ok bool) string {
	version, rev, modified, at := "(devel)", "(devel)", "", ""
	if ok && bi != nil {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			case "vcs.time":
				at = ", " + s.Value
			}
		}
	}
	return fmt.Sprintf("feedhandler %s, revision %s%s%s, %s %s/%s", version, rev, modified, at, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
