package handler

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// TestRerequestKeysFromConfig: recovery.rerequest.server_rest,
// server_rest_max, recv_buffer and source_port reach the recovery (they
// were RecoveryConfig's and rerequest.Config's only, at their defaults
// whatever the file said), and the feed file's defaults are the
// handler's.
func TestRerequestKeysFromConfig(t *testing.T) {
	const head = "feed: {name: t}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\nrecovery:\n  rerequest:\n    servers: [10.0.0.1:26400]\n"
	cfg, err := config.Parse("t.yaml", []byte(head+"    server_rest: 250ms\n    server_rest_max: 4s\n    recv_buffer: 1MiB\n    source_port: server\n"))
	if err != nil {
		t.Fatal(err)
	}
	rc := FromConfig(cfg, zerolog.Nop()).Recovery
	if rc.ServerRest != 250*time.Millisecond || rc.ServerRestMax != 4*time.Second || rc.Rerequest.RecvBuffer != 1<<20 || !rc.Rerequest.ServerPort {
		t.Errorf("server_rest 250ms, server_rest_max 4s, recv_buffer 1MiB, source_port server: got %v, %v, %d, %v", rc.ServerRest, rc.ServerRestMax, rc.Rerequest.RecvBuffer, rc.Rerequest.ServerPort)
	}
	cfg, err = config.Parse("t.yaml", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	rc = FromConfig(cfg, zerolog.Nop()).Recovery
	if rc.ServerRest != DefaultServerRest || rc.ServerRestMax != DefaultServerRestMax || rc.Rerequest.RecvBuffer != rerequest.DefaultRecvBuffer || rc.Rerequest.ServerPort {
		t.Errorf("defaults: got %v, %v, %d, server port %v; want the handler's %v, %v, %d, any port", rc.ServerRest, rc.ServerRestMax, rc.Rerequest.RecvBuffer, rc.Rerequest.ServerPort,
			DefaultServerRest, DefaultServerRestMax, rerequest.DefaultRecvBuffer)
	}
}
