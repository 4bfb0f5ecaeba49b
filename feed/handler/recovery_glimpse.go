package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the GLIMPSE snapshot source (GlimpseSnapshot) and its
// comparison of the server's session with those the lines left.

// ErrSnapshotSession: the snapshot server's current session, which a blank
// GLIMPSE session logs in to, is a session the lines have left.
var ErrSnapshotSession = errors.New("snapshot of a session the lines have left")

// AnySnapshotSession, as the GLIMPSE session (glimpse.Config.Session,
// `recovery.snapshot.session`), logs in to the server's current session
// whatever its name, never compared with the lines' (see GlimpseSnapshot).
const AnySnapshotSession = "*"

// sessionsKept: how many of the lines' past sessions GlimpseSnapshot
// remembers to compare a snapshot's session with.
const sessionsKept = 8

// linesLeftKey is the context key under which the recovery hands its
// SnapshotFunc the sessions it saw the lines leave (the last sessionsKept,
// a []moldudp64.Session), whether or not a snapshot was asked under them:
// GlimpseSnapshot compares the server's session with them too.
type linesLeftKey struct{}

// GlimpseSnapshot returns a SnapshotFunc fetching GLIMPSE 5.0 snapshots
// over SoupBinTCP with cfg. An empty cfg.Session logs in to the server's
// current session (SoupBinTCP's blank Requested Session), as the config's
// `session: ""` says: a name that changes daily does not belong in a
// config file. No Nasdaq specification says that the GLIMPSE server's
// SoupBinTCP session carries the TotalView-ITCH MoldUDP64 session's name
// (docs/GLIMPSE.md, "Which session"), so a server naming its session
// otherwise is loaded. The name is compared only where it can be: a server
// whose current session is one the lines were on before (in this
// process's calls, or left at a session change the recovery saw: ctx's
// linesLeftKey) names its sessions as the lines do and is still on the
// numbering they left, its snapshot possibly behind them where no sequence
// number tells it apart (loaded, its books went out under the feed's name,
// flagged whole): an error wrapping ErrSnapshotSession, refused at the
// Login Accepted, before the snapshot is downloaded. The first join of
// a process has no such past: a server there on the previous day's
// session is not told apart. AnySnapshotSession compares nothing; a
// session named in cfg.Session is checked by glimpse against the Login
// Accepted. A snapshot that arrives after the feed's session changed is
// discarded (recovery's gen).
func GlimpseSnapshot(cfg glimpse.Config) SnapshotFunc {
	compare := strings.TrimSpace(cfg.Session) == ""
	if cfg.Session == AnySnapshotSession {
		cfg.Session = ""
	}
	var (
		mu   sync.Mutex
		left [sessionsKept]moldudp64.Session // the lines' past sessions, newest at n-1 (mod sessionsKept)
		n    int
	)
	return func(ctx context.Context, lines moldudp64.Session, fn func(msg []byte) error) (Snapshot, error) {
		mu.Lock()
		if n == 0 || left[(n-1)%sessionsKept] != lines {
			left[n%sessionsKept] = lines
			n++
		}
		past := left
		mu.Unlock()
		c := cfg
		if compare {
			// Refused at the Login Accepted, which names the session,
			// before the snapshot is downloaded.
			own := cfg.CheckSession
			c.CheckSession = func(session string) error {
				if own != nil {
					if err := own(session); err != nil {
						return err
					}
				}
				if session == "" || session == strings.TrimSpace(lines.String()) {
					return nil
				}
				// The sessions this source was asked under, and those the
				// recovery saw the lines leave (asked or not).
				told, _ := ctx.Value(linesLeftKey{}).([]moldudp64.Session)
				for _, s := range append(past[:], told...) {
					if s != (moldudp64.Session{}) && s != lines && session == strings.TrimSpace(s.String()) {
						return fmt.Errorf("%w: the server's current session is %q, which the lines left for %q",
							ErrSnapshotSession, session, strings.TrimSpace(lines.String()))
					}
				}
				return nil
			}
		}
		res, err := glimpse.Fetch(ctx, c, fn)
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot from %s: %w", cfg.Addr, err)
		}
		return Snapshot{Next: res.NextSeq, Session: res.Session}, nil
	}
}
