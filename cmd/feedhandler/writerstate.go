package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/marketfeed/feedhandler/proto/shm"
)

// bookview --once's exit status when the books were printed but their
// writer is not live, one per state so that a script can tell stale books
// from live ones and why. The Python reader's command uses the same codes.
const (
	exitWriterClosed    = 3
	exitWriterDead      = 4
	exitWriterRestarted = 5
)

// writerState is what bookview tells of the writer.
type writerState struct {
	State        string  `json:"state"` // live, closed, dead, restarted
	Pid          int     `json:"pid"`
	Started      string  `json:"started"` // RFC 3339 with ns
	HeartbeatAge float64 `json:"heartbeat_age_seconds"`
	Error        string  `json:"error,omitempty"`

	err error
}

func checkWriter(r *shm.Reader) writerState {
	info := r.Info()
	st := writerState{State: "live", Pid: info.WriterPid, Started: info.StartTime.Format(time.RFC3339Nano),
		HeartbeatAge: heartbeatAge(r).Seconds()}
	if err := r.Check(); err != nil {
		st.err, st.Error = err, err.Error()
		switch {
		case errors.Is(err, shm.ErrClosed):
			st.State = "closed"
		case errors.Is(err, shm.ErrRestarted):
			st.State = "restarted"
		case errors.Is(err, shm.ErrWriterDead):
			st.State = "dead"
		default:
			st.State = "unknown"
		}
	}
	return st
}

func (s writerState) describe() string {
	if s.err == nil {
		return "live"
	}
	return s.err.Error()
}

// heartbeatAge is the age of the writer's last heartbeat (0 if it is in
// the future: clocks of another host).
func heartbeatAge(r *shm.Reader) time.Duration { return max(time.Since(r.Heartbeat()), 0) }

// writerStateError is returned after printing the books of a writer that is
// not live; main exits with its ExitCode.
type writerStateError struct{ state writerState }

func (e *writerStateError) Error() string {
	return fmt.Sprintf("writer %s (pid %d, heartbeat %.3fs ago): %v; the books printed are its last", e.state.State, e.state.Pid, e.state.HeartbeatAge, e.state.err)
}

func (e *writerStateError) Unwrap() error { return e.state.err }

func (e *writerStateError) ExitCode() int {
	switch e.state.State {
	case "dead":
		return exitWriterDead
	case "restarted":
		return exitWriterRestarted
	}
	return exitWriterClosed
}

// writeStateJSON prints {"writer": STATE, "books": BOOKS}, BOOKS being what
// --json alone prints.
func (v *viewer) writeStateJSON(state writerState) error {
	var books bytes.Buffer
	if err := v.writeJSON(&books); err != nil {
		return err
	}
	w, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("bookview: %w", err)
	}
	var out bytes.Buffer
	out.WriteString(`{"writer": `)
	out.Write(w)
	out.WriteString(",\n\"books\": ")
	out.Write(bytes.TrimRight(books.Bytes(), "\n"))
	out.WriteString("}\n")
	if _, err := v.out.Write(out.Bytes()); err != nil {
		return fmt.Errorf("bookview: %w", err)
	}
	return nil
}
