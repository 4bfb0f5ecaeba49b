// Command feedhandler receives Nasdaq TotalView-ITCH 5.0 over MoldUDP64,
// builds full-depth order books and publishes them into shared memory.
//
//	feedhandler --feed nasdaq.yaml        run the handler (alias: run)
//	feedhandler check --feed nasdaq.yaml  check the file and this host before running it
//	feedhandler inspect [--json] FILE     summarize a BinaryFILE, pcap or pcapng
//	feedhandler replay [flags] INPUT      build books from a file, off the network
//	feedhandler bookview --shm NAME       show the books published in shared memory
//	feedhandler send -a GROUP:PORT FILE   lab exchange: send a file as MoldUDP64 multicast
//	feedhandler glimpse-server --listen ADDR FILE  lab GLIMPSE server: a file's books
//	feedhandler demo                      end-to-end demo in a namespace lab (make demo)
//	feedhandler version                   the module version and VCS revision (also: --version)
//
// Each subcommand lives in its own file and registers itself in init.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/clilog"
	"github.com/marketfeed/feedhandler/internal/demo"
)

type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// log is the subcommands' logger: info and above, on stderr, so that stdout
// carries the result only (a table, JSON, books) and can be piped. The main
// run and the demo replace it with the feed config's log level and format.
var log = clilog.Console(os.Stderr).Level(zerolog.InfoLevel)

func usage() { writeUsage(os.Stderr) }

// versionFlags are the flags feedhandler takes in place of a command, as
// the version command: feedhandler --version.
var versionFlags = []string{"-version", "--version"}

// writeUsage writes the usage and the commands, their summaries in one
// column after the longest name.
func writeUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: feedhandler --feed FILE.yaml | feedhandler COMMAND [flags] [args]")
	fmt.Fprintln(w, "       feedhandler help COMMAND (or COMMAND -h) prints a command's flags")
	fmt.Fprintln(w, "       feedhandler --version prints the version and VCS revision")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	width := 0
	for n := range commands {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s %s\n", width, n, commands[n].summary)
	}
}

func main() {
	demo.MaybeSender() // the demo's sender process re-executes this binary
	args := os.Args[1:]
	// A usage error exits exitConfig, as run's config errors do: the
	// unit's RestartPreventExitStatus= then does not restart a mistyped
	// ExecStart= in a loop, and 2 stays the Go runtime's crash status.
	if len(args) == 0 {
		usage()
		os.Exit(exitConfig)
	}
	name := args[0]
	switch {
	case name == "-h" || name == "-help" || name == "--help":
		usage()
		return
	case slices.Contains(versionFlags, name):
		name, args = "version", args[1:]
	case strings.HasPrefix(name, "-"):
		// The literal form users type: feedhandler --feed nasdaq.yaml.
		name = "run"
	default:
		args = args[1:]
	}
	if name == "help" {
		// feedhandler help [COMMAND]: what -h prints, exit 0.
		if len(args) == 1 {
			if c, ok := commands[args[0]]; ok {
				c.run([]string{"-h"}) // prints its usage, returns flag.ErrHelp
				return
			}
		}
		usage()
		if len(args) > 0 {
			os.Exit(exitConfig)
		}
		return
	}
	c, ok := commands[name]
	if !ok {
		hint := ""
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		if s := config.Suggest(name, names); s != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		} else if ext := filepath.Ext(name); ext == ".yaml" || ext == ".yml" {
			hint = fmt.Sprintf(" (a feed file goes with --feed: feedhandler --feed %s)", name)
		}
		fmt.Fprintf(os.Stderr, "feedhandler: unknown command %q%s\n", name, hint)
		usage()
		os.Exit(exitConfig)
	}
	if err := c.run(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the flag set printed its usage
		}
		if errors.Is(err, config.ErrInvalid) {
			// file:line: field: problem, one line each, as compilers print them.
			fmt.Fprintln(os.Stderr, err)
		} else {
			// Once: some commands' errors start with their name already.
			msg := err.Error()
			if !strings.HasPrefix(msg, name+": ") {
				msg = name + ": " + msg
			}
			fmt.Fprintln(os.Stderr, "feedhandler "+msg)
		}
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
