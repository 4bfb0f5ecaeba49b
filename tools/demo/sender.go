package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/tools/mcast"
	"github.com/marketfeed/feedhandler/tools/netlab"
)

// senderEnv carries the sender's job to the re-executed process.
const senderEnv = "FEEDHANDLER_DEMO_SENDER"

// senderJob is what the sender process does.
type senderJob struct {
	Packets string       // file of packets, one BinaryFILE record each
	Config  mcast.Config // lines, rate, injection
}

// MaybeSender turns the process into the demo's sender when it was started
// as one (by Run, through the environment) and exits; otherwise it returns
// at once. Programs that call Run (feedhandler, e2ebench, tests' TestMain)
// call it first thing in main.
//
// The sender is a separate process so that it competes with the handler for
// CPUs only as another process would, not for the handler's Go scheduler.
func MaybeSender() {
	spec := os.Getenv(senderEnv)
	if spec == "" {
		return
	}
	st, err := runSender(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo sender:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(st)
	os.Exit(0)
}

func runSender(spec string) (mcast.Stats, error) {
	var job senderJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		return mcast.Stats{}, err
	}
	f, err := os.Open(job.Packets)
	if err != nil {
		return mcast.Stats{}, err
	}
	defer f.Close()
	var pkts [][]byte
	r := dayfile.NewReader(f)
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return mcast.Stats{}, err
		}
		pkts = append(pkts, append([]byte(nil), p...))
	}
	s, err := mcast.NewSender(job.Config)
	if err != nil {
		return mcast.Stats{}, err
	}
	defer s.Close()
	return s.Send(context.Background(), mcast.Packets(pkts))
}

// send runs the sender process in the lab's source namespace and waits
// for it. A cancelled ctx kills it.
func send(ctx context.Context, lab *netlab.Lab, dir string, pkts [][]byte, cfg mcast.Config) (mcast.Stats, error) {
	path := filepath.Join(dir, "packets")
	f, err := os.Create(path)
	if err != nil {
		return mcast.Stats{}, err
	}
	w := dayfile.NewWriter(bufio.NewWriter(f))
	for _, p := range pkts {
		if err := w.WriteMessage(p); err != nil {
			f.Close()
			return mcast.Stats{}, err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return mcast.Stats{}, err
	}
	if err := f.Close(); err != nil {
		return mcast.Stats{}, err
	}
	spec, err := json.Marshal(senderJob{Packets: path, Config: cfg})
	if err != nil {
		return mcast.Stats{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return mcast.Stats{}, err
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Src, self)
	cmd.Env = append(os.Environ(), senderEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return mcast.Stats{}, fmt.Errorf("demo sender: %w", err)
	}
	var st mcast.Stats
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("demo sender output %q: %w", out, err)
	}
	if len(st.Lines) == 0 {
		return st, errors.New("demo sender: no line statistics")
	}
	return st, nil
}
