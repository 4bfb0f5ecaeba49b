package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestRunAnswersWhileStarting: metrics.listen answers from the moment it is
// bound, while the handler sets up (held here in its Start): /healthz 200
// "alive: starting", /readyz 503 "not ready: starting", /metrics a valid
// exposition with feedhandler_starting 1 and feedhandler_ready 0. Before,
// the port was bound but served only once set up: a scrape or a health
// check during a start of seconds hung until its own timeout (Prometheus:
// up 0). The setup then fails: run returns its error and the port is
// closed.
func TestRunAnswersWhileStarting(t *testing.T) {
	// In a network namespace of the test's own: run (in this process)
	// on a thread switched into it, so its sockets are the namespace's,
	// and the test's connections dialled there.
	ns := loNetns(t, "fhstart")
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netlab.Do(ns, func() (err error) {
			c, err = new(net.Dialer).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	free := listenIn(t, ns)
	addr := free.Addr().String()
	free.Close()
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := "feed:\n  name: fh-start\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n" +
		"receive:\n  backend: socket\nmetrics:\n  listen: " + addr + "\nlog:\n  level: warn\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	setupFailed := errors.New("test: setup failed")
	defer func(f func(context.Context, handler.Config) (*handler.Handler, error)) { handlerStart = f }(handlerStart)
	handlerStart = func(context.Context, handler.Config) (*handler.Handler, error) {
		close(entered)
		<-release
		return nil, setupFailed
	}
	done := make(chan error, 1)
	go func() {
		var err error
		if nerr := netlab.Do(ns, func() error {
			err = runFeed([]string{"--feed", path})
			return nil
		}); nerr != nil {
			err = nerr
		}
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("run returned before its setup: %v", err)
	}
	// A bound on a broken endpoint, not a timing threshold: answered, a
	// request takes microseconds.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: dial}}
	get := func(p string) (int, string) {
		resp, err := client.Get("http://" + addr + p)
		if err != nil {
			t.Errorf("GET %s during the setup: %v", p, err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "alive: starting\n" {
		t.Errorf("/healthz during the setup: %d %q, want 200 \"alive: starting\\n\"", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.HasPrefix(body, "not ready: starting") {
		t.Errorf("/readyz during the setup: %d %q, want 503 \"not ready: starting ...\"", code, body)
	}
	if code, body := get("/metrics"); code != 200 {
		t.Errorf("/metrics during the setup: %d %q, want 200", code, body)
	} else {
		wantStarting(t, body, "fh-start")
	}
	close(release)
	if err := await(t, "run's return after its setup failed", done); !errors.Is(err, setupFailed) {
		t.Errorf("run returned %v, want the setup's error", err)
	}
	if c, err := dial(context.Background(), "tcp", addr); err == nil {
		c.Close()
		t.Errorf("metrics.listen %s still accepts after the failed start", addr)
	}
}

// wantStarting fails t unless body, /metrics while the handler of feed
// sets up, is the text format with feedhandler_starting 1 and
// feedhandler_ready 0, one gauge each labelled with the feed.
func wantStarting(t *testing.T, body, feed string) {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Errorf("/metrics during the setup is not the text format: %v\n%s", err, body)
	}
	for name, want := range map[string]float64{"feedhandler_starting": 1, "feedhandler_ready": 0} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != want ||
			len(f.Metric[0].Label) != 1 || f.Metric[0].Label[0].GetValue() != feed {
			t.Errorf("/metrics during the setup: %s %v, want one gauge %v with feed=%q\n%s", name, f, want, feed, body)
		}
	}
}
