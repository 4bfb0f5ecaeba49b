// Package clilog is the commands' logger set-up: feedhandler and the tools
// log human-readable lines to stderr, timed to the millisecond, and JSON
// timed to the microsecond.
package clilog

import (
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// TimeFieldFormat is the JSON "time" field's layout: RFC 3339 to the
// microsecond. zerolog's default is to the second, which the console
// format then prints as .000.
const TimeFieldFormat = "2006-01-02T15:04:05.000000Z07:00"

// DurationFieldUnit is the unit of a duration field's number (Event.Dur:
// took, retry_in, silent_for, ...): milliseconds, with a fraction
// (took=26.479822 is 26.48 ms), as docs/OPERATIONS.md says. zerolog's
// default, set here so that no change of its default changes the logs.
const DurationFieldUnit = time.Millisecond

// Importing the package sets zerolog's time format and duration unit for
// the process.
func init() {
	zerolog.TimeFieldFormat = TimeFieldFormat
	zerolog.DurationFieldUnit = DurationFieldUnit
	zerolog.DurationFieldInteger = false
}

// Console logs human-readable lines to f, timed to the millisecond,
// coloured only when f is a terminal.
func Console(f *os.File) zerolog.Logger {
	cw := zerolog.ConsoleWriter{Out: f, TimeFormat: "15:04:05.000", NoColor: !isTerminal(f)}
	return zerolog.New(cw).With().Timestamp().Logger()
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
