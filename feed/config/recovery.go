package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// recovery decodes the recovery section:
//
//	recovery:
//	  rerequest: {servers: [host:port, ...], timeout, retries, max_request_messages, requests_per_second, max_rerequest_gap,
//	              server_rest, server_rest_max, recv_buffer, source_port}
//	  snapshot: {server, username, password_file | password_env, session, retry, retry_max,
//	             connect_timeout, idle_timeout, max_duration, max_size}
//	  late_join: snapshot | rerequest | off
//	  spill: 32768
//
// It returns recovery.spill's field
// (node nil when not given), which decode checks against
// arbitration.max_pending once the whole file is read: the sections may
// come in any order.
func (d *decoder) recovery(f field, c *Config) (spill field) {
	r := &c.Recovery
	d.mapping(f, []entry{
		{"server", func(f field) {
			d.errorf(f, "replaced by recovery.rerequest.servers (a list of host:port)")
		}},
		{"rerequest", func(f field) { d.rerequest(f, &r.Rerequest) }},
		{"snapshot", func(f field) { d.snapshot(f, &r.Snapshot) }},
		{"late_join", func(f field) {
			if v, ok := d.enum(f, LateJoinSnapshot, LateJoinRerequest, LateJoinOff); ok {
				r.LateJoin = v
			}
		}},
		{"spill", func(f field) {
			if v, ok := d.integer(f, 16, 1<<22); ok {
				r.Spill = int(v)
				spill = f
			}
		}},
	})
	return spill
}

func (d *decoder) rerequest(f field, r *Rerequest) {
	var rest, restMax field // given and in range: checked against each other below
	d.mapping(f, []entry{
		{"servers", func(f field) {
			items, ok := d.list(f)
			if !ok {
				return
			}
			first := map[netip.AddrPort]int{}
			for _, it := range items {
				s, ok := d.hostPort(it, true)
				if !ok {
					continue
				}
				ap, err := netip.ParseAddrPort(s)
				if err != nil || !ap.Addr().Is4() {
					d.errorf(it, "%q: want an IPv4 address:port (the re-request client sends UDP to it)", s)
					continue
				}
				if a := ap.Addr(); a.IsMulticast() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
					d.errorf(it, "%q: %s is not a unicast address (a re-request server is one host, answering to ours)", s, a)
					continue
				}
				if l, dup := first[ap]; dup {
					d.errorf(it, "%q is listed twice (first at line %d): a failover to the same server", s, l)
					continue
				}
				first[ap] = it.line()
				r.Servers = append(r.Servers, ap)
			}
		}},
		{"timeout", func(f field) {
			if v, ok := d.duration(f); ok {
				if v < 100*time.Microsecond || v > time.Minute {
					d.errorf(f, "%v is out of range [100µs, 1m]", v)
					return
				}
				r.Timeout = v
			}
		}},
		{"retries", func(f field) {
			if v, ok := d.integer(f, 1, 100); ok {
				r.Retries = int(v)
			}
		}},
		{"max_request_messages", func(f field) {
			if v, ok := d.integer(f, 1, 65534); ok {
				r.MaxRequestMessages = int(v)
			}
		}},
		{"requests_per_second", func(f field) {
			if v, ok := d.integer(f, 1, 1_000_000); ok {
				r.RequestsPerSecond = int(v)
			}
		}},
		{"max_rerequest_gap", func(f field) {
			if v, ok := d.integer(f, 1, 1<<40); ok {
				r.MaxRerequestGap = int(v)
			}
		}},
		{"server_rest", func(f field) {
			if d.durationIn(f, &r.ServerRest, MinServerRest, MaxServerRest, "gaps skip re-request this long after every server failed a range, doubled per such failure in a row up to server_rest_max") {
				rest = f
			}
		}},
		{"server_rest_max", func(f field) {
			if d.durationIn(f, &r.ServerRestMax, MinServerRest, MaxServerRestMax, "the rest after failures in a row, server_rest doubled, stops growing here") {
				restMax = f
			}
		}},
		{"recv_buffer", func(f field) {
			if v, ok := d.byteSize(f, MinRerequestRecvBuffer, MaxRerequestRecvBuffer); ok {
				r.RecvBuffer = int(v)
			}
		}},
		{"source_port", func(f field) {
			if v, ok := d.enum(f, SourcePortAny, SourcePortServer); ok {
				r.SourcePort = v
			}
		}},
	})
	// After the whole section: server_rest may come after server_rest_max.
	d.doubledUpTo("recovery.rerequest", "server_rest", "server_rest_max", r.ServerRest, r.ServerRestMax, rest, restMax,
		"the rest starts at server_rest and is doubled up to server_rest_max")
}

// doubledUpTo refuses a wait doubled up to a cap (section.high) below the
// wait it starts at (section.low), at the line of the cap when given,
// else at the wait's (the cap at its default). lowF and highF: the keys'
// fields when given and in range.
func (d *decoder) doubledUpTo(section, low, high string, lowV, highV time.Duration, lowF, highF field, why string) {
	switch {
	case highV >= lowV:
	case highF.node != nil:
		d.errorf(highF, "%v is shorter than %s.%s (%v): %s", highV, section, low, lowV, why)
	case lowF.node != nil:
		d.errorf(lowF, "%v is longer than %s.%s (%v, its default): %s; raise %s too", lowV, section, high, highV, why, high)
	}
}

func (d *decoder) snapshot(f field, s *Snapshot) {
	var pwFile, pwEnv field
	var retry, retryMax field // given and in range: checked against each other below

	pwInFile := false // password: given, refused: no second error for the source
	userGiven := false
	d.mapping(f, []entry{
		{"server", func(f field) { s.Server, _ = d.hostPort(f, true) }},
		{"username", func(f field) {
			userGiven = true // a bad one is said at its line, once
			if v, ok := d.str(f); ok {
				if len(v) == 0 || len(v) > soupbintcp.UsernameLen {
					d.errorf(f, "%q: a SoupBinTCP username is 1 to %d characters", v, soupbintcp.UsernameLen)
					return
				}
				if !printableASCII(v) || strings.ContainsRune(v, ' ') {
					// Sent as its bytes: refused at every login.
					d.errorf(f, "%q: a SoupBinTCP username is printable ASCII without spaces", v)
					return
				}
				s.Username = v
			}
		}},
		{"password_file", func(f field) {
			if v, ok := d.str(f); ok {
				if v != "" && !filepath.IsAbs(v) {
					// As capture.path: the working directory is / under
					// systemd but the shell's for feedhandler check, so
					// check would read one file and the start another
					// (or none: exit 78 at every start).
					d.errorf(f, "%q is relative: it would name a file in the working directory, / under systemd but the shell's for feedhandler check; give an absolute path, such as /etc/feedhandler/glimpse.password", v)
				}
				s.PasswordFile, pwFile = v, f
			}
		}},
		{"password_env", func(f field) {
			if v, ok := d.str(f); ok {
				s.PasswordEnv, pwEnv = v, f
			}
		}},
		{"session", func(f field) {
			if v, ok := d.str(f); ok {
				if len(v) > soupbintcp.SessionLen {
					d.errorf(f, "%q: a session is at most %d characters", v, soupbintcp.SessionLen)
					return
				}
				if !printableASCII(v) {
					d.errorf(f, "%q: a SoupBinTCP session is printable ASCII", v)
					return
				}
				s.Session = v
			}
		}},
		{"retry", func(f field) {
			if v, ok := d.duration(f); ok {
				if v < MinSnapshotRetry || v > MaxSnapshotRetry {
					d.errorf(f, "%v is out of range [%v, %v] (the wait after a failed snapshot, doubled per consecutive failure up to retry_max)", v, MinSnapshotRetry, MaxSnapshotRetry)
					return
				}
				s.Retry, retry = v, f
			}
		}},
		{"retry_max", func(f field) {
			if v, ok := d.duration(f); ok {
				if v < MinSnapshotRetry || v > MaxSnapshotRetryMax {
					d.errorf(f, "%v is out of range [%v, %v] (the first retry waits retry, doubled per consecutive failure up to this)", v, MinSnapshotRetry, MaxSnapshotRetryMax)
					return
				}
				s.RetryMax, retryMax = v, f
			}
		}},
		{"connect_timeout", func(f field) {
			d.durationIn(f, &s.ConnectTimeout, MinSnapshotConnectTimeout, MaxSnapshotConnectTimeout, "the dial and the login to the snapshot server")
		}},
		{"idle_timeout", func(f field) {
			d.durationIn(f, &s.IdleTimeout, MinSnapshotIdleTimeout, MaxSnapshotIdleTimeout, "the snapshot server silent, no data nor heartbeat, this long: a stalled snapshot; it heartbeats every second")
		}},
		{"max_duration", func(f field) {
			d.durationIn(f, &s.MaxDuration, MinSnapshotMaxDuration, MaxSnapshotMaxDuration, "from the Login Accepted to the End of Snapshot; a longer download is a failed snapshot")
		}},
		{"max_size", func(f field) {
			if v, ok := d.byteSize(f, MinSnapshotMaxSize, MaxSnapshotMaxSize); ok {
				s.MaxSize = v
			}
		}},
		{"password", func(f field) {
			d.errorf(f, "not accepted in the file: use password_file or password_env")
			pwInFile = true
		}},
	})
	// After the whole section: retry may come after retry_max.
	d.doubledUpTo("recovery.snapshot", "retry", "retry_max", s.Retry, s.RetryMax, retry, retryMax,
		"the wait after a failed snapshot starts at retry and is doubled up to retry_max")
	switch {
	case pwFile.node != nil && pwEnv.node != nil:
		d.errorf(pwEnv, "give password_file or password_env, not both")
	case pwFile.node != nil:
		if s.PasswordFile != "" && !filepath.IsAbs(s.PasswordFile) {
			return // said at the field
		}
		if d.offline {
			return
		}
		pw, err := readPassword(s.PasswordFile)
		if err != nil {
			d.hostErrorf(pwFile, "%v", err)
			return
		}
		if tooLong(pw) {
			d.hostErrorf(pwFile, "%s holds a password of %d characters: SoupBinTCP's login has room for %d", s.PasswordFile, len(pw), soupbintcp.PasswordLen)
			return
		}
		s.Password = pw
	case pwEnv.node != nil:
		if s.PasswordEnv == "" {
			d.errorf(pwEnv, "empty: give the name of the environment variable holding the password")
			return
		}
		if d.offline {
			return
		}
		v, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			d.hostErrorf(pwEnv, "environment variable %s is not set (set it, e.g. in the unit's EnvironmentFile=, /etc/feedhandler/FEED.env, root-only: docs/OPERATIONS.md section 2)", s.PasswordEnv)
			return
		}
		if blank(v) {
			d.hostErrorf(pwEnv, "environment variable %s is set but empty: the snapshot server would refuse the login (set it, e.g. in the unit's EnvironmentFile=)", s.PasswordEnv)
			return
		}
		if tooLong(v) {
			d.hostErrorf(pwEnv, "environment variable %s holds a password of %d characters: SoupBinTCP's login has room for %d", s.PasswordEnv, len(v), soupbintcp.PasswordLen)
			return
		}
		s.Password = v
	case s.Server != "" && !pwInFile:
		d.errorf(f, "snapshot.server is set but neither password_file nor password_env is: the snapshot server would refuse the login")
	}
	if s.Server != "" && !userGiven {
		d.errorf(f, "snapshot.server is set but snapshot.username is not")
	}
}

// durationIn decodes one of recovery's durations (the snapshot's
// timeouts, the re-request servers' rest) into dst, refusing a value
// outside [lo, hi] at its line (what is the duration's). It reports
// whether dst was set.
func (d *decoder) durationIn(f field, dst *time.Duration, lo, hi time.Duration, what string) bool {
	if v, ok := d.duration(f); ok {
		if v < lo || v > hi {
			d.errorf(f, "%v is out of range [%v, %v] (%s)", v, lo, hi, what)
			return false
		}
		*dst = v
		return true
	}
	return false
}

// closedToOthers reports whether a directory above the real path of the
// open file f (named path; symbolic links followed, read back from
// /proc/self/fd) lacks search permission for others (o+x), so that a user
// neither its owner nor in its group cannot open the file whatever the
// file's own mode: a Kubernetes secret volume (files 0644 by default,
// reached through ..data links) under a directory of the service's own,
// or a file kept in a directory of mode 0750. It returns the real path,
// for the error when it is not. Hard links elsewhere and ACLs are not
// looked for: the file is the operator's.
func closedToOthers(f *os.File, path string) (string, bool) {
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil || !filepath.IsAbs(real) {
		if real, err = filepath.Abs(path); err == nil {
			real, err = filepath.EvalSymlinks(real)
		}
		if err != nil {
			return path, false
		}
	}
	for d := filepath.Dir(real); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return real, true
		}
		if d == "/" || d == "." {
			return real, false
		}
	}
}

// blank reports whether a password is empty once its SoupBinTCP padding
// (spaces on the right) and line ends are taken off: sent, it is an empty
// password, which no snapshot server accepts.
func blank(pw string) bool { return strings.TrimRight(pw, " \r\n") == "" }

// tooLong reports whether a password does not fit in SoupBinTCP's login
// request (soupbintcp.PasswordLen characters): the client refuses to dial
// with it, at every snapshot, so the books would never be recovered.
func tooLong(pw string) bool { return len(pw) > soupbintcp.PasswordLen }

// readPassword reads recovery.snapshot.password_file: a regular file, not
// open to every user (its owner and group only, as ssh wants of a private
// key) unless every user cannot reach it (closedToOthers), holding the
// password, not blank; line ends after it are not part of it.
func readPassword(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty: give the path of the file holding the password")
	}
	f, err := openRegular(path)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		real, closed := closedToOthers(f, path)
		if !closed {
			return "", fmt.Errorf("%s is open to every user (mode %04o) and every user can reach %s: the snapshot password would leak; chmod o-rwx %s (and keep it owned by root, readable by the handler's group), or keep it where others cannot enter (a directory above it without o+x; Kubernetes: the secret volume's defaultMode: 0440 with the pod's fsGroup, or a mount under such a directory)", path, perm, real, real)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if blank(pw) {
		return "", fmt.Errorf("%s is empty: the snapshot server would refuse the login", path)
	}
	return pw, nil
}
