package rx

import (
	"errors"
	"fmt"
	"time"

	"github.com/marketfeed/feedhandler/internal/privilege"
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
//
// A line whose interface does not exist fails at once with ErrNoInterface,
// whatever the backend: the fallback chain is for what the host lacks for a
// backend (a kernel feature, a capability, locked memory), not for a
// configuration error.
func Open(cfg Config) (Receiver, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for _, l := range cfg.Lines {
		if l.Interface == "" {
			continue
		}
		if _, err := LookupInterface(l.Interface); err != nil {
			return nil, fmt.Errorf("open receiver: line %s: %w", l.Name, err)
		}
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

// openAuto is the fallback chain. AF_XDP and io_uring fall back only when
// the kernel, driver or privileges lack the feature (errors wrapping
// ErrNotSupported; the reason is logged, with the capabilities the step
// needs and this process lacks when it was refused them); any other error, such as a queue
// the interface does not have, is returned at once. The socket backend is
// the last resort and its error is returned.
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
		if !errors.Is(err, ErrNotSupported) {
			return nil, fmt.Errorf("open receiver (auto): %w", err)
		}
		errs = append(errs, err)
		// A permission error says which capabilities the step needs and
		// which this process lacks, as the start's error does under an
		// explicit backend: before, the log gave the bare EPERM or EACCES
		// ('load program: operation not permitted'), naming none.
		cfg.Log.Warn().Err(privilege.Explain(err, s.name, false)).Str("backend", s.name).Str("fallback", s.next).
			Msgf("rx: %s backend unavailable here, falling back to %s", s.name, s.next)
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
