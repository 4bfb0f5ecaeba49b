package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/marketfeed/feedhandler/internal/exchange"
)

func init() {
	register(&command{name: "glimpse-server", summary: "serve GLIMPSE 5.0 snapshots (SoupBinTCP 3.00) of a day file's books at a sequence number", run: runGlimpseServer})
}

// snapshotFlags are the options of a lab GLIMPSE server, shared by
// `send --snapshot-listen` and `glimpse-server`.
type snapshotFlags struct {
	listen, user, passwordFile, session *string
	linger                              *time.Duration
}

// passwordEnv names the environment variable that may hold the password:
// the one feeds/nasdaq.yaml's recovery.snapshot.password_env names, so the
// lab server and a handler on the shipped feed file share one variable.
// oldPasswordEnv, the name it had before, is read when passwordEnv is unset.
const (
	passwordEnv    = "FEEDHANDLER_GLIMPSE_PASSWORD"
	oldPasswordEnv = "FEEDHANDLER_SNAPSHOT_PASSWORD"
)

// addSnapshotFlags registers the server's flags on fs. beside is true for
// send's server, which stops when the send ends (after --snapshot-linger)
// and whose session defaults to the MoldUDP64 session sent; glimpse-server
// serves until interrupted, its session defaulting to its --session.
func addSnapshotFlags(fs *flag.FlagSet, listenFlag string, beside bool) *snapshotFlags {
	f := &snapshotFlags{
		listen:       fs.String(listenFlag, "", "serve GLIMPSE 5.0 snapshots over SoupBinTCP on this host:port"),
		user:         fs.String("snapshot-user", "lab", "SoupBinTCP username the snapshot server accepts (up to 6 characters)"),
		passwordFile: fs.String("snapshot-password-file", "", "file holding the snapshot server's password (default: $"+passwordEnv+", else $"+oldPasswordEnv+", else empty)"),
		linger:       new(time.Duration),
	}
	if beside {
		f.session = fs.String("snapshot-session", "", "SoupBinTCP session name (default: the MoldUDP64 session)")
		f.linger = fs.Duration("snapshot-linger", 0, "keep serving snapshots this long after the send ends")
	} else {
		f.session = fs.String("snapshot-session", "", "SoupBinTCP session name (default: --session)")
	}
	return f
}

func (f *snapshotFlags) password() (string, error) {
	if *f.passwordFile != "" {
		b, err := os.ReadFile(*f.passwordFile)
		if err != nil {
			return "", fmt.Errorf("snapshot password: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if pw := os.Getenv(passwordEnv); pw != "" {
		return pw, nil
	}
	return os.Getenv(oldPasswordEnv), nil
}

// start loads the day and serves snapshots at position(); stop closes the
// server (after --snapshot-linger). A no-op when no address was given.
func (f *snapshotFlags) start(path, session string, firstSeq uint64, position func() uint64) (stop func(), err error) {
	if *f.listen == "" {
		return func() {}, nil
	}
	pw, err := f.password()
	if err != nil {
		return nil, err
	}
	if *f.session != "" {
		session = *f.session
	}
	day, err := exchange.LoadDay(path, firstSeq)
	if err != nil {
		return nil, err
	}
	srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{
		Listen: *f.listen, Username: *f.user, Password: pw, Session: session,
		Messages: day.Message, Position: position, FirstSeq: firstSeq,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		if err := srv.Serve(); err != nil {
			log.Error().Err(err).Msg("glimpse server")
		}
	}()
	log.Info().Str("listen", srv.Addr().String()).Str("user", *f.user).Str("session", session).Int("messages", day.Len()).Msg("glimpse server: serving snapshots")
	return func() {
		if *f.linger > 0 {
			time.Sleep(*f.linger)
		}
		srv.Close()
		st := srv.Stats()
		log.Info().Uint64("logins", st.Logins).Uint64("rejected", st.Rejected).Uint64("snapshots", st.Snapshots).
			Uint64("messages", st.Messages).Uint64("last_position", st.LastPosition).Uint64("last_open_orders", st.LastOpen).
			Dur("last_build", st.LastBuildTime).Msg("glimpse server: stopped")
	}, nil
}

func runGlimpseServer(args []string) error {
	fs := flag.NewFlagSet("glimpse-server", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler glimpse-server --listen ADDR [--at SEQ] [flags] FILE")
		fs.PrintDefaults()
	}
	snap := addSnapshotFlags(fs, "listen", false)
	file := fs.String("file", "", "day file (BinaryFILE, pcap or pcapng); or give it as the argument")
	at := fs.Uint64("at", 0, "serve the books after this sequence number (0: the whole day)")
	session := fs.String("session", "00000001", "session name")
	firstSeq := fs.Uint64("first-seq", 1, "sequence number of the file's first message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path := *file
	if path == "" && fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	if path == "" || *snap.listen == "" {
		fs.Usage()
		return errors.New("need --listen and a day file")
	}
	pos := uint64(1<<64 - 1)
	if *at > 0 {
		pos = *at
	}
	stop, err := snap.start(path, *session, *firstSeq, func() uint64 { return pos })
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	<-ctx.Done()
	stop()
	return nil
}
