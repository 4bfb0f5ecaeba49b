package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestMetricsServerTimeouts: metrics.listen's server ends what a client
// holds without going on: a keep-alive connection left idle after its
// scrape, a request whose body never comes (the body slowloris: the
// server reads a body the handler left unread before it answers), and a
// client that never reads its answer (the handler's write waits on it).
// Each held a connection and a goroutine for ever (and, on /metrics, a
// rendering buffer of the Exposition's), however many a client opened:
// the server had only ReadHeaderTimeout. The timeouts are shortened here;
// the bounds are a broken server's, not timing thresholds.
func TestMetricsServerTimeouts(t *testing.T) {
	saved := metricsTimeouts
	t.Cleanup(func() { metricsTimeouts = saved })
	metricsTimeouts = httpTimeouts{header: 200 * time.Millisecond, read: 200 * time.Millisecond,
		write: 200 * time.Millisecond, idle: 200 * time.Millisecond}

	// The server and its clients in a network namespace of the test's
	// own.
	ns := loNetns(t, "fhhttpto")
	ln := listenIn(t, ns)
	e := serveEndpoints(ln, "timeouts")
	defer e.close()
	// /big: an answer larger than both sockets' buffers, for the reader
	// that never reads; the handler reports how its write ended.
	wrote := make(chan error, 1)
	mux := http.NewServeMux()
	mux.Handle("/metrics", e.start)
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 1<<20)
		var err error
		for i := 0; i < 256 && err == nil; i++ {
			_, err = w.Write(chunk)
		}
		wrote <- err
	})
	e.running.Store(mux)

	// closed reads c until the server closes it, and says whether it
	// did within the bound.
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	dial := func() net.Conn {
		var c net.Conn
		if err := netlab.Do(ns, func() (err error) {
			c, err = net.Dial("tcp", ln.Addr().String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial()
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Close {
			t.Fatalf("scrape: %s, close %v; want 200 on a connection kept alive", res.Status, res.Close)
		}
		if !closed(c) {
			t.Fatal("an idle keep-alive connection still open 20 s after its scrape: no IdleTimeout")
		}
	})
	t.Run("body never sent", func(t *testing.T) {
		c := dial()
		io.WriteString(c, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
		if !closed(c) {
			t.Fatal("a request whose body never comes still held 20 s later: no ReadTimeout")
		}
	})
	t.Run("answer never read", func(t *testing.T) {
		c := dial()
		// A small receive buffer, so that the answer fills it soon.
		if tc, ok := c.(*net.TCPConn); ok {
			if raw, err := tc.SyscallConn(); err == nil {
				raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}
		}
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		select {
		case err := <-wrote:
			if err == nil {
				t.Fatal("256 MiB written to a client that reads nothing")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the answer's write still waiting on a client that reads nothing 20 s later: no WriteTimeout")
		}
	})
}
