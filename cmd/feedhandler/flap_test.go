package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestRunLinkEvents runs the real binary (CGO_ENABLED=0, as make build
// does) under link events, per receive backend: started as root with
// user: nobody, it switches to nobody and drops every capability once set
// up (cap_bpf, cap_net_admin, cap_net_raw included), and every event
// happens after that, checked on every thread from /proc at the moment of
// the event. Lines A and B take links of their own (two veth pairs); the
// lab's exchange sends each line on its link and serves re-requests of
// the day.
//
//   - flap: line A's link down while line B carries the feed, then up
//     (testRunLinkFlap); then both links down while the exchange sends, a
//     gap on both lines repaired by re-request.
//   - recreate: line A's interface deleted and created again under the
//     same name, a new ifindex (testRunInterfaceRecreated). The socket
//     and io_uring backends join the group on the new device without a
//     capability; AF_XDP, which cannot attach its program to it without
//     one, falls back to a socket for line A.
//
// Each ends with the books published in shared memory equal to the day's.
func TestRunLinkEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starting the handler as root that switches to nobody needs root")
	}
	_, bin := buildForNobody(t, "fhlink")
	day, ref := dayWithBooks(t, 5)
	for _, backend := range []string{"socket", "uring", "xdp"} {
		t.Run("flap/"+backend, func(t *testing.T) { testRunLinkFlap(t, bin, day, ref, backend) })
	}
	for _, backend := range []string{"socket", "uring", "xdp"} {
		t.Run("recreate/"+backend, func(t *testing.T) { testRunInterfaceRecreated(t, bin, day, ref, backend) })
	}
}

// testRunLinkFlap: line A's link goes down (`ip link set DEV down` on the
// handler's side) while the exchange sends a fifth of the day: line B, on
// its own link, carries it alone, nothing is missing, and the handler
// logs line A silent. Up again, line A receives by itself (the XDP
// program, the AF_XDP socket and the group membership stayed). Then both
// links go down while the exchange sends another fifth: a gap on both
// lines, which the handler re-requests over line A's link once it is up
// (recovery.rerequest; no snapshot source configured). No receive error,
// no interface reported gone, no rejoin, no socket unbound.
func testRunLinkFlap(t *testing.T, bin string, day *demo.Day, ref []byte, backend string) {
	r := startLinkRun(t, bin, day, backend)
	lab := r.lab
	data, eos := day.Packets[:len(day.Packets)-3], day.Packets[len(day.Packets)-3:]
	part := func(i int) [][]byte { return data[len(data)*i/5 : len(data)*(i+1)/5] }

	r.send(part(0))
	r.waitDelivered(msgs(part(0)))
	r.waitLines(len(part(0)))

	// Line A's link down; the exchange goes on sending both lines.
	r.checkDropped("line A's link going down")
	if err := lab.SetLink(lab.Dst, lab.DstIf, false); err != nil {
		t.Fatal(err)
	}
	r.checkDropped("line A's link down")
	silentA := `"line":"A","line_timeout":50,`
	silent0 := r.log.count(silentA)
	a0 := r.linePackets("A")
	r.send(part(1))
	r.waitDelivered(msgs(data[:len(data)*2/5]))
	r.heartbeatsUntil("the log saying line A silent while B delivers", func() bool { return r.log.count(silentA) > silent0 })
	if a := r.linePackets("A"); a != a0 {
		t.Errorf("line A received %v packets while its link was down", a-a0)
	}

	// Up again: line A receives by itself.
	again := `"line":"A","silent_for":`
	again0 := r.log.count(again)
	if err := lab.SetLink(lab.Dst, lab.DstIf, true); err != nil {
		t.Fatal(err)
	}
	r.waitLinkUp(lab.Dst, lab.DstIf)
	r.waitLinkUp(lab.Src, lab.SrcIf)
	r.checkDropped("line A's link up")
	r.send(part(2))
	r.waitDelivered(msgs(data[:len(data)*3/5]))
	r.waitFor("the log saying line A receives again", func() bool { return r.log.count(again) > again0 })
	if a := r.linePackets("A"); a <= a0 {
		t.Errorf("line A received nothing after its link came up (%v packets before and after)", a)
	}
	link, _ := lab.Exec(lab.Dst, "ip", "link", "show", "dev", lab.DstIf)
	if backend == "xdp" && !strings.Contains(string(link), "xdp") {
		t.Errorf("no XDP program on line A's interface after the flap:\n%s", link)
	}
	groups, _ := lab.Exec(lab.Dst, "ip", "maddr", "show", "dev", lab.DstIf)
	if !demo.Joined(string(groups), demo.GroupA.Addr().String()) {
		t.Errorf("line A's group %s not joined on its interface after the flap:\n%s", demo.GroupA.Addr(), groups)
	}

	// Both links down while the exchange sends: a gap on both lines.
	r.checkDropped("both links going down")
	for _, dev := range []string{lab.DstIf, r.dstB} {
		if err := lab.SetLink(lab.Dst, dev, false); err != nil {
			t.Fatal(err)
		}
	}
	r.send(part(3))
	for _, dev := range []string{lab.DstIf, r.dstB} {
		if err := lab.SetLink(lab.Dst, dev, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{lab.Dst, lab.DstIf}, {lab.Dst, r.dstB}, {lab.Src, lab.SrcIf}, {lab.Src, r.srcB}} {
		r.waitLinkUp(l[0], l[1])
	}
	r.checkDropped("both links up")
	r.send(part(4))
	r.send(eos)
	body := r.waitDelivered(day.Messages)
	body = r.waitReady(body)
	lost := msgs(part(3))
	t.Logf("gap of %d messages while both links were down; recovery: %v gaps, %v by re-request, %v messages in %v requests; receive dropped %v",
		lost, metricValue(body, "feedhandler_recovery_gaps_detected_total"), metricValue(body, "feedhandler_recovery_rerequest_recovered_total"),
		metricValue(body, "feedhandler_recovery_messages_total"), metricValue(body, "feedhandler_recovery_requests_total"),
		metricValue(body, "feedhandler_receive_dropped_total"))
	if v := metricValue(body, "feedhandler_recovery_gaps_detected_total"); !(v >= 1) {
		t.Errorf("recovery_gaps_detected_total %v after both links were down, want 1 or more", v)
	}
	if v := metricValue(body, "feedhandler_recovery_rerequest_recovered_total"); !(v >= 1) {
		t.Errorf("recovery_rerequest_recovered_total %v, want the gap repaired by re-request", v)
	}
	if v := metricValue(body, "feedhandler_recovery_messages_total"); !(v >= float64(lost)) {
		t.Errorf("recovery_messages_total %v, want at least the %d messages sent while both links were down", v, lost)
	}
	r.checkBackendEvents(body, map[string]float64{"line_interfaces_gone": 0, "line_rejoins": 0}, map[string]float64{"xsk_unbound": 0})
	r.checkNoReceiveError(body)
	r.stop(ref)
}

// testRunInterfaceRecreated: line A's interface (the veth pair) is deleted
// and created again under the same names, a new device with a new
// ifindex, as a driver reload gives, while the handler runs without a
// capability. The socket and io_uring backends find the interface gone
// (line_interfaces_gone, logged once), join the group on the new device
// (IP_ADD_MEMBERSHIP, no capability needed; line_rejoins, logged once) and
// receive line A again. The xdp backend's socket is unbound by the
// deletion (xsk_unbound, logged once); the new device gets no XDP program
// (that needs the capabilities dropped), and the backend receives line A
// through a socket joined on it instead (xdp_socket_fallbacks, logged
// once), line B still through AF_XDP. Before, line A stayed silent until
// a restart. The books equal the day's with no gap.
func testRunInterfaceRecreated(t *testing.T, bin string, day *demo.Day, ref []byte, backend string) {
	r := startLinkRun(t, bin, day, backend)
	lab := r.lab
	data, eos := day.Packets[:len(day.Packets)-3], day.Packets[len(day.Packets)-3:]
	part := func(i int) [][]byte { return data[len(data)*i/3 : len(data)*(i+1)/3] }
	xdp := backend == "xdp"

	r.send(part(0))
	r.waitDelivered(msgs(part(0)))
	r.waitLines(len(part(0)))

	r.checkDropped("line A's interface being deleted")
	if err := lab.DeletePair(); err != nil {
		t.Fatal(err)
	}
	goneEvent := "line_interfaces_gone"
	if xdp {
		goneEvent = "xsk_unbound"
	}
	r.waitFor("line A's interface reported gone ("+goneEvent+")", func() bool {
		return backendEvent(scrape(t, lab), goneEvent) == 1
	})
	r.checkDropped("line A's interface gone")
	if err := lab.Recreate(); err != nil {
		t.Fatal(err)
	}
	r.waitLinkUp(lab.Dst, lab.DstIf)
	r.waitLinkUp(lab.Src, lab.SrcIf)
	r.senderA = r.newSender(lab.SrcIf, demo.GroupA) // the old one's interface went with the old device
	r.checkDropped("line A's interface created again")
	joined := "line A's group joined on the new device (line_rejoins)"
	joinEvent := "line_rejoins"
	if xdp {
		joined, joinEvent = "line A fallen back to a socket joined on the new device (xdp_socket_fallbacks)", "xdp_socket_fallbacks"
	}
	r.waitFor(joined, func() bool { return backendEvent(scrape(t, lab), joinEvent) == 1 })
	a0 := r.linePackets("A")
	r.send(part(1))
	r.waitDelivered(msgs(data[:len(data)*2/3]))
	if a := r.linePackets("A"); a <= a0 {
		t.Errorf("line A received nothing on the new device (%v packets before and after)", a)
	}
	groups, _ := lab.Exec(lab.Dst, "ip", "maddr", "show", "dev", lab.DstIf)
	if !demo.Joined(string(groups), demo.GroupA.Addr().String()) {
		t.Errorf("line A's group %s not joined on the new device:\n%s", demo.GroupA.Addr(), groups)
	}
	if link, _ := lab.Exec(lab.Dst, "ip", "link", "show", "dev", lab.DstIf); xdp && strings.Contains(string(link), "xdp") {
		t.Errorf("an XDP program on the new device:\n%s", link)
	}

	r.send(part(2))
	r.send(eos)
	body := r.waitDelivered(day.Messages)
	body = r.waitReady(body)
	if v := metricValue(body, "feedhandler_recovery_gaps_detected_total"); v != 0 && metricValue(body, "feedhandler_receive_dropped_total") == 0 {
		t.Errorf("recovery_gaps_detected_total %v: line B carried every packet and the receiver dropped none", v)
	}
	if xdp {
		r.checkBackendEvents(body, nil, map[string]float64{"xsk_unbound": 1, "xdp_socket_fallbacks": 1})
		for _, msg := range []string{"unbound the AF_XDP socket", "receiving its lines through sockets"} {
			if n := r.log.count(msg); n != 1 {
				t.Errorf("%q logged %d times, want once:\n%s", msg, n, r.log.brief())
			}
		}
	} else {
		r.checkBackendEvents(body, map[string]float64{"line_interfaces_gone": 1, "line_rejoins": 1}, nil)
		for _, msg := range []string{"the line's interface is gone", "joined the group on it again"} {
			if n := r.log.count(msg); n != 1 {
				t.Errorf("%q logged %d times, want once:\n%s", msg, n, r.log.brief())
			}
		}
		if n := r.log.count("joining the group on it failed"); n != 0 {
			t.Errorf("the join on the new device failed:\n%s", r.log.brief())
		}
	}
	r.checkNoReceiveError(body)
	r.stop(ref)
}

// linkRun is one handler process in a lab of two links: line A on the
// lab's pair, line B on a pair of its own.
type linkRun struct {
	t          *testing.T
	lab        *netlab.Lab
	srcB, dstB string // line B's pair
	day        *demo.Day
	backend    string
	shmName    string
	cmd        *child
	exited     chan error
	log        *syncLog
	// The exchange: a sender per line, each on its line's link.
	senderA, senderB *exchange.Sender
	next             uint64 // the sequence number after the last packet sent
}

func startLinkRun(t *testing.T, bin string, day *demo.Day, backend string) *linkRun {
	t.Helper()
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fhl"})
	srcB, dstB, err := lab.AddPair("10.98.0.1/24", "10.98.0.2/24")
	if err != nil {
		t.Fatal(err)
	}
	r := &linkRun{t: t, lab: lab, srcB: srcB, dstB: dstB, day: day, backend: backend, shmName: shmtest.Name(t, "fhlink"),
		log: new(syncLog), next: 1}
	hist := new(exchange.History)
	for _, p := range day.Packets {
		hist.Record(p)
	}
	var rr *exchange.RerequestServer
	if err := lab.Do(lab.Src, func() (err error) {
		rr, err = exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.AddrPortFrom(lab.SrcIP, demo.RerequestPort),
			Session: day.Session, Message: hist.Message, Seed: 1})
		if err != nil {
			return err
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rr.Close() })
	r.senderA = r.newSender(lab.SrcIf, demo.GroupA)
	r.senderB = r.newSender(srcB, demo.GroupB)

	// line_timeout 50ms: line A is reported silent soon after its link
	// went; poll_timeout 20ms: the backends look for a gone interface
	// that often while idle.
	cfg := fmt.Sprintf(`feed:
  name: linktest
  session: %q
lines:
  a: {interface: %s, group: %s, port: %d}
  b: {interface: %s, group: %s, port: %d}
receive:
  backend: %s
  poll_timeout: 20ms
arbitration:
  hold: 1s
  line_timeout: 50ms
recovery:
  rerequest:
    servers: [%s]
shm:
  name: %s
metrics:
  listen: 127.0.0.1:9477
stats_interval: 1s
log:
  format: json
user: nobody
`, day.Session.String(), lab.DstIf, demo.GroupA.Addr(), demo.GroupA.Port(), dstB, demo.GroupB.Addr(), demo.GroupB.Port(),
		backend, rr.Addr(), r.shmName)
	cfgPath := filepath.Join(t.TempDir(), "feed.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cmd = boundedCommand(t, "ip", "netns", "exec", lab.Dst, bin, "--feed", cfgPath)
	r.cmd.Stderr = r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan error, 1)
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			r.cmd.Process.Kill()
			<-r.exited
		}
	})
	r.waitFor("the handler set up (privileges after setup)", func() bool { return r.log.count("privileges after setup") > 0 })
	logs := r.log.String()
	if !strings.Contains(logs, `"capabilities_kept":"none"`) || !strings.Contains(logs, `"uid":65534`) {
		t.Fatalf("after setup the handler must run as uid 65534 with no capability:\n%s", logs)
	}
	if !strings.Contains(logs, `"backend":"`+backend) {
		t.Fatalf("backend is not %s:\n%s", backend, logs)
	}
	return r
}

// newSender opens a sender of line group on interface dev of the
// exchange's namespace, at 20,000 packets a second, closed at the
// test's cleanup.
func (r *linkRun) newSender(dev string, group netip.AddrPort) *exchange.Sender {
	r.t.Helper()
	var s *exchange.Sender
	if err := r.lab.Do(r.lab.Src, func() (err error) {
		s, err = exchange.NewSender(exchange.Config{Interface: dev, Rate: 20000, Lines: []exchange.Line{{Group: group.Addr(), Port: group.Port()}}})
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { s.Close() })
	return s
}

// send sends pkts on both lines at once.
func (r *linkRun) send(pkts [][]byte) {
	r.t.Helper()
	errB := make(chan error, 1)
	go func() {
		_, err := r.senderB.Send(context.Background(), exchange.Packets(pkts))
		errB <- err
	}()
	_, err := r.senderA.Send(context.Background(), exchange.Packets(pkts))
	if err = errors.Join(err, <-errB); err != nil {
		r.t.Fatal(err)
	}
	if p, err := moldudp64.Parse(pkts[len(pkts)-1]); err == nil {
		r.next = p.Next()
	}
}

// heartbeatsUntil sends a heartbeat on both lines every 20 ms until cond
// holds: a line still up keeps delivering.
func (r *linkRun) heartbeatsUntil(what string, cond func() bool) {
	r.t.Helper()
	hb := moldudp64.AppendHeader(nil, r.day.Session, r.next, 0)
	r.waitFor(what, func() bool {
		if cond() {
			return true
		}
		r.send([][]byte{hb})
		return false
	})
}

// waitFor polls cond every 20 ms, for at most 30 s.
func (r *linkRun) waitFor(what string, cond func() bool) {
	r.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-r.exited:
			r.exited <- err
			r.t.Fatalf("waiting for %s: the handler exited: %v\n%s", what, err, r.log.brief())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %s in 30s:\nlog (stats lines but the last left out):\n%s", what, r.log.brief())
		}
	}
}

// waitDelivered waits for the handler to have delivered n messages and
// returns that scrape.
func (r *linkRun) waitDelivered(n uint64) (body string) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d messages delivered", n), func() bool {
		body = scrape(r.t, r.lab)
		return metricValue(body, "feedhandler_delivered_messages_total") == float64(n)
	})
	return body
}

// waitLines waits for each line to have read n packets (or the
// receiver to have dropped the rest): none of them is left in a queue to
// be counted after a link event.
func (r *linkRun) waitLines(n int) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d packets read on each line", n), func() bool {
		body := scrape(r.t, r.lab)
		dropped := metricValue(body, "feedhandler_receive_dropped_total")
		for _, line := range []string{"A", "B"} {
			if !(sampleValue(body, "feedhandler_line_packets_total", `line="`+line+`"`)+dropped >= float64(n)) {
				return false
			}
		}
		return true
	})
}

// waitReady waits for /readyz to say ready with no gap open and no book
// stale.
func (r *linkRun) waitReady(body string) string {
	r.t.Helper()
	r.waitFor("ready, no gap open, no book stale", func() bool {
		body = scrape(r.t, r.lab)
		code, _ := httpGet(r.lab, "/readyz")
		return code == 200 && metricValue(body, "feedhandler_ready") == 1 && metricValue(body, "feedhandler_recovery_open_gaps") == 0 &&
			metricValue(body, "feedhandler_gaps_unrecovered") == 0 && metricValue(body, "feedhandler_books_stale") == 0
	})
	return body
}

// waitLinkUp waits for dev of namespace ns to be operationally up: the
// kernel has its carrier and (linkwatch) its queueing discipline back,
// so that what is sent goes out.
func (r *linkRun) waitLinkUp(ns, dev string) {
	r.t.Helper()
	r.waitFor(dev+" operationally up", func() bool {
		out, err := r.lab.Exec(ns, "ip", "-o", "link", "show", "dev", dev)
		return err == nil && strings.Contains(string(out), "state UP")
	})
}

// checkDropped fails the test unless every thread of the handler runs as
// uid nobody (65534) with no effective and no permitted capability, read
// from /proc now.
func (r *linkRun) checkDropped(when string) {
	r.t.Helper()
	pid := r.cmd.Process.Pid
	checkNoCaps(r.t, pid, when)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		r.t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if uid, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok && strings.Join(strings.Fields(uid), " ") != "65534 65534 65534 65534" {
			r.t.Fatalf("%s: the handler's uids are %s, want nobody's (65534)", when, strings.TrimSpace(uid))
		}
	}
}

// linePackets is feedhandler_line_packets_total of line.
func (r *linkRun) linePackets(line string) float64 {
	return sampleValue(scrape(r.t, r.lab), "feedhandler_line_packets_total", `line="`+line+`"`)
}

// checkBackendEvents checks receive_backend_events_total: want of the
// socket backends (socket, uring), or wantXDP of xdp.
func (r *linkRun) checkBackendEvents(body string, want, wantXDP map[string]float64) {
	r.t.Helper()
	if r.backend == "xdp" {
		want = wantXDP
	}
	for name, v := range want {
		if got := backendEvent(body, name); got != v {
			r.t.Errorf("receive_backend_events_total{counter=%q} %v, want %v", name, got, v)
		}
	}
}

// checkNoReceiveError: the receiver returned no error, by the metric
// and by the log (the handler logs each, at most one line a second, with
// the message "receive").
func (r *linkRun) checkNoReceiveError(body string) {
	r.t.Helper()
	if v := metricValue(body, "feedhandler_receive_errors_total"); v != 0 {
		r.t.Errorf("receive_errors_total %v, want 0", v)
	}
	if n := r.log.count(`"message":"receive"`); n != 0 {
		r.t.Errorf("%d receive errors logged:\n%s", n, r.log.brief())
	}
}

// stop interrupts the handler, which must exit 0, and compares the books
// it published with the day's.
func (r *linkRun) stop(ref []byte) {
	r.t.Helper()
	r.t.Logf("the handler's warnings and errors:\n%s", r.log.levels(`"level":"warn"`, `"level":"error"`))
	stopAndCompare(r.t, r.cmd, r.exited, r.shmName, ref, r.log.brief)
}

// msgs counts the messages of MoldUDP64 packets.
func msgs(pkts [][]byte) uint64 {
	var n uint64
	for _, b := range pkts {
		if p, err := moldudp64.Parse(b); err == nil {
			n += uint64(p.Messages())
		}
	}
	return n
}

// sampleValue returns the value of the first sample of name whose labels
// contain label (`line="A"`), NaN when there is none.
func sampleValue(body, name, label string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name+"{") && strings.Contains(l, label) {
			return metricValue(l, name)
		}
	}
	return metricValue("", name)
}

func backendEvent(body, counter string) float64 {
	return sampleValue(body, "feedhandler_receive_backend_events_total", `counter="`+counter+`"`)
}

// syncLog is a bytes.Buffer for one writer and one reader at once: a
// child's stderr written by exec's copying goroutine, or a viewer's
// output, read by the test.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// brief is the log without its stats lines but the last, for a failure.
func (l *syncLog) brief() string {
	var b strings.Builder
	var stats string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, `"message":"stats"`) {
			stats = line
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String() + stats
}

// levels is the log's lines that contain one of levels.
func (l *syncLog) levels(levels ...string) string {
	var b strings.Builder
	for _, line := range strings.Split(l.String(), "\n") {
		for _, lv := range levels {
			if strings.Contains(line, lv) {
				b.WriteString(line + "\n")
				break
			}
		}
	}
	return b.String()
}

// count returns how many lines of the log contain s.
func (l *syncLog) count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}
