package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// ProtocolITCH50MoldUDP64 is the only accepted feed.protocol.
const ProtocolITCH50MoldUDP64 = "itch50-moldudp64"

// Unpinned is the core number of a goroutine that is not pinned to a CPU.
const Unpinned = -1

// Defaults applied by Parse to keys that are absent.
const (
	DefaultDepth          = 10
	DefaultMaxOrders      = 4 << 20 // 4,194,304
	DefaultMaxLocates     = 16384
	DefaultStatsInterval  = 5 * time.Second
	MinStatsInterval      = 100 * time.Millisecond // stats_interval's floor
	DefaultGrace          = 200 * time.Microsecond
	DefaultHold           = 20 * time.Millisecond
	DefaultLineTimeout    = time.Second
	DefaultMaxPending     = 8192
	DefaultBatchSize      = 64
	DefaultBusyPollUsec   = 20
	DefaultBusyPollBudget = 64
	DefaultRecvBuffer     = 8 << 20 // bytes
	DefaultPollTimeout    = 100 * time.Millisecond
	DefaultLogLevel       = "info"
	DefaultLogFormat      = "console"
	DefaultSHMMode        = 0o640
	DefaultSHMSlots       = 16384

	DefaultRerequestTimeout   = 20 * time.Millisecond
	DefaultRerequestRetries   = 3
	DefaultMaxRequestMessages = 2000
	DefaultRequestsPerSecond  = 1000
	DefaultMaxRerequestGap    = 50_000
	DefaultSpill              = 32768
	// recovery.rerequest.server_rest: after every re-request server
	// failed a range, gaps skip re-request this long
	// (handler.DefaultServerRest), doubled per such failure in a row up
	// to server_rest_max (handler.DefaultServerRestMax, >= server_rest).
	DefaultServerRest    = time.Second
	DefaultServerRestMax = 30 * time.Second
	MinServerRest        = 100 * time.Millisecond
	MaxServerRest        = 10 * time.Minute
	MaxServerRestMax     = time.Hour
	// recovery.rerequest.recv_buffer: the receive buffer of each
	// re-request socket (rerequest.DefaultRecvBuffer), which bounds the
	// messages a request asks for (rerequest.AnswerMessages).
	DefaultRerequestRecvBuffer = 4 << 20
	MinRerequestRecvBuffer     = 64 << 10
	MaxRerequestRecvBuffer     = 1 << 30
	// DefaultSnapshotRetry is recovery.snapshot.retry's default, the wait
	// after a failed or refused snapshot (handler.DefaultSnapshotRetry),
	// doubled per consecutive one up to recovery.snapshot.retry_max
	// (DefaultSnapshotRetryMax).
	DefaultSnapshotRetry    = 5 * time.Second
	DefaultSnapshotRetryMax = 2 * time.Minute
	// recovery.snapshot.retry's and retry_max's ranges (retry_max >= retry).
	MinSnapshotRetry    = time.Second
	MaxSnapshotRetry    = 10 * time.Minute
	MaxSnapshotRetryMax = time.Hour
	// recovery.snapshot.connect_timeout: the dial and the login
	// (soupbintcp.DefaultConnectTimeout).
	DefaultSnapshotConnectTimeout = 5 * time.Second
	MinSnapshotConnectTimeout     = 100 * time.Millisecond
	MaxSnapshotConnectTimeout     = time.Minute
	// recovery.snapshot.idle_timeout: nothing heard from the server (no
	// data, no heartbeat) for this long is a stalled snapshot
	// (soupbintcp.DefaultPeerTimeout). At least 2 s: a server heartbeats
	// every second when it has nothing else to send.
	DefaultSnapshotIdleTimeout = 15 * time.Second
	MinSnapshotIdleTimeout     = 2 * time.Second
	MaxSnapshotIdleTimeout     = 10 * time.Minute
	// recovery.snapshot.max_duration: from the Login Accepted to the End
	// of Snapshot (glimpse.DefaultMaxDuration).
	DefaultSnapshotMaxDuration = 10 * time.Minute
	MinSnapshotMaxDuration     = time.Second
	MaxSnapshotMaxDuration     = 24 * time.Hour
	// recovery.snapshot.max_size: the snapshot's messages held before its
	// End of Snapshot (glimpse.DefaultMaxBytes).
	DefaultSnapshotMaxSize = 2 << 30
	MinSnapshotMaxSize     = 1 << 20
	MaxSnapshotMaxSize     = 64 << 30
)

// Config is a parsed and validated feed file. Parse fills every default, so
// the lead code never has to interpret a zero value.
type Config struct {
	File          string // path or name the config was read from
	Feed          Feed
	Lines         []Line // line A, then line B when configured
	Receive       Receive
	Cores         Cores
	Symbols       []string // subscribe list as written; empty = every symbol
	Book          Book
	SHM           SHM
	Arbitration   Arbitration
	Recovery      Recovery
	Metrics       Metrics
	Capture       Capture
	User          string // account to switch to when started as root; "" = stay (and warn)
	StatsInterval time.Duration
	Log           Log

	fieldAt map[string]int // dotted field path -> line in File, for CheckHost's errors
	// hostErrs are LoadCheck's problems of this host's environment (the
	// snapshot password's source), which CheckHost returns with its own.
	hostErrs []*Error
}

// Feed names the feed and its protocol.
type Feed struct {
	Name     string // required; also the default SHM name
	Protocol string // ProtocolITCH50MoldUDP64
	Session  string // MoldUDP64 session, trimmed; "" = accept the first session seen
}

// SessionID returns the session as the 10 bytes of a MoldUDP64 header
// (right-padded with spaces; convertible to moldudp64.Session), and false
// when no session is configured.
func (f Feed) SessionID() (id [10]byte, ok bool) {
	if f.Session == "" {
		return id, false
	}
	for i := range id {
		id[i] = ' '
	}
	copy(id[:], f.Session)
	return id, true
}

// Line is one multicast line of the feed.
type Line struct {
	Name      string // "A" or "B"
	Interface string
	Group     netip.Addr // IPv4 multicast group
	Port      uint16
	Source    netip.Addr // optional source filter; the zero (invalid) Addr = any
}

// Receive selects and tunes the receive backend; see rx.Config.
type Receive struct {
	Backend        string // rx.BackendAuto, rx.BackendXDP, rx.BackendUring, rx.BackendSocket
	Queues         []int  // AF_XDP queues; nil = backend default (queue 0)
	ZeroCopy       string // "auto", "on", "off"
	XDPMode        string // "auto", "native", "generic"
	BusyPoll       bool
	BusyPollUsec   int
	BusyPollBudget int
	BatchSize      int
	RingSize       int // 0 = backend default
	RecvBuffer     int // bytes
	PollTimeout    time.Duration
	Spin           time.Duration // AF_XDP: poll the rings this long before blocking (rx.Config.Spin)
	// VerifyChecksums: AF_XDP checks each line datagram's IPv4 and UDP
	// checksums, as the kernel does for the socket backends (default
	// true; rx.Config.NoChecksums).
	VerifyChecksums bool
}

// Cores says where the receive thread and the book shards run. Two or more
// Shards: the sharded pipeline; fewer: run to completion on the receive
// thread (see feed/handler.Mode).
type Cores struct {
	Receive    int   // CPU number or Unpinned
	Shards     []int // one entry per book shard: CPU number or Unpinned; never empty
	RTPriority int   // 1..MaxRTPriority: the hot threads run under SCHED_FIFO (docs/TUNING.md); 0: normal scheduling
}

// MaxRTPriority is the highest cores.rt_priority (SCHED_FIFO's range is 1..99).
const MaxRTPriority = 99

// ShardBytes is what a book shard takes besides its books when sharded
// (two or more cores.shards; run to completion has no ring): its ring from
// the receive thread (handler's 65536 slots of 80 bytes, 5 MiB, touched at
// start; TestShardBytesCounted in feed/handler checks it against the
// handler's slot), its publisher's tables, histograms and thread. A real
// start's resident set grew 6.4 MiB a shard (2 shards against run to
// completion, the defaults otherwise).
const ShardBytes = 7 << 20

// MaxShards is the most book shards a handler runs (cores.shards entries).
const MaxShards = 256

// ShardCount returns the number of book shards (len(Cores.Shards), at least 1).
func (c *Config) ShardCount() int { return max(len(c.Cores.Shards), 1) }

// Book sizes the order books.
type Book struct {
	Depth      int // price levels published per side, 1..64
	MaxOrders  int // live order capacity
	MaxLocates int // number of stock locate codes, 1..65536
}

// MaxSHMSlots is the largest shm.slots: a feed file has at most one slot per
// ITCH locate (shm.Create refuses more, and so do readers).
const MaxSHMSlots = shm.MaxLocates

// SHM names the shared-memory snapshot region and who may read it.
type SHM struct {
	Name  string      // /dev/shm name; default Feed.Name
	Mode  os.FileMode // permission bits; default 0640 (owner writes, group reads)
	Group string      // group owning the file (name or gid); "" = the handler's group
	// Slots is the file's instrument slots (shm.Config.Instruments),
	// 1..MaxSHMSlots; default DefaultSHMSlots. Retired slots are not reused
	// while the handler runs: a session change without a restart needs twice
	// the day's symbols (docs/OPERATIONS.md, "Shared memory").
	Slots int
}

// Arbitration tunes the A/B line arbiter; see handler.ArbiterConfig.
type Arbitration struct {
	Grace       time.Duration // hold-back once every live line passed a missing number
	Hold        time.Duration // longest line skew waited out
	LineTimeout time.Duration // a line silent this long is not waited for
	MaxPending  int           // packets held back at most
	// SequenceRestart: what a sequence restart under the same session name
	// does, SequenceRestartRebuild (default) or SequenceRestartHold; see
	// handler.ArbiterConfig.HoldRestart.
	SequenceRestart string
}

// Sequence-restart policies (arbitration.sequence_restart).
const (
	SequenceRestartRebuild = "rebuild"
	SequenceRestartHold    = "hold"
)

// Recovery configures gap recovery; see handler.RecoveryConfig and
// docs/RECOVERY.md.
type Recovery struct {
	Rerequest Rerequest
	Snapshot  Snapshot
	LateJoin  string // LateJoinSnapshot, LateJoinRerequest or LateJoinOff
	Spill     int    // packets held while recovering (>= arbitration.max_pending)
}

// Late-join policies (recovery.late_join).
const (
	LateJoinSnapshot  = "snapshot"
	LateJoinRerequest = "rerequest"
	LateJoinOff       = "off"
)

// Rerequest configures the MoldUDP64 re-request (retransmission) client.
type Rerequest struct {
	Servers            []netip.AddrPort // tried in order; empty = no re-request
	Timeout            time.Duration    // first answer awaited; doubled per retry
	Retries            int              // resends per server before failing over
	MaxRequestMessages int              // most messages asked at once
	RequestsPerSecond  int              // request rate limit
	MaxRerequestGap    int              // larger gaps go to the snapshot
	// ServerRest: gaps skip re-request this long after every server
	// failed a range, doubled per such failure in a row up to
	// ServerRestMax (>= ServerRest).
	ServerRest, ServerRestMax time.Duration
	RecvBuffer                int // bytes, each re-request socket's receive buffer
	// SourcePort: where answers are taken from, the server's address on
	// SourcePortAny port (the default) or only on SourcePortServer's, the
	// port asked (rerequest.Config.ServerPort).
	SourcePort string
}

// recovery.rerequest.source_port's values.
const (
	SourcePortAny    = "any"
	SourcePortServer = "server"
)

// Snapshot configures GLIMPSE snapshot recovery over SoupBinTCP.
type Snapshot struct {
	Server       string // host:port; "" = no snapshot recovery
	Username     string
	PasswordFile string // where the password was read from (or PasswordEnv)
	PasswordEnv  string
	Session      string // SoupBinTCP session; "" = the current one
	// Retry is the wait after a failed or refused snapshot, doubled per
	// consecutive one up to RetryMax (>= Retry).
	Retry time.Duration
	// RetryMax caps the wait between consecutive failed or refused
	// snapshots (Retry doubled per failure).
	RetryMax time.Duration
	// ConnectTimeout bounds the dial and the login; IdleTimeout is how
	// long the server may be silent (no data, no heartbeat) before the
	// snapshot is taken as stalled; MaxDuration bounds the download from
	// the Login Accepted to the End of Snapshot.
	ConnectTimeout, IdleTimeout, MaxDuration time.Duration
	// MaxSize bounds the snapshot's messages, in bytes, before its End of
	// Snapshot: the handler holds them all until the snapshot is loaded.
	MaxSize int64
	// Password is the resolved password. It is never logged.
	Password string `json:"-"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string // "host:port" for /metrics; "" = disabled
}

// Capture configures the capture to disk: every line datagram received,
// both lines, written to a pcap file (package capture; docs/OPERATIONS.md,
// "Capture to disk").
type Capture struct {
	// Path names the capture file, an absolute path; each start writes a new one, the UTC
	// start time inserted before the extension (capture.FileName). "" =
	// no capture (the default).
	Path string
	// Buffer is the ring between the receive thread and the writer, in
	// bytes (capture.MinBuffer..capture.MaxBuffer, rounded up to a power
	// of two; default capture.DefaultBuffer).
	Buffer int
	// RotateSize: once a file holds this many bytes, the capture goes on
	// in a new one, named by the time of the switch (capture.MinRotate..
	// capture.MaxRotate; 0, the default: one file a run).
	RotateSize int64
}

// Log configures logging.
type Log struct {
	Level  string // "trace", "debug", "info", "warn", "error"
	Format string // "console", "json"
}

// ZerologLevel returns Level as a zerolog.Level (info if unset).
func (l Log) ZerologLevel() zerolog.Level {
	switch l.Level {
	case "trace":
		return zerolog.TraceLevel
	case "debug":
		return zerolog.DebugLevel
	case "warn":
		return zerolog.WarnLevel
	case "error":
		return zerolog.ErrorLevel
	}
	return zerolog.InfoLevel
}

// MaxFileSize is the largest feed file Load reads (feeds/nasdaq.yaml, every
// key commented, is about 15 KiB). A path to something else, a data
// file, was read whole before and parsed: seconds and 70 MB of parser
// memory per MiB. A device (/dev/zero: an unbounded read) or a FIFO is
// not a regular file, refused before a byte is read (openRegular).
const MaxFileSize = 1 << 20

// Load reads and parses the feed file at path. Errors name path, line and
// field.
func Load(path string) (*Config, error) {
	return load(path, loadRun)
}

// LoadOffline reads the feed file at path as Load does, but for the
// snapshot server's password (recovery.snapshot.password_file,
// password_env), which it neither reads nor requires: for commands that
// take a feed's settings and never log in (replay --feed),
// which then run where the password is not kept. The password's key is
// still checked as written (one of the two, an absolute password_file, a
// variable's name); Snapshot.Password is left empty.
func LoadOffline(path string) (*Config, error) {
	return load(path, loadOffline)
}

// LoadCheck reads the feed file at path as Load does, for feedhandler
// check, which reports every problem it can find in one run. The problems
// Load finds in this host's environment rather than in the file (the
// snapshot password's variable not set or empty, its file missing,
// unreadable or open to every user) do not stop it: when they are the
// only ones, it returns the config, and CheckHost returns them with the
// host's. Any other problem (YAML syntax, an unknown key, a wrong type or
// value) returns no config and every problem found, as Load does. Load
// still refuses at the first: run starts on nothing less.
func LoadCheck(path string) (*Config, error) {
	return load(path, loadCheck)
}

// loadMode is what load does with the snapshot server's password.
type loadMode int

const (
	loadRun     loadMode = iota // read it; a problem with it is an error (Load)
	loadOffline                 // neither read nor required (LoadOffline)
	loadCheck                   // read it; a problem with it is CheckHost's (LoadCheck)
)

func load(path string, mode loadMode) (*Config, error) {
	f, err := openRegular(path)
	var nr notRegular
	if errors.As(err, &nr) && !nr.mode.IsDir() {
		return nil, fmt.Errorf("load feed config: %w: give the feed file itself", err)
	}
	if err != nil {
		return nil, fmt.Errorf("load feed config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load feed config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("load feed config: %s is larger than %d bytes (%d MiB): not a feed file", path, MaxFileSize, MaxFileSize>>20)
	}
	return parse(path, data, mode)
}

// openRegular opens path (symbolic links followed) for reading when it is
// a regular file, else fails with a notRegular naming what it is. A FIFO
// is never waited on: open(2) of a FIFO for reading blocks until a writer
// opens it, so a feed or password file that was one with no writer hung
// `feedhandler check` and the start before their first line (systemd's
// start timeout then killed it). The open is non-blocking, and the file
// is checked once open (fstat), so a file swapped after the first look
// is refused too.
func openRegular(path string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		// A socket cannot be opened at all (ENXIO): say what it is.
		return nil, notRegular{path, fi.Mode()}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, unreadable(path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular{path, fi.Mode()}
	}
	// Reads of a regular file never block; clear the flag all the same.
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return f, nil
}

// notRegular is openRegular's error for a file that is not a regular
// file: "PATH is a FIFO (named pipe), not a regular file".
type notRegular struct {
	path string
	mode os.FileMode
}

func (e notRegular) Error() string {
	var kind string
	switch m := e.mode; {
	case m.IsDir():
		return e.path + " is a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a FIFO (named pipe)"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	case m&os.ModeCharDevice != 0:
		kind = "a character device"
	case m&os.ModeDevice != 0:
		kind = "a block device"
	default:
		kind = "not a regular file (" + m.Type().String() + ")"
		return e.path + " is " + kind
	}
	return e.path + " is " + kind + ", not a regular file"
}

// Parse parses and validates a feed file; name is used in error messages
// and as Config.File.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, loadRun)
}

func parse(name string, data []byte, mode loadMode) (*Config, error) {
	// A UTF-8 byte order mark, as some editors write one, may begin a YAML
	// stream (YAML 1.2, 5.2); the parser would read it as part of the
	// first key.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	d := decoder{file: name, offline: mode == loadOffline}
	if err := notUTF8(name, data); err != nil {
		return nil, err
	}
	c := d.decode(data)
	if mode == loadCheck && len(d.errs) == len(d.hostErrs) {
		// Only the host's problems: CheckHost says them (LoadCheck).
		c.hostErrs, d.errs = d.hostErrs, nil
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	c.File = name
	c.fieldAt = d.fieldAt
	return c, nil
}

// notUTF8 refuses a file that is not UTF-8 text, at the line of its first
// byte that is not: YAML is Unicode, and the parser read such bytes as
// they came, into a value ("want a mapping, got "\xff\xfe\x00f"" for a
// file saved as UTF-16) or a comment.
func notUTF8(name string, data []byte) error {
	if utf8.Valid(data) && bytes.IndexByte(data, 0) < 0 {
		return nil
	}
	i := 0
	for i < len(data) {
		r, n := utf8.DecodeRune(data[i:])
		if r == 0 || r == utf8.RuneError && n == 1 {
			break
		}
		i += n
	}
	msg := fmt.Sprintf("not UTF-8 text (byte 0x%02x): save the feed file as UTF-8", data[i])
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.IndexByte(data, 0) >= 0 {
		msg += " (it looks like UTF-16, as some Windows editors save)"
	}
	return &Error{File: name, Line: lineOf(data, i), Msg: msg}
}

// lineOf returns the 1-based line of data[i], counting line breaks as
// YAML does (1.2, 5.4): LF, CR LF, and a CR alone, as a file saved with
// classic Mac line ends has, whose lines the parser numbers so too.
func lineOf(data []byte, i int) int {
	n := 1
	for j := range data[:i] {
		if lineBreak(data, j) {
			n++
		}
	}
	return n
}

// lineBreak reports whether data[j] ends a line: an LF, or a CR not
// followed by an LF.
func lineBreak(data []byte, j int) bool {
	return data[j] == '\n' || data[j] == '\r' && (j+1 >= len(data) || data[j+1] != '\n')
}

// SymbolKeys returns the subscribe list as 8-byte ITCH stock fields,
// right-padded with spaces (convertible to itch.Symbol). nil means every
// symbol.
func (c *Config) SymbolKeys() [][8]byte {
	if len(c.Symbols) == 0 {
		return nil
	}
	keys := make([][8]byte, len(c.Symbols))
	for i, s := range c.Symbols {
		k := [8]byte{' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
		copy(k[:], s)
		keys[i] = k
	}
	return keys
}

// BookConfig is the order books' configuration: book.max_orders live
// orders, a quarter as many price levels (at least book.DefaultConfig's),
// book.max_locates locates (at most 65535). The handler holds one Books of
// it per shard (BookShards).
func (c *Config) BookConfig() book.Config {
	bc := book.DefaultConfig()
	if c.Book.MaxOrders > 0 {
		bc.MaxOrders = c.Book.MaxOrders
		bc.MaxLevels = max(bc.MaxLevels, c.Book.MaxOrders/4)
		bc.RefTableSize = 0
	}
	if c.Book.MaxLocates > 0 {
		bc.MaxLocates = min(c.Book.MaxLocates, 65535)
	}
	return bc
}

// BookShards is the number of Books the handler allocates: one per
// cores.shards entry when sharded (two or more), else one.
func (c *Config) BookShards() int {
	if len(c.Cores.Shards) >= 2 {
		return len(c.Cores.Shards)
	}
	return 1
}

// RxConfig returns the receive layer configuration, logging to log.
func (c *Config) RxConfig(log zerolog.Logger) rx.Config {
	lines := make([]rx.LineConfig, len(c.Lines))
	for i, l := range c.Lines {
		lines[i] = rx.LineConfig{Name: l.Name, Interface: l.Interface, Group: l.Group, Port: l.Port, Source: l.Source}
	}
	r := c.Receive
	return rx.Config{
		Lines:          lines,
		Backend:        r.Backend,
		Queues:         append([]int(nil), r.Queues...),
		ZeroCopy:       r.ZeroCopy,
		XDPMode:        r.XDPMode,
		BusyPoll:       r.BusyPoll,
		BusyPollUsec:   r.BusyPollUsec,
		BusyPollBudget: r.BusyPollBudget,
		BatchSize:      r.BatchSize,
		RingSize:       r.RingSize,
		RecvBuffer:     r.RecvBuffer,
		PollTimeout:    r.PollTimeout,
		Spin:           r.Spin,
		NoChecksums:    !r.VerifyChecksums,
		Log:            log,
	}
}
