package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
)

func init() {
	register(&command{name: "run", summary: "run the feed handler: feedhandler --feed FILE.yaml", run: runFeed})
}

func runFeed(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	feed := fs.String("feed", "", "feed config `FILE.yaml` (see feeds/nasdaq.yaml)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *feed == "" {
		fs.Usage()
		return errors.New("--feed is required")
	}
	cfg, err := config.Load(*feed)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := handler.Start(handler.FromConfig(cfg, logger))
	if err != nil {
		return err
	}
	quietRuntime(logger)
	return serve(ctx, h, cfg, logger)
}

// serve runs h until ctx ends (the first SIGINT/SIGTERM), then shuts down
// gracefully; a second signal exits at once.
func serve(ctx context.Context, h *handler.Handler, cfg *config.Config, logger zerolog.Logger) error {
	var srv *http.Server
	if cfg.Metrics.Listen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(handler.NewCollector(h))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			h.Stop()
			return err
		}
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		logger.Info().Str("addr", ln.Addr().String()).Msg("metrics on /metrics")
	}
	tick := time.NewTicker(cfg.StatsInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			h.LogStats(false)
		}
	}
	logger.Info().Msg("shutting down (signal again to exit at once)")
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-again
		logger.Warn().Msg("second signal: exiting now")
		os.Exit(130)
	}()
	if srv != nil {
		srv.Close()
	}
	err := h.Stop()
	h.LogStats(true)
	return err
}

func newLogger(c config.Log) zerolog.Logger {
	var l zerolog.Logger
	if c.Format == "json" {
		l = zerolog.New(os.Stderr)
	} else {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	}
	return l.Level(c.ZerologLevel()).With().Timestamp().Logger()
}
