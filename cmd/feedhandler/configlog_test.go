package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunLogsEffectiveConfig: run logs the config it runs with once at
// start, at info level, as one structured line, defaults and caps applied
// (receive.poll_timeout capped at arbitration.hold/4), and never the
// snapshot password. The start then fails (metrics.listen's port is
// taken), after the line.
func TestRunLogsEffectiveConfig(t *testing.T) {
	const secret = "Zq7pW3xK9r" // 10 characters, SoupBinTCP's most
	t.Setenv("FH_TEST_GLIMPSE_PW", secret)
	// The port taken and the handler in a network namespace of the
	// test's own.
	ns := loNetns(t, "fhcfglog")
	taken := listenIn(t, ns)
	defer taken.Close()
	path := filepath.Join(t.TempDir(), "feed.yaml")
	capPath := filepath.Join(t.TempDir(), "lines.pcap")
	cfg := "feed:\n  name: fhcfglog\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n" +
		"receive:\n  backend: socket\n  poll_timeout: 100ms\narbitration:\n  hold: 20ms\n" +
		"recovery:\n  snapshot:\n    server: 127.0.0.1:1\n    username: FEED01\n    password_env: FH_TEST_GLIMPSE_PW\n" +
		"metrics:\n  listen: " + taken.Addr().String() + "\nlog:\n  format: json\ncapture:\n  path: " + capPath + "\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runCommandIn(t, ns, "--feed", path)
	if err == nil {
		t.Fatalf("run started with metrics.listen's port taken\n%s", errOut)
	}
	if strings.Contains(errOut, secret) {
		t.Errorf("the snapshot password is in the log:\n%s", errOut)
	}
	var found int
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		var rec struct {
			Level   string `json:"level"`
			Message string `json:"message"`
			Config  struct {
				File    string `json:"file"`
				Receive struct {
					Backend     string  `json:"backend"`
					PollTimeout float64 `json:"poll_timeout"` // ms
				} `json:"receive"`
				MaxOrders int `json:"max_orders"`
				Recovery  struct {
					PasswordEnv string `json:"password_env"`
				} `json:"recovery"`
				Capture struct {
					Path   string `json:"path"`
					Buffer int    `json:"buffer"`
				} `json:"capture"`
			} `json:"config"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Message != "feed config" {
			continue
		}
		found++
		c := rec.Config
		if rec.Level != "info" || c.File != path || c.Receive.Backend != "socket" || c.Receive.PollTimeout != 5 ||
			c.MaxOrders != 4<<20 || c.Recovery.PasswordEnv != "FH_TEST_GLIMPSE_PW" || c.Capture.Path != capPath || c.Capture.Buffer != 64<<20 {
			t.Errorf("config line: %+v, want level info, file %s, backend socket, poll_timeout 5 (ms: hold/4), max_orders %d, password_env FH_TEST_GLIMPSE_PW, capture %s with its default buffer 64MiB\n%s",
				rec, path, 4<<20, capPath, line)
		}
	}
	if found != 1 {
		t.Errorf("%d \"feed config\" lines, want 1:\n%s", found, errOut)
	}
}
