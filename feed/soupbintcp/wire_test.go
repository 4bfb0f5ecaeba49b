package soupbintcp_test

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// TestWireTshark captures what the clients really write (soupbintcp.Client:
// Login Request, Client Heartbeats, Logout Request; the MoldUDP64
// re-request client: a request) on a veth between two network namespaces,
// against a server that writes its own bytes, and has Wireshark's
// SoupBinTCP and MoldUDP64 dissectors decode the capture field by field.
// TestTshark decodes what the encoders append; this checks the clients'
// own writes and the order of the exchange on the wire.
func TestWireTshark(t *testing.T) {
	ts := tshark.New(t)
	lab := netlab.ForTest(t, netlab.Options{Prefix: "soupw"})
	const soupPort, moldPort = 26500, 26400

	var ln net.Listener
	var udp *net.UDPConn
	if err := lab.Do(lab.Dst, func() error {
		var err error
		if ln, err = net.Listen("tcp4", netip.AddrPortFrom(lab.DstIP, soupPort).String()); err != nil {
			return err
		}
		udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.DstIP, moldPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer udp.Close()

	// The capture, on the server's side of the veth: tshark writes it and
	// prints each packet (-P), so that a probe seen in the capture says
	// it has started (dumpcap says "Capturing on" before it captures).
	tsharkPath, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wire.pcap")
	capture := exec.Command("ip", "netns", "exec", lab.Dst, tsharkPath, "-i", lab.DstIf, "-f", "tcp or udp", "-l", "-P", "-w", path)
	stdout, err := capture.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := deathsig.Start(capture); err != nil {
		t.Fatal(err)
	}
	captureDone := false
	stopCapture := func() {
		if captureDone {
			return
		}
		captureDone = true
		capture.Process.Signal(os.Interrupt) //nolint:errcheck
		capture.Wait()                       //nolint:errcheck
	}
	defer stopCapture()
	printed := make(chan string, 4096)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case printed <- sc.Text():
			default:
			}
		}
	}()
	var probe net.Conn
	if err := lab.Do(lab.Src, func() error {
		var err error
		probe, err = net.Dial("udp4", netip.AddrPortFrom(lab.DstIP, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	// mark sends probes of n bytes until the capture prints one: what was
	// sent before it is in the capture file.
	mark := func(n int) {
		t.Helper()
		want := fmt.Sprintf("Len=%d", n)
		for i := 0; i < 200; i++ {
			probe.Write(make([]byte, n)) //nolint:errcheck
			deadline := time.After(100 * time.Millisecond)
			for {
				select {
				case line := <-printed:
					if strings.Contains(line, "→ 9 ") && strings.HasSuffix(line, want) {
						return
					}
					continue
				case <-deadline:
				}
				break
			}
		}
		t.Fatalf("the capture printed none of 200 probes of %d bytes in 20 s", n)
	}
	mark(5)

	// The server: Login Accepted and one Sequenced Data packet, then it
	// waits for a Client Heartbeat and the Logout Request.
	heartbeat := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
		login := make([]byte, 2+1+soupbintcp.LoginRequestLen)
		if _, err := io.ReadFull(c, login); err != nil {
			served <- err
			return
		}
		c.Write(append(rawPacket(soupbintcp.TypeLoginAccepted, "      GEN1"+"                   1"), rawPacket(soupbintcp.TypeSequencedData, "hello")...)) //nolint:errcheck
		hdr := make([]byte, 3)
		for {
			if _, err := io.ReadFull(c, hdr); err != nil {
				served <- err
				return
			}
			switch hdr[2] {
			case soupbintcp.TypeClientHeartbeat:
				select {
				case <-heartbeat:
				default:
					close(heartbeat)
				}
			case soupbintcp.TypeLogoutRequest:
				served <- nil
				return
			}
		}
	}()
	in := func(fn func() error) error { return lab.Do(lab.Src, fn) }
	var cl *soupbintcp.Client
	if err := in(func() error {
		var err error
		cl, err = soupbintcp.Dial(context.Background(), soupbintcp.ClientConfig{
			Addr: netip.AddrPortFrom(lab.DstIP, soupPort).String(), Username: "lab", Password: "secret", Session: "GEN1", Sequence: 1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if typ, p, err := cl.Next(); typ != soupbintcp.TypeSequencedData || string(p) != "hello" || err != nil {
		t.Fatalf("Next: %q %q %v, want the server's Sequenced Data", typ, p, err)
	}
	select {
	case <-heartbeat:
	case <-time.After(20 * time.Second):
		t.Fatal("no Client Heartbeat in 20 s")
	}
	if err := cl.Logout(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}

	// A MoldUDP64 request from the re-request client.
	rr, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.AddrPortFrom(lab.DstIP, moldPort)}}, in)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	rr.Want(moldudp64.NewSession("GEN1"), moldudp64.Range{First: 1 << 33, Count: 70000}, time.Now().UnixNano())
	rr.Poll(time.Now().UnixNano(), func(moldudp64.Packet) {})
	udp.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	if _, _, err := udp.ReadFromUDP(make([]byte, 64)); err != nil {
		t.Fatalf("the request did not arrive: %v", err)
	}
	mark(6)
	stopCapture()

	// SoupBinTCP, from the client.
	out := ts.Output("-r", path, "-d", "tcp.port==26500,soupbintcp", "-Y", "tcp.dstport==26500 && soupbintcp", "-T", "pdml")
	var doc struct {
		Packets []struct {
			Protos []struct {
				Name   string      `xml:"name,attr"`
				Fields []pdmlField `xml:"field"`
			} `xml:"proto"`
		} `xml:"packet"`
	}
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var sent []string
	for _, p := range doc.Packets {
		for _, pr := range p.Protos {
			if pr.Name != "soupbintcp" {
				continue
			}
			f := map[string]string{}
			collect(pr.Fields, f)
			typ := strings.Trim(f["soupbintcp.packet_type"], "'")
			if typ == "L" {
				sent = append(sent, strings.Join([]string{typ, f["soupbintcp.packet_length"], f["soupbintcp.username"], f["soupbintcp.password"],
					f["soupbintcp.session"], f["soupbintcp.req_seq_num"], f["invalid"]}, "|"))
				continue
			}
			sent = append(sent, typ+"|"+f["soupbintcp.packet_length"])
		}
	}
	want := "L|47|lab   |secret    |      GEN1|1|"
	if len(sent) < 3 || sent[0] != want || sent[len(sent)-1] != "O|1" {
		t.Fatalf("the client sent %q; want %q, then Client Heartbeats (R|1), then O|1", sent, want)
	}
	for _, s := range sent[1 : len(sent)-1] {
		if s != "R|1" {
			t.Errorf("between the login and the logout the client sent %q; want only Client Heartbeats (R|1): %q", s, sent)
		}
	}

	// MoldUDP64: the request, capped at the client's default 2000 messages.
	out = ts.Output("-r", path, "-d", "udp.port==26400,moldudp64", "-Y", "moldudp64", "-T", "fields",
		"-e", "moldudp64.session", "-e", "moldudp64.sequence", "-e", "moldudp64.count", "-e", "udp.length")
	if got, want := strings.TrimSpace(string(out)), "GEN1      \t8589934592\t2000\t28"; got != want {
		t.Errorf("tshark read the request as %q, want %q", got, want)
	}
}
