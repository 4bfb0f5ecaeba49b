package demo

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// senderEnv carries the sender's job to the re-executed process.
const senderEnv = "FEEDHANDLER_DEMO_SENDER"

// senderJob is what the sender process does.
type senderJob struct {
	Packets string          // file of packets, one BinaryFILE record each
	Config  exchange.Config // lines, rate, injection
	// Progress, if set, is a file the sender keeps overwriting with the
	// highest sequence number it has offered (8 bytes, big endian).
	Progress string
	// Gates hold the sender back: before packet At of each (0: the last),
	// it creates Path+".waiting" and waits for the file Path. Run gives a
	// late joining handler's gate (the end of the session, opened once
	// the handler is started: a short day sent before the handler was set
	// up would otherwise leave the lines silent by then, and the handler
	// would never hear of the session) and a link flap's two (Flap.run).
	// The waits are not counted in Stats.Elapsed.
	Gates []gate
	// OnlyA are datagrams sent on line A alone (Config.Lines[0]), right
	// before the input packet of their index, from a socket of their own:
	// a corrupt copy one line brings.
	OnlyA map[int][][]byte
}

// gate holds a sender back before packet At (0: the last) until the file
// Path exists (senderJob.Gates).
type gate struct {
	Path string
	At   int
}

// gateWaitMax bounds the sender's wait at a gate (a demo whose handler
// takes longer than this to start has failed anyway).
const gateWaitMax = 10 * time.Minute

// gated yields pkts, waiting at each of gates for its file to exist before
// its packet (At 0 or beyond the last: the last); *waited is the time spent
// waiting. Two gates at one packet are waited for in turn.
func gated(pkts [][]byte, gates []gate, waited *time.Duration) iter.Seq[[]byte] {
	at := func(g gate) int {
		if g.At <= 0 || g.At >= len(pkts) {
			return len(pkts) - 1
		}
		return g.At
	}
	return func(yield func([]byte) bool) {
		for i, p := range pkts {
			for _, g := range gates {
				if at(g) != i {
					continue
				}
				os.WriteFile(g.Path+".waiting", nil, 0o600)
				t0 := time.Now()
				for time.Since(t0) < gateWaitMax {
					if _, err := os.Stat(g.Path); err == nil {
						break
					}
					time.Sleep(time.Millisecond)
				}
				*waited += time.Since(t0)
			}
			if !yield(p) {
				return
			}
		}
	}
}

// onlyA yields src, writing extra[i] to c before its packet i.
func onlyA(src iter.Seq[[]byte], extra map[int][][]byte, c *net.UDPConn) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		i := 0
		for p := range src {
			for _, e := range extra[i] {
				c.Write(e)
			}
			i++
			if !yield(p) {
				return
			}
		}
	}
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

func runSender(spec string) (exchange.Stats, error) {
	var job senderJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		return exchange.Stats{}, err
	}
	pkts, err := readPackets(job.Packets)
	if err != nil {
		return exchange.Stats{}, err
	}
	s, err := exchange.NewSender(job.Config)
	if err != nil {
		return exchange.Stats{}, err
	}
	defer s.Close()
	src, waited := exchange.Packets(pkts), time.Duration(0)
	if len(job.Gates) > 0 {
		src = gated(pkts, job.Gates, &waited)
	}
	if len(job.OnlyA) > 0 {
		a := job.Config.Lines[0]
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Group, a.Port)))
		if err != nil {
			return exchange.Stats{}, err
		}
		defer c.Close()
		src = onlyA(src, job.OnlyA, c)
	}
	if job.Progress == "" {
		st, err := s.Send(context.Background(), src)
		st.Elapsed -= waited
		return st, err
	}
	pf, err := os.OpenFile(job.Progress, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return exchange.Stats{}, err
	}
	defer pf.Close()
	var b [8]byte
	write := func() {
		binary.BigEndian.PutUint64(b[:], s.Sent())
		pf.WriteAt(b[:], 0)
	}
	done, wrote := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(wrote)
		for {
			write()
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	st, err := s.Send(context.Background(), src)
	st.Elapsed -= waited
	close(done)
	<-wrote
	write() // the final position
	return st, err
}

// readProgress returns what the sender last wrote to its progress file
// (0 before it wrote anything).
func readProgress(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// send runs the sender process in the lab's source namespace and waits
// for it. A cancelled ctx kills it.
func send(ctx context.Context, lab *netlab.Lab, dir string, pkts [][]byte, cfg exchange.Config, progress string) (exchange.Stats, error) {
	return sendGated(ctx, lab, dir, pkts, cfg, progress, nil, nil)
}

// sendGated is send whose sender waits at gates (senderJob.Gates; none:
// no wait) and sends onlyA (senderJob.OnlyA).
func sendGated(ctx context.Context, lab *netlab.Lab, dir string, pkts [][]byte, cfg exchange.Config, progress string, gates []gate, onlyA map[int][][]byte) (exchange.Stats, error) {
	path := filepath.Join(dir, "packets")
	if err := writePackets(path, pkts); err != nil {
		return exchange.Stats{}, err
	}
	spec, err := json.Marshal(senderJob{Packets: path, Config: cfg, Progress: progress, Gates: gates, OnlyA: onlyA})
	if err != nil {
		return exchange.Stats{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return exchange.Stats{}, err
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Src, self)
	cmd.Env = append(os.Environ(), senderEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	// Killed with this process however it ends (the handler's receive
	// thread, which ends locked when a run stops it, never forks it).
	out, err := deathsig.Output(cmd)
	if err != nil {
		return exchange.Stats{}, fmt.Errorf("demo sender: %w", err)
	}
	var st exchange.Stats
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("demo sender output %q: %w", out, err)
	}
	if len(st.Lines) == 0 {
		return st, errors.New("demo sender: no line statistics")
	}
	if st.Input != uint64(len(pkts)) {
		// A day cut short never ends its session: the run would wait
		// for the end until its timeout, the handler blamed.
		return st, fmt.Errorf("demo sender: sent %d of the %d packets given", st.Input, len(pkts))
	}
	return st, nil
}

// writePackets writes pkts to the file path, one BinaryFILE record each,
// for the sender process (readPackets).
func writePackets(path string, pkts [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	// dayfile.Writer buffers itself; its Flush writes to f, and would
	// not flush a bufio.Writer between them (it held the day's last
	// records, up to 4 KiB, and they were never written).
	w := dayfile.NewWriter(f)
	for _, p := range pkts {
		if err := w.WriteMessage(p); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readPackets reads the packets writePackets wrote to the file path.
func readPackets(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pkts [][]byte
	r := dayfile.NewReader(f)
	for {
		p, err := r.Next()
		if err == io.EOF {
			return pkts, nil
		}
		if err != nil {
			return nil, err
		}
		pkts = append(pkts, append([]byte(nil), p...))
	}
}
