package handler

import (
	"net/netip"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// FromConfig maps a parsed feed file onto the pipeline's Config.
func FromConfig(c *config.Config, log zerolog.Logger) Config {
	hc := Config{
		Receive:       c.RxConfig(log),
		ReceiveCore:   c.Cores.Receive,
		ShardCores:    append([]int(nil), c.Cores.Shards...),
		RTPriority:    c.Cores.RTPriority,
		Symbols:       append([]string(nil), c.Symbols...),
		Depth:         c.Book.Depth,
		ShmName:       c.SHM.Name,
		ShmSlots:      c.SHM.Slots,
		ShmMode:       c.SHM.Mode,
		ShmGroup:      c.SHM.Group,
		Feed:          c.Feed.Name,
		CapturePath:   c.Capture.Path,
		CaptureBuffer: c.Capture.Buffer,
		CaptureRotate: c.Capture.RotateSize,
		Arbiter: ArbiterConfig{
			Grace:       c.Arbitration.Grace,
			Hold:        c.Arbitration.Hold,
			LineTimeout: c.Arbitration.LineTimeout,
			MaxPending:  c.Arbitration.MaxPending,
			HoldRestart: c.Arbitration.SequenceRestart == config.SequenceRestartHold,
		},
		Log: log,
	}
	rr := c.Recovery.Rerequest
	hc.Recovery = RecoveryConfig{
		Rerequest: rerequest.Config{
			Servers:            append([]netip.AddrPort(nil), rr.Servers...),
			Timeout:            rr.Timeout,
			Retries:            rr.Retries,
			MaxRequestMessages: rr.MaxRequestMessages,
			RequestsPerSecond:  float64(rr.RequestsPerSecond),
			RecvBuffer:         rr.RecvBuffer,
			ServerPort:         rr.SourcePort == config.SourcePortServer,
		},
		ServerRest:      rr.ServerRest,
		ServerRestMax:   rr.ServerRestMax,
		MaxRerequestGap: uint64(rr.MaxRerequestGap),
		LateJoin:        c.Recovery.LateJoin,
	}
	if len(rr.Servers) > 0 || c.Recovery.Snapshot.Server != "" {
		// The spill is only allocated when something can fill a gap.
		hc.Arbiter.Spill = c.Recovery.Spill
	}
	if sn := c.Recovery.Snapshot; sn.Server != "" {
		hc.Recovery.SnapshotStats = new(glimpse.Stats)
		hc.Recovery.Snapshot = GlimpseSnapshot(glimpse.Config{
			Addr: sn.Server, Username: sn.Username, Password: sn.Password, Session: sn.Session,
			ConnectTimeout: sn.ConnectTimeout, IdleTimeout: sn.IdleTimeout, MaxDuration: sn.MaxDuration, MaxBytes: sn.MaxSize,
			Stats: hc.Recovery.SnapshotStats,
		})
		hc.Recovery.SnapshotRetry, hc.Recovery.SnapshotRetryMax = sn.Retry, sn.RetryMax
	}
	if id, ok := c.Feed.SessionID(); ok {
		hc.Session = moldudp64.Session(id)
	}
	hc.Book = c.BookConfig()
	return hc
}
