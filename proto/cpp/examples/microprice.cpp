// microprice: follow one symbol of a feedhandler shared-memory feed and print
// its microprice on every change, with the time from the handler's publish
// to this program's consistent read.
//
//   g++ -std=c++17 -O2 -Iproto/cpp/include proto/cpp/examples/microprice.cpp -o bin/microprice
//   bin/microprice itch AAPL          # feed /dev/shm/itch; Ctrl-C to stop
//
// microprice = (bid * ask_size + ask * bid_size) / (bid_size + ask_size),
// the top-of-book price weighted toward the side with less size. The latency
// is CLOCK_REALTIME now minus the snapshot's publish_time (the writer stamps
// it, CLOCK_REALTIME, when it publishes), so both ends use the same clock on
// one machine. A book the handler flagged PossiblyStale (a gap it did not
// recover) is printed with "possibly stale" at the end: its levels may miss
// updates, and a strategy must not take it for the market.
//
// The loop is what a strategy does: look up the locate once, follow the
// change journal, and on each update for the locate copy the book into a
// buffer of its own (no allocation, no exception). Overrun means records
// were lost: compare the version to the last one seen. A session change
// without a restart may move the symbol to another locate (ITCH reassigns
// them daily): when the locate reads another symbol or none, look the
// symbol up again. A restarted writer means open the feed again; a closed
// or dead one ends the program (status 0), any other error too (status 1).
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <thread>

#include "feedhandler/shm_reader.hpp"

namespace fs = feedhandler::shm;

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

alignas(64) unsigned char g_buf[1 << 16];

// print_book prints one line for the snapshot in v, ending in "possibly
// stale" when the handler flagged the book PossiblyStale (a gap it did not
// recover, or an order it had no room for: levels may miss shares).
void print_book(const fs::View& v) {
  // publish_time is CLOCK_REALTIME, Unix ns: system_clock's epoch on Linux.
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t latency = now - v->publish_time();
  const char* stale = (v->flags() & bookfb::Flags_PossiblyStale) != 0 ? "  possibly stale" : "";
  fs::Level bid, ask;
  bool has_bid = v.bid(0, bid), has_ask = v.ask(0, ask);
  if (has_bid && has_ask && bid.shares + ask.shares > 0) {
    double micro = (double(bid.price) * double(ask.shares) + double(ask.price) * double(bid.shares)) /
                   double(bid.shares + ask.shares) / 10000.0;
    std::printf("%.*s v%" PRIu64 " microprice %.4f  bid %" PRIu64 " @ %.4f  ask %" PRIu64 " @ %.4f  publish->read %" PRId64
                " ns%s\n",
                int(v.symbol().size()), v.symbol().data(), v.version(), micro, bid.shares, bid.price / 10000.0,
                ask.shares, ask.price / 10000.0, latency, stale);
  } else {
    std::printf("%.*s v%" PRIu64 " one-sided book (%u bids, %u asks)  publish->read %" PRId64 " ns%s\n",
                int(v.symbol().size()), v.symbol().data(), v.version(), v.bid_count(), v.ask_count(), latency, stale);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: microprice FEED SYMBOL\n");
    return 2;
  }
  const char* feed = argv[1];
  const char* symbol = argv[2];
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // A feed file truncated under the mapping (an operator's mistake) is
  // Format from wait and read instead of a SIGBUS: this program owns its
  // signals, so it opts in to the library's SIGBUS handler.
  if (fs::install_truncation_guard() != fs::Error::Ok) {
    std::perror("microprice: install_truncation_guard");
    return 1;
  }

  fs::Reader r;
  char why[512];  // error_text's: the error with its cause (a dead writer's pid, ...)
  for (;;) {  // (re)attach
    fs::Error e = r.open_wait(feed, 60'000'000'000, 10'000'000);
    if (e != fs::Error::Ok) {
      std::fprintf(stderr, "microprice: open: %s\n", r.error_text(e, why, sizeof why));
      return 1;
    }
    if (r.info().max_snapshot > sizeof g_buf) {
      std::fprintf(stderr, "microprice: snapshots of %u bytes exceed the buffer\n", r.info().max_snapshot);
      return 1;
    }
    // The stock directory may arrive after the start: wait for the symbol,
    // following a restart of the writer meanwhile as below.
    uint16_t locate = 0;
    bool found;
    while (!(found = r.lookup(symbol, locate)) && !g_stop && (e = r.check()) == fs::Error::Ok) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!found && e == fs::Error::Restarted) {
      std::fprintf(stderr, "microprice: writer restarted, attaching again\n");
      continue;
    }
    if (!found && g_stop) {
      std::fprintf(stderr, "microprice: %s not registered in %s: stopped\n", symbol, r.path());
      return 1;
    }
    if (!found) {
      std::fprintf(stderr, "microprice: %s not registered: %s\n", symbol, r.error_text(e, why, sizeof why));
      return 1;
    }
    fs::Follower f = r.follow();
    fs::View v;
    uint64_t seen = 0;
    bool bound = true;  // false: the symbol left its locate, not bound to another yet
    if (r.read(locate, g_buf, sizeof g_buf, v) == fs::Error::Ok) {
      seen = v.version();
      print_book(v);
    }
    fs::Update ups[256];
    fs::WaitOptions opt;
    opt.spin = 100000;  // a strategy with a core of its own spins longer
    while (!g_stop) {
      size_t n = 0;
      e = f.wait(ups, 256, n, 100'000'000, opt);
      // A version other than the last one seen is a change: after a
      // session change rebinds the locate, versions start again from 1,
      // so never compare with >. After an overrun read again whatever the
      // version: the locate may have been given to another symbol, whose
      // count reached the version last seen, in the records lost.
      bool changed = e == fs::Error::Overrun;
      for (size_t i = 0; i < n; i++) changed |= ups[i].locate == locate && ups[i].version != seen;
      // A session change may also move the symbol to another locate: the
      // old one gets no record, it is unbound (version 0).
      if (!changed && n > 0) changed = !bound || r.version(locate) == 0;
      if (changed) {
        fs::Error re = r.read(locate, g_buf, sizeof g_buf, v);
        if (re == fs::Error::UnknownLocate || re == fs::Error::NoData ||
            (re == fs::Error::Ok && v.symbol() != symbol)) {
          // A new session moved the symbol to another locate (or gave
          // this locate to another symbol): look it up again.
          // Not bound yet: try again at the next wake.
          bound = r.lookup(symbol, locate);
          seen = 0;
          re = bound ? r.read(locate, g_buf, sizeof g_buf, v) : fs::Error::UnknownLocate;
        }
        if (re == fs::Error::Ok) {
          seen = v.version();
          print_book(v);
        } else if (re != fs::Error::UnknownLocate && re != fs::Error::NoData) {
          std::fprintf(stderr, "microprice: read %s: %s\n", symbol, r.error_text(re, why, sizeof why));
          return 1;
        }
      }
      if (e == fs::Error::Restarted) break;  // a new writer: attach again
      if (e == fs::Error::Closed || e == fs::Error::WriterDead) {
        std::fprintf(stderr, "microprice: %s\n", r.error_text(e, why, sizeof why));
        return 0;
      }
      // Anything else (Format: the file was truncated under the mapping)
      // will not go away: waiting again would report it forever, or fault.
      if (e != fs::Error::Ok && e != fs::Error::Overrun) {
        std::fprintf(stderr, "microprice: %s\n", r.error_text(e, why, sizeof why));
        return 1;
      }
    }
    if (g_stop) return 0;
    std::fprintf(stderr, "microprice: writer restarted, attaching again\n");
  }
}
