package rx

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultBatchSize   = 64
	DefaultRecvBuffer  = 8 << 20
	DefaultPollTimeout = 100 * time.Millisecond
	MaxLines           = 8
)

// Open opens a receiver for cfg.Lines with cfg.Backend. BackendAuto (or "")
// tries AF_XDP, then io_uring, then recvmmsg sockets, logging through cfg.Log
// why each step fell back; an explicit backend does not fall back. Every
// backend keeps one socket per line joined to its group on its interface.
func Open(cfg Config) (Receiver, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendAuto:
		return openAuto(cfg)
	case BackendXDP:
		return openXDP(cfg)
	case BackendUring:
		return openUring(cfg)
	case BackendSocket:
		return openSocket(cfg)
	}
	return nil, fmt.Errorf("open receiver: unknown backend %q (want %s, %s, %s or %s)",
		cfg.Backend, BackendAuto, BackendXDP, BackendUring, BackendSocket)
}

// openAuto is the fallback chain. AF_XDP and io_uring fall back on any
// open error (the reason is logged, and says whether the kernel lacks the
// feature); the socket backend is the last resort and its error is returned.
func openAuto(cfg Config) (Receiver, error) {
	steps := []struct {
		name string
		open func(Config) (Receiver, error)
		next string
	}{
		{BackendXDP, openXDP, BackendUring},
		{BackendUring, openUring, BackendSocket},
	}
	var errs []error
	for _, s := range steps {
		r, err := s.open(cfg)
		if err == nil {
			cfg.Log.Info().Str("backend", r.Backend()).Msg("rx: receiver open")
			return r, nil
		}
		errs = append(errs, err)
		cfg.Log.Warn().Err(err).Str("backend", s.name).Str("fallback", s.next).
			Bool("not_supported", errors.Is(err, ErrNotSupported)).
			Msgf("rx: %s backend unavailable, falling back to %s", s.name, s.next)
	}
	r, err := openSocket(cfg)
	if err != nil {
		return nil, fmt.Errorf("open receiver (auto): %w", errors.Join(append(errs, err)...))
	}
	cfg.Log.Info().Str("backend", r.Backend()).Msg("rx: receiver open")
	return r, nil
}

func (c *Config) setDefaults() error {
	if len(c.Lines) == 0 || len(c.Lines) > MaxLines {
		return fmt.Errorf("open receiver: %d lines configured, want 1 to %d", len(c.Lines), MaxLines)
	}
	if c.Backend == "" {
		c.Backend = BackendAuto
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.RecvBuffer <= 0 {
		c.RecvBuffer = DefaultRecvBuffer
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.BusyPollUsec <= 0 {
		c.BusyPollUsec = 20
	}
	if c.BusyPollBudget <= 0 {
		c.BusyPollBudget = 64
	}
	return nil
}
