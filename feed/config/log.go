package config

import (
	"time"

	"github.com/rs/zerolog"
)

// MarshalZerologObject logs the effective configuration, every default
// applied, e.g. log.Info().Object("config", cfg).Msg("feed config"), as
// feedhandler run does once at start. receive.poll_timeout is the one the
// handler uses (EffectivePollTimeout). The snapshot password is never
// logged, only the file or environment variable it is read from.
func (c *Config) MarshalZerologObject(e *zerolog.Event) {
	e.Str("file", c.File).Str("feed", c.Feed.Name).Str("protocol", c.Feed.Protocol).Str("session", c.Feed.Session)
	for _, l := range c.Lines {
		d := zerolog.Dict().Str("interface", l.Interface).Str("group", l.Group.String()).Uint16("port", l.Port)
		if l.Source.IsValid() {
			d.Str("source", l.Source.String())
		}
		e.Dict("line_"+l.Name, d)
	}
	r := c.Receive
	e.Dict("receive", zerolog.Dict().Str("backend", r.Backend).Ints("queues", r.Queues).
		Str("zero_copy", r.ZeroCopy).Str("xdp_mode", r.XDPMode).Bool("busy_poll", r.BusyPoll).
		Int("busy_poll_usec", r.BusyPollUsec).Int("busy_poll_budget", r.BusyPollBudget).
		Int("batch_size", r.BatchSize).Int("ring_size", r.RingSize).Int("recv_buffer", r.RecvBuffer).
		Dur("poll_timeout", c.EffectivePollTimeout()).Dur("spin", r.Spin).Bool("verify_checksums", r.VerifyChecksums))
	e.Int("receive_core", c.Cores.Receive).Ints("shard_cores", c.Cores.Shards).Int("rt_priority", c.Cores.RTPriority)
	a := c.Arbitration
	e.Dict("arbitration", zerolog.Dict().Dur("grace", a.Grace).Dur("hold", a.Hold).Dur("line_timeout", a.LineTimeout).
		Int("max_pending", a.MaxPending).Str("sequence_restart", a.SequenceRestart))
	e.Int("symbols", len(c.Symbols))
	e.Int("depth", c.Book.Depth).Int("max_orders", c.Book.MaxOrders).Int("max_locates", c.Book.MaxLocates)
	if n, err := c.BookConfig().Bytes(); err == nil {
		e.Int64("book_bytes", n*int64(c.BookShards())) // every shard's tables, allocated at start
	}
	rr, sn := c.Recovery.Rerequest, c.Recovery.Snapshot
	servers := make([]string, len(rr.Servers))
	for i, s := range rr.Servers {
		servers[i] = s.String()
	}
	// The snapshot password is never logged, only where it comes from.
	e.Str("shm", c.SHM.Name).Int("shm_slots", c.SHM.Slots).Str("shm_mode", c.SHM.Mode.String()).Str("shm_group", c.SHM.Group).Dict("recovery", zerolog.Dict().Strs("rerequest_servers", servers).
		Dur("timeout", rr.Timeout).Int("retries", rr.Retries).Int("max_request_messages", rr.MaxRequestMessages).
		Int("requests_per_second", rr.RequestsPerSecond).Int("max_rerequest_gap", rr.MaxRerequestGap).
		Dur("server_rest", rr.ServerRest).Dur("server_rest_max", rr.ServerRestMax).Int("rerequest_recv_buffer", rr.RecvBuffer).Str("rerequest_source_port", rr.SourcePort).
		Str("snapshot_server", sn.Server).Str("snapshot_username", sn.Username).
		Str("password_file", sn.PasswordFile).Str("password_env", sn.PasswordEnv).Str("snapshot_session", sn.Session).Dur("snapshot_retry", sn.Retry).Dur("snapshot_retry_max", sn.RetryMax).
		Dur("snapshot_connect_timeout", sn.ConnectTimeout).Dur("snapshot_idle_timeout", sn.IdleTimeout).Dur("snapshot_max_duration", sn.MaxDuration).Int64("snapshot_max_size", sn.MaxSize).
		Str("late_join", c.Recovery.LateJoin).Int("spill", c.Recovery.Spill)).Str("metrics", c.Metrics.Listen)
	e.Dict("capture", zerolog.Dict().Str("path", c.Capture.Path).Int("buffer", c.Capture.Buffer).Int64("rotate_size", c.Capture.RotateSize))
	e.Dur("stats_interval", c.StatsInterval).Str("log_level", c.Log.Level).Str("log_format", c.Log.Format).Str("user", c.User)
}

// EffectivePollTimeout is receive.poll_timeout as the handler uses it:
// capped at arbitration.hold/4 (at least 1ms), so that packets held back
// behind a gap are released within the hold when traffic pauses
// (handler.Start applies the same cap).
func (c *Config) EffectivePollTimeout() time.Duration {
	hold := c.Arbitration.Hold
	if hold <= 0 {
		hold = DefaultHold
	}
	if p := c.Receive.PollTimeout; p > 0 && p <= hold/4 {
		return p
	}
	return max(hold/4, time.Millisecond)
}
