package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/clilog"
	"github.com/marketfeed/feedhandler/internal/preflight"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/proto/shm"
	"github.com/marketfeed/feedhandler/xsk"
)

func init() {
	register(&command{name: "run", summary: "run the feed handler: feedhandler --feed FILE.yaml", run: runFeed})
}

func runFeed(args []string) error {
	ignoreBrokenLog()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler --feed FILE.yaml (or: feedhandler run --feed FILE.yaml)")
		fs.PrintDefaults()
	}
	feed := fs.String("feed", "", "feed config `FILE.yaml` (see feeds/nasdaq.yaml)")
	cfg, err := loadFeed(fs, args, feed)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log)
	// What the process runs with, defaults and caps applied, once: after
	// an incident the journal says what it was (the backend the receiver
	// chose follows in "receiving"). Never the snapshot password.
	logger.Info().Object("config", cfg).Msg("feed config")
	// CheckHost refused books that do not fit with what the process
	// holds from its start; what fits only until the socket buffers and
	// the held packets fill starts, with this warning.
	if w := cfg.Memory().Warning(); w != "" {
		logger.Warn().Msg("memory: " + w)
	}

	var setUp atomic.Bool
	ctx, stop := stopSignals(logger, &setUp)
	defer stop()
	ignoreHangup(logger)
	// The metrics port first: taken (another process, an instance still
	// stopping), the start fails before it joins the groups, creates the
	// shm file or logs in to the snapshot server, each of which a restart
	// would repeat. It is answered at once: a scrape or a health check
	// during the setup (books allocated and touched, XDP attached, ...)
	// gets "starting", not a connection that hangs until it times out.
	var ep *endpoints
	if cfg.Metrics.Listen != "" {
		ln, err := listenMetrics(cfg, logger)
		if err != nil {
			return listenError(cfg, err)
		}
		ep = serveEndpoints(ln, cfg.Feed.Name)
		logger.Info().Str("addr", ln.Addr().String()).Msg("metrics.listen answers starting until set up")
	}
	h, err := handlerStart(ctx, handler.FromConfig(cfg, logger))
	if err != nil {
		ep.close()
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// The first signal stopped the setup at its next step,
			// undone: a clean stop, as after the setup.
			logger.Info().Msg("stopped during setup")
			return nil
		}
		if se := (*handler.SharedMemoryError)(nil); errors.As(err, &se) {
			return shmError(cfg, se.Err)
		}
		return capsError(cfg, err)
	}
	setUp.Store(true)
	quietRuntime(logger, gcHeadroomFor(cfg.Memory()))
	logHugePages(logger)
	return serve(ctx, h, ep, cfg, logger)
}

// shmError is the shared-memory file's creation error as file:line: field:
// error: what to do, one line. A live writer under the name (another
// handler, or an instance still stopping) and a full /dev/shm exit 1, which
// the unit restarts: the one ends, the other may be freed. A /dev/shm this
// process may not write (read-only: a ReadOnlyPaths= over it without
// ReadWritePaths=/dev/shm, a container's mount; not writable) and a file there it may not
// replace or give to shm.group are config errors, exit 78: no restart fixes
// them. Before, each was the bare error, exit 1, and the permission errors
// blamed the receive backend's capabilities (privilege.Explain).
// config.CheckHost refuses the permanent ones before anything opens, for
// check too; these are for what changed in between.
func shmError(cfg *config.Config, err error) error {
	path := shm.Path(cfg.SHM.Name)
	dir := filepath.Dir(path)
	switch {
	case errors.Is(err, shm.ErrInUse):
		return cfg.FieldError("shm.name", "%v: another handler publishes %s; stop it, or give this feed another shm.name (an instance still stopping frees it: a restart then starts)", err, path)
	case errors.Is(err, syscall.ENOSPC):
		need := shm.FileSize(shm.Config{Instruments: cfg.SHM.Slots, Depth: cfg.Book.Depth})
		free := "?"
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil {
			free = fmt.Sprintf("%d MiB", int64(st.Bavail)*st.Bsize>>20)
		}
		return cfg.FieldError("shm.name", "%v: %s has %s free and the file needs %d MiB besides the one it replaces: free space there, raise the tmpfs's size (mount -o remount,size=...), or lower shm.slots or book.depth", err, dir, free, (need+1<<20-1)>>20)
	case errors.Is(err, syscall.EROFS):
		return configError{cfg.FieldError("shm.name", "%v: %s is read-only to this process (under systemd: a ReadOnlyPaths= over it, which ReadWritePaths=/dev/shm undoes; ProtectSystem=strict leaves it writable; in a container: its mount, docs/OPERATIONS.md)", err, dir)}
	case errors.Is(err, syscall.EACCES):
		return configError{cfg.FieldError("shm.name", "%v: this process (uid %d) may not create files in %s, which is normally mode 1777", err, os.Geteuid(), dir)}
	case errors.Is(err, syscall.EPERM):
		if _, foreign := shm.ForeignInSticky(path); foreign || cfg.SHM.Group == "" {
			return configError{cfg.FieldError("shm.name", "%v", err)} // says whose file it is
		}
		return configError{cfg.FieldError("shm.group", "%v: a handler that is not root must be a member of the group (SupplementaryGroups= in the unit, docs/OPERATIONS.md)", err)}
	}
	if st, serr := os.Lstat(path); serr == nil && st.IsDir() {
		return configError{cfg.FieldError("shm.name", "%v: %s is a directory, not a feed file: remove it, or give this feed another shm.name", err, path)}
	}
	return cfg.FieldError("shm.name", "%v", err)
}

// capsError is the receiver's start error with what privilege.Explain adds
// (the capabilities the backend needs and which this process lacks). A
// permission error while some of them are missing is a config error, exit
// 78, at receive.backend (or receive.busy_poll, when only its cap_net_admin
// is missing): no restart grants a capability. Before, it was exit 1, which
// the unit restarted until its start limit.
//
// So are AF_XDP UMEMs that fit RLIMIT_MEMLOCK alone but not beside the
// locked memory of the uid's other processes (ENOBUFS without
// rx.ErrNotSupported), at receive.backend: before, the bare error.
//
// An AF_XDP queue or XDP program another process holds (EBUSY, after
// xsk's retries, or rx.ErrXDPInUse: a program attached in the other mode
// is refused with EEXIST) is exit 1 as before, at receive.backend, saying
// what holds it: an instance still stopping frees it.
func capsError(cfg *config.Config, err error) error {
	backend, busyPoll := cfg.Receive.Backend, cfg.Receive.BusyPoll
	if (errors.Is(err, syscall.EBUSY) || errors.Is(err, rx.ErrXDPInUse)) && (backend == "auto" || backend == "xdp") {
		return cfg.FieldError("receive.backend", "%v: another process has an AF_XDP socket on this queue or its own XDP program on this interface (another feedhandler with AF_XDP on it?): stop it, or give one of them receive.backend: uring (one AF_XDP handler per interface; the uring one receives none of the groups and ports the AF_XDP one takes)", err)
	}
	if errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, rx.ErrNotSupported) && (backend == "auto" || backend == "xdp") {
		// UMEMs that fit RLIMIT_MEMLOCK alone, refused for the locked
		// memory the uid's other processes hold (the error says so):
		// exit 1, restarted, as an instance still stopping frees it.
		return cfg.FieldError("receive.backend", "%v", err)
	}
	explained := privilege.Explain(err, backend, busyPoll)
	eff, e2 := privilege.Effective()
	missing := privilege.Required(backend, busyPoll) &^ eff
	if e2 == nil && missing != 0 && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)) {
		field := "receive.backend"
		if busyPoll && (backend == "auto" || privilege.Required(backend, false)&^eff == 0) {
			// auto fell back for want of the others: busy polling's
			// cap_net_admin is what failed.
			field = "receive.busy_poll"
		}
		return configError{cfg.FieldError(field, "%v: give the process them (root with them, or the unit's AmbientCapabilities= within its CapabilityBoundingSet=, docs/OPERATIONS.md section 1)", explained)}
	}
	if errors.Is(err, rx.ErrNotSupported) {
		return configError{cfg.FieldError(notSupportedField(cfg, err), "%v: this host's kernel, driver or limits cannot run it as the file asks, which no restart changes (feedhandler check says what the driver reports and what the limits hold)", explained)}
	}
	return explained
}

// notSupportedField is the key that asked for what the host cannot do
// (rx.ErrNotSupported, which a backend named by receive.backend returns,
// and auto when no backend is left): receive.xdp_mode when it asks for
// native XDP and the program failed, receive.zero_copy when it asks for
// zero-copy and the AF_XDP socket failed, else receive.backend. Before,
// such a start exited 1, which the unit restarted until its start limit.
func notSupportedField(cfg *config.Config, err error) string {
	r := cfg.Receive
	switch {
	case r.XDPMode == "native" && errors.Is(err, bpf.ErrNotSupported):
		return "receive.xdp_mode"
	case r.ZeroCopy == "on" && errors.Is(err, xsk.ErrNotSupported):
		return "receive.zero_copy"
	}
	return "receive.backend"
}

// stopSignals returns a context that the first SIGINT or SIGTERM ends: the
// graceful stop. The second exits at once, status 130, at any time. During
// the setup (books, shm, sockets, XDP) the first is logged at once and
// stops it at its next step (handler.StartContext), undone, exit 0; a step
// under way (one shard's books: seconds with gigabytes) is not cut short.
// Before, the whole setup ran first, receivers opened and the snapshot
// server logged into, so an operator who signalled again meanwhile got the
// exit at once, which leaves the shm file behind. stop releases the
// signals.
func stopSignals(logger zerolog.Logger, setUp *atomic.Bool) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		cancel()
		if !setUp.Load() {
			logger.Info().Msg("signal during setup: stopping at its next step (signal again to exit at once)")
		}
		select {
		case <-sigs:
		case <-done:
			return
		}
		logger.Warn().Msg("second signal: exiting now")
		os.Exit(130)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// listenMetrics binds metrics.listen. A literal address the host does not
// have yet, or cannot bind yet (EADDRNOTAVAIL: a service address that
// keepalived or the network manager adds after the unit starts; an IPv6
// address still tentative, in duplicate address detection or on a link
// without a carrier, which network-online.target does not wait for with
// every network manager), is bound with IP_FREEBIND (IPV6_FREEBIND),
// systemd's FreeBind=, and a warning says so: the port answers once the
// address is up, and the feed is not kept down for its metrics address.
// Before, a missing address was a config error (exit 78, never restarted)
// and a tentative one exit 1, restarted until the unit's start limit. A
// mistyped address then never answers: `check` warns, and the scrape's
// up == 0 alerts. Not an address whose duplicate address detection
// failed (another host on the link has it: listenError, exit 78), nor a
// name. A link-local address with its zone too: CheckHost has refused a
// zone whose interface lacks the address.
func listenMetrics(cfg *config.Config, logger zerolog.Logger) (net.Listener, error) {
	addr := cfg.Metrics.Listen
	ln, err := net.Listen("tcp", addr)
	if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) || listenAddrDADFailed(err) {
		return ln, err
	}
	host, _, serr := net.SplitHostPort(addr)
	// A zone, which CheckHost has checked names an interface that has
	// the address: a link-local address still tentative (its link
	// without a carrier) is bound the same way.
	if _, perr := netip.ParseAddr(host); serr != nil || perr != nil {
		return nil, err
	}
	fln, ferr := preflight.ListenFreeBind(addr)
	if errors.Is(ferr, syscall.EADDRINUSE) || errors.Is(ferr, syscall.EACCES) || errors.Is(ferr, syscall.EPERM) {
		// The port, which the first bind did not get to (the kernel
		// checks the address first): in use (exit 1, restarted) or
		// privileged (exit 78), as listenError says.
		return nil, ferr
	}
	if ferr != nil {
		return nil, err
	}
	why := "not an address of this host yet"
	if hostHasListenAddr(err) {
		why = "an address of this host not usable yet (an IPv6 address still tentative: duplicate address detection, or its link has no carrier)"
	}
	logger.Warn().Str("addr", addr).Msg("metrics.listen " + addr + " is not an address this host can bind yet: " + why + "; bound with IP_FREEBIND, it answers once the address is up (check the address if it never does)")
	return fln, nil
}

// listenError is metrics.listen's bind error: a config error (exit 78,
// not restarted) when no restart can fix it, a port below
// net.ipv4.ip_unprivileged_port_start without cap_net_bind_service
// (EACCES), a policy's refusal (EACCES, EPERM: a security module, a
// cgroup bind program; config.ListenRefused) or an address that is not this host's (EADDRNOTAVAIL for an
// address the host does not have: a name resolving elsewhere; a literal
// one is bound with IP_FREEBIND instead, listenMetrics); a port
// in use is not (an instance still stopping frees it): exit 1, at the
// field, saying who may hold it. Nor
// is EADDRNOTAVAIL for a name resolving to an address the host has but
// cannot bind yet (tentative): a restart binds it once it is usable. An
// address whose duplicate address detection failed (another host has it)
// stays unusable until the address is added again, exit 78.
func listenError(cfg *config.Config, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		// A port below net.ipv4.ip_unprivileged_port_start, or a policy
		// (a security module, a cgroup bind program), which
		// config.CheckHost has refused before unless it changed since.
		return configError{cfg.FieldError("metrics.listen", "%v", config.ListenRefused(cfg.Metrics.Listen, err))}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		if listenAddrDADFailed(err) {
			return configError{cfg.FieldError("metrics.listen", "%v: duplicate address detection failed for it (`ip -6 addr` says dadfailed): another host on its link has this address, which no restart fixes; resolve the conflict and add the address again", err)}
		}
		if hostHasListenAddr(err) {
			return fmt.Errorf("%w: an address of this host not usable yet (an IPv6 address still tentative: duplicate address detection, or its link has no carrier); a restart binds it once it is", err)
		}
		return configError{cfg.FieldError("metrics.listen", "%v: not an address of this host", err)}
	case errors.Is(err, syscall.EADDRINUSE):
		// Exit 1, restarted: an instance still stopping frees it.
		_, port, _ := net.SplitHostPort(cfg.Metrics.Listen)
		return cfg.FieldError("metrics.listen", "%v: another process listens on this port (ss -ltnp 'sport = :%s' names it): another feed's handler whose file names the same metrics.listen (give each feed its own port), or this one's instance still stopping, which a restart outlasts", err, port)
	}
	return err
}

// listenAddrDADFailed reports whether the address a failed listen tried
// is an IPv6 address of the host whose duplicate address detection failed
// (preflight.DADFailed): another host has it, and it stays unusable until
// it is added again, so it is not "not usable yet".
func listenAddrDADFailed(err error) bool {
	ip, ok := listenAddr(err)
	return ok && preflight.DADFailed(ip)
}

// listenAddr returns the address a failed listen tried (err a TCP
// listen's *net.OpError); false when err does not say.
func listenAddr(err error) (netip.Addr, bool) {
	var op *net.OpError
	if !errors.As(err, &op) {
		return netip.Addr{}, false
	}
	a, ok := op.Addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return netip.AddrFromSlice(a.IP)
}

// hostHasListenAddr reports whether the address a failed listen tried is
// one of the host's interface addresses (tentative ones included).
func hostHasListenAddr(err error) bool {
	ip, ok := listenAddr(err)
	if !ok {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == ip.Unmap() {
			return true
		}
	}
	return false
}

// handlerStart is handler.StartContext; a variable for tests, which hold
// the setup to see what metrics.listen answers meanwhile.
var handlerStart = handler.StartContext

// endpoints is what metrics.listen answers: from the moment it is bound,
// while the handler sets up, /healthz 200 "alive: starting", /readyz 503
// "not ready: starting" and /metrics feedhandler_starting 1 and
// feedhandler_ready 0 (the other families are the handler's, which does
// not exist yet); then, once serve has the running handler, its
// endpoints (running).
type endpoints struct {
	srv     *http.Server
	addr    string // the listener's
	running atomic.Pointer[http.ServeMux]
	start   *http.ServeMux
}

// httpTimeouts are metrics.listen's server timeouts (http.Server's
// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout).
type httpTimeouts struct{ header, read, write, idle time.Duration }

// metricsTimeouts bound what a client of metrics.listen holds: a request's
// header (the slowloris) and the whole request (a body that never comes,
// which the server reads before it answers), an answer the client does
// not read, and a keep-alive connection left idle. Scrapes and probes send
// a header only and read an answer of tens of kilobytes at once; idle
// outlasts Prometheus's default 1-minute interval, so its connections are
// kept between scrapes. A variable for tests.
var metricsTimeouts = httpTimeouts{header: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second, idle: 2 * time.Minute}

// serveEndpoints serves ln with the starting answers for feed.
func serveEndpoints(ln net.Listener, feed string) *endpoints {
	e := &endpoints{start: http.NewServeMux(), addr: ln.Addr().String()}
	label := `{feed="` + feed + `"}` // feed.name is A-Z a-z 0-9 . _ -: nothing to escape
	metrics := "# HELP feedhandler_starting 1 while the handler sets up (before it receives); its other metrics follow.\n" +
		"# TYPE feedhandler_starting gauge\n" +
		"feedhandler_starting" + label + " 1\n" +
		"# HELP feedhandler_ready 1 when /readyz answers ready (receiving, books complete), else 0.\n" +
		"# TYPE feedhandler_ready gauge\n" +
		"feedhandler_ready" + label + " 0\n"
	e.start.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		io.WriteString(w, metrics)
	})
	e.start.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "alive: starting\n")
	})
	e.start.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready: starting (setting up)\n")
	})
	to := metricsTimeouts
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: to.header, ReadTimeout: to.read, WriteTimeout: to.write, IdleTimeout: to.idle}
	go e.srv.Serve(ln)
	return e
}

func (e *endpoints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := e.running.Load(); m != nil {
		m.ServeHTTP(w, r)
		return
	}
	e.start.ServeHTTP(w, r)
}

// close closes the server and its listener; nil: none.
func (e *endpoints) close() {
	if e != nil {
		e.srv.Close()
	}
}

// loadFeed parses args with fs, whose --feed flag is feed, and loads the
// feed file. Every error is a configError: a bad flag, no --feed, a
// malformed file, or interfaces, queues, addresses, a group or an account that this host does
// not have (reported before any backend is tried).
func loadFeed(fs *flag.FlagSet, args []string, feed *string) (*config.Config, error) {
	if err := parseFeedFlags(fs, args, feed); err != nil {
		return nil, err
	}
	cfg, err := config.Load(*feed)
	if err != nil {
		return nil, configError{err}
	}
	if err := cfg.CheckHost(); err != nil {
		return nil, configError{err}
	}
	return cfg, nil
}

// parseFeedFlags parses run's or check's flags: --feed given, nothing after
// the flags.
func parseFeedFlags(fs *flag.FlagSet, args []string, feed *string) error {
	if err := fs.Parse(args); err != nil {
		return configError{err}
	}
	// Nothing follows the flags: "feedhandler --feed f.yaml check" or a
	// second file is a mistake, not something to run without.
	if fs.NArg() > 0 {
		fs.Usage()
		return configError{fmt.Errorf("unexpected argument %q: %s takes its flags only", fs.Arg(0), fs.Name())}
	}
	if *feed == "" {
		fs.Usage()
		return configError{errors.New("--feed is required")}
	}
	return nil
}

// configError is a usage or feed-file error: the process exits
// exitConfig, which deploy/feedhandler@.service names in
// RestartPreventExitStatus= so that systemd does not restart it in a loop
// (restarting does not fix the file).
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// exitConfig is a config error's exit status: EX_CONFIG of sysexits.h. Not
// 2, the usual usage status: the Go runtime exits 2 on a panic or a fatal
// error, and a crash must be restarted (Restart=on-failure).
const exitConfig = 78

// ExitCode is the process's exit status (main).
func (configError) ExitCode() int { return exitConfig }

// serve runs h until ctx ends (the first SIGINT/SIGTERM), then shuts down
// gracefully; a second signal exits at once (stopSignals). ep, when not nil, answers
// metrics.listen: serve gives it h's /metrics, /healthz and /readyz.
func serve(ctx context.Context, h *handler.Handler, ep *endpoints, cfg *config.Config, logger zerolog.Logger) error {
	if ep != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(handler.NewCollector(h))
		handler.RegisterStandard(reg, h)
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler(handler.NewExposition(h), promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
		mux.HandleFunc("/healthz", healthz(h))
		mux.HandleFunc("/readyz", readyz(h))
		ep.running.Store(mux)
		logger.Info().Str("addr", ep.addr).Msg("metrics on /metrics, health on /healthz and /readyz")
	}
	// Sockets, XDP program, maps, shm file and listener are set up:
	// nothing needs a privilege any more.
	if err := cfg.UserNotSwitched(); err != nil {
		logger.Warn().Err(err).Msg("user: not switched to")
	}
	if err := shedPrivileges(cfg.User, logger); err != nil {
		ep.close()
		h.Stop()
		return err
	}
	tick := time.NewTicker(cfg.StatsInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-h.Failed():
			break loop
		case <-tick.C:
			h.LogStats(false)
		}
	}
	if h.Err() != nil {
		logger.Error().Err(h.Err()).Msg("shutting down: the books can no longer be published")
	} else {
		logger.Info().Msg("shutting down (signal again to exit at once)")
	}
	ep.close()
	err := h.Stop()
	h.LogStats(true)
	if errors.Is(err, shm.ErrTruncated) {
		return shmLostError{err}
	}
	return err
}

// shmLostError is the handler's stop after its shm file was truncated
// under the writer (an operator's `truncate -s 0`, `: > file`): the books
// could no longer be published. The process exits exitShmLost, which
// deploy/feedhandler@.service restarts (Restart=on-failure): the restart
// creates the file anew, and the readers follow it as after any restart.
type shmLostError struct{ error }

func (e shmLostError) Unwrap() error { return e.error }

// exitShmLost is shmLostError's exit status: EX_IOERR of sysexits.h. Not 2,
// the Go runtime's for a crash, which such a fault was before
// ("unexpected fault address", SIGBUS).
const exitShmLost = 74

// ExitCode is the process's exit status (main).
func (shmLostError) ExitCode() int { return exitShmLost }

// ignoreHangup keeps SIGHUP from killing the process, and logs each one.
// The handler has no reload (docs/OPERATIONS.md), but SIGHUP is the usual
// way to ask a daemon for one, and Go's default action for it is to exit at
// once: no graceful stop, so the shm file was left unclosed (its readers
// saw the writer dead) and, systemd counting SIGHUP as a clean exit,
// Restart=on-failure did not start it again.
func ignoreHangup(logger zerolog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			logger.Warn().Msg("SIGHUP ignored: the handler has no reload; restart it to apply a changed feed file (SIGTERM or SIGINT stop it)")
		}
	}()
}

// ignoreBrokenLog keeps a log whose reader went away (stderr a pipe to
// tee, a logger or a supervisor's log process that exited) from killing
// the handler: its lines are lost, the feed goes on. Go's default for a
// write to a broken stdout or stderr is to die of SIGPIPE, an inherited
// SIG_IGN (systemd's IgnoreSIGPIPE=) notwithstanding: no graceful stop, so
// the shm file was left as a dead writer's and, systemd counting SIGPIPE
// as a clean exit, Restart=on-failure did not start it again. The other
// commands keep the default: `bookview | head` ends as a pipe's writer
// should.
func ignoreBrokenLog() { signal.Ignore(syscall.SIGPIPE) }

// metricsHandler answers a scrape with the text format, rendered without
// allocating (handler.Exposition), unless the scraper asks for the
// protobuf format (Prometheus with native histograms enabled): that one
// carries the native latency buckets and goes through client_golang, which
// allocates per scrape.
func metricsHandler(text http.Handler, proto http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, a := range r.Header["Accept"] {
			if strings.Contains(a, "application/vnd.google.protobuf") {
				proto.ServeHTTP(w, r)
				return
			}
		}
		text.ServeHTTP(w, r)
	})
}

// shedPrivileges switches to account when running as root (warning when
// none is configured), then drops every capability of every thread, and
// logs what the threads kept (read back from /proc/self/task).
func shedPrivileges(account string, logger zerolog.Logger) error {
	if os.Geteuid() == 0 {
		if account == "" {
			logger.Warn().Msg("running as root: set user: in the feed file to switch to an unprivileged account after setup (docs/OPERATIONS.md)")
		} else {
			uid, gid, err := privilege.SwitchUser(account)
			if err != nil {
				return err
			}
			logger.Info().Str("user", account).Int("uid", uid).Int("gid", gid).Msg("switched user")
		}
	}
	if kept := threadCaps(); kept != 0 {
		if err := privilege.Drop(0); errors.Is(err, privilege.ErrNotSupported) {
			logger.Warn().Err(err).Str("kept", kept.String()).Msg("capabilities not dropped")
		} else if err != nil {
			return err
		}
	}
	kept := threadCaps()
	logger.Info().Int("uid", os.Geteuid()).Int("gid", os.Getegid()).Str("capabilities_kept", kept.String()).
		Msg("privileges after setup")
	return nil
}

// threadCaps is the union of the effective and permitted capabilities of
// every thread.
func threadCaps() privilege.Caps {
	eff, perm, err := privilege.ThreadCaps(0)
	if err != nil {
		c, _ := privilege.Effective()
		return c
	}
	var u privilege.Caps
	for i := range eff {
		u |= eff[i] | perm[i]
	}
	return u
}

// healthz answers 200 while the handler's receive thread runs (the process
// is alive and not shutting down), 503 otherwise: a supervisor restarts on
// it.
func healthz(h *handler.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !h.Alive() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not alive: receive thread stopped\n")
			return
		}
		io.WriteString(w, "alive\n")
	}
}

// readyz answers 200 "ready: REASON" when the books can be used (a line
// delivered, no book stale, no unrecovered gap), 503 "not ready: REASON"
// otherwise: a load balancer routes on it.
func readyz(h *handler.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, reason := h.Ready()
		if !ok || !h.Alive() {
			if !h.Alive() {
				reason = "receive thread stopped"
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+reason+"\n")
			return
		}
		io.WriteString(w, "ready: "+reason+"\n")
	}
}

func newLogger(c config.Log) zerolog.Logger {
	if c.Format == "json" {
		return zerolog.New(os.Stderr).Level(c.ZerologLevel()).With().Timestamp().Logger()
	}
	return clilog.Console(os.Stderr).Level(c.ZerologLevel())
}
