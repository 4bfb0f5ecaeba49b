package handler

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// truncRx is a scriptRx that truncates the shm file at path to size at its
// first call, before it hands out the script: the batch is then published
// into the truncated file.
type truncRx struct {
	*scriptRx
	once sync.Once
	path string
	size int64
}

func (r *truncRx) Receive(pkts []rx.Packet) (int, error) {
	r.once.Do(func() {
		if err := os.Truncate(r.path, r.size); err != nil {
			panic(err)
		}
	})
	return r.scriptRx.Receive(pkts)
}

const shmFaultEnv = "FH_HANDLER_SHM_FAULT" // the child's mode and cut: "0 4096"

// TestShmTruncatedUnderWriter: a feed file truncated under the running
// handler (`truncate -s 0`, `: > file`) made the next store into it fault
// with SIGBUS, and the whole process died: "unexpected fault address",
// "fatal error: fault", a goroutine dump, books gone for every strategy.
// Now the thread that meets the fault (a publishing thread, receive or
// shard, or the heartbeat's) recovers it at the top of its loop, the
// handler logs it and closes Failed, and Stop returns an error wrapping
// shm.ErrTruncated that names the file and its size (feedhandler run exits
// 74). Each case runs in a child process, which the crash killed. Cut at
// 4096 bytes the header's page stays (the heartbeat goes on) and the
// publishing thread faults: its name is in the log.
func TestShmTruncatedUnderWriter(t *testing.T) {
	if v := os.Getenv(shmFaultEnv); v != "" {
		shmFaultChild(t, v)
		return
	}
	for _, m := range modes {
		for _, cut := range []int64{0, 4096} {
			t.Run(fmt.Sprintf("%v/cut-%d", m.mode, cut), func(t *testing.T) {
				cmd := exec.Command(os.Args[0], "-test.run=^TestShmTruncatedUnderWriter$", "-test.count=1", "-test.v")
				cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", shmFaultEnv, int(m.mode), cut))
				out, err := deathsig.CombinedOutput(cmd)
				text := string(out)
				if err != nil || !strings.Contains(text, "stop: shm file ") || !strings.Contains(text, "truncated or removed under the writer") ||
					!strings.Contains(text, "wraps ErrTruncated: true") {
					t.Fatalf("child: %v; want the handler stopped with the file's truncation as its error:\n%s", err, excerpt(text))
				}
				if want := map[Mode]string{ModeRunToCompletion: `"thread":"receive"`, ModeSharded: `"thread":"shard `}[m.mode]; cut != 0 && !strings.Contains(text, want) {
					t.Errorf("the publishing thread (%s) did not report the fault:\n%s", want, excerpt(text))
				}
			})
		}
	}
}

// excerpt is the lines of s that tell how the child ended: its errors
// (a crash's "unexpected fault address" and "fatal error" among them) and
// its last lines.
func excerpt(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if strings.Contains(l, "fault") || strings.Contains(l, "fatal") || strings.Contains(l, `"level":"error"`) {
			keep = append(keep, l)
		}
	}
	return strings.Join(append(keep[:min(len(keep), 8)], lines[max(0, len(lines)-8):]...), "\n")
}

// shmFaultChild runs the handler in mode over a day, its shm file truncated
// to cut bytes at the first receive, and prints how it stopped.
func shmFaultChild(t *testing.T, v string) {
	f := strings.Fields(v)
	mi, _ := strconv.Atoi(f[0])
	cut, _ := strconv.ParseInt(f[1], 10, 64)
	mode := Mode(mi)
	var shards []int
	for _, m := range modes {
		if m.mode == mode {
			shards = m.shards
		}
	}
	var script []rx.Packet
	now := time.Now().UnixNano()
	for _, b := range dayPackets(t, 2000) {
		script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
	}
	name := shmtest.Name(t, "fhshmfault")
	r := &truncRx{scriptRx: &scriptRx{script: script, errAt: -1}, path: shm.Path(name), size: cut}
	h := startRx(t, mode, shards, r, name, zerolog.New(os.Stdout), nil)
	select {
	case <-h.Failed():
	case <-time.After(20 * time.Second):
		fmt.Println("no failure reported")
	}
	err := h.Stop()
	fmt.Printf("stop: %v\nwraps ErrTruncated: %v\n", err, errors.Is(err, shm.ErrTruncated))
}

// TestShmRemovedLogged: a feed file removed under the running handler (an
// operator's rm) does not stop it, and readers that have it open read on,
// but a strategy that opens the name finds nothing: housekeeping finds the
// name gone within a second and logs it, once. Before, nothing said so.
func TestShmRemovedLogged(t *testing.T) {
	var log lockedBuffer
	name := shmtest.Name(t, "fhshmrm")
	h := startRx(t, ModeRunToCompletion, nil, &countRx{}, name, zerolog.New(&log), nil)
	defer h.Stop()
	if err := os.Remove(h.ShmPath()); err != nil {
		t.Fatal(err)
	}
	const want = "shm file no longer under its name"
	waitFor(t, "a log line: "+want, func() bool { return strings.Contains(log.String(), want) })
	if _, err := shm.Open(name); !errors.Is(err, shm.ErrNotExist) {
		t.Errorf("open of the removed name: %v, want ErrNotExist", err)
	}
	select {
	case <-h.Failed():
		t.Errorf("the removal stopped the handler: %v", h.Err())
	default:
	}
}

// TestShmWipedStops: a feed file cut and grown back to its size under the
// running handler (`truncate -s 0 f; truncate -s SIZE f`) gives no fault:
// the writer published on into zero pages, which readers cannot use, and
// the handler went on as if all were well. Housekeeping now finds the
// header gone within a second and stops the handler as a fault does
// (Failed, Stop's error wraps shm.ErrTruncated: exit 74).
func TestShmWipedStops(t *testing.T) {
	var log lockedBuffer
	name := shmtest.Name(t, "fhshmwipe")
	h := startRx(t, ModeRunToCompletion, nil, &countRx{}, name, zerolog.New(&log), nil)
	defer h.Stop()
	fi, err := os.Stat(h.ShmPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(h.ShmPath(), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(h.ShmPath(), fi.Size()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the handler to fail", func() bool {
		select {
		case <-h.Failed():
			return true
		default:
			return false
		}
	})
	if err := h.Stop(); !errors.Is(err, shm.ErrTruncated) {
		t.Errorf("stop: %v, want ErrTruncated", err)
	}
	if want := "shm file truncated under the writer"; !strings.Contains(log.String(), want) {
		t.Errorf("no log line %q:\n%s", want, log.String())
	}
}
