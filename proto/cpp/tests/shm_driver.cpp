// shm_driver: the C++ reader under test. The Go tests (proto/shm/cpp_reader_test.go,
// cmd/feedhandler/cpp_reader_test.go) build it with g++ and run it against the Go
// writer. Every mode prints lines the Go side parses; a failure prints
// "error ..." and exits 1.
//
//   shm_driver json NAME        books as `feedhandler bookview --once --json` prints them
//   shm_driver follow NAME      wait for NAME, follow the journal until the feed is closed,
//                               print "attached" when following, then the books it holds as JSON
//   shm_driver torn NAME [slow|fast [STALE_NS]]
//                               read and follow a writer at full speed, recomputing every
//                               field from (locate, seq); "stats ..." at the end. STALE_NS
//                               is the stale limit (OpenOptions::stale_after_ns, 0: the
//                               default); a slot held over a second (Busy) is read again later
//   shm_driver session NAME     commands on stdin (open, opencut, check, read L, readsymbol SYM, follow,
//                               poll, pollupto N, pollmany N, pollfor MS, wait MS, waitloop MS FOR_MS CHECK_MS,
//                               chdir DIR, path, stats, close, stall S, skew S), one result line each
//   shm_driver bench-read NAME N  consistent reads of locate 1: "read median-ns X min-ns Y"
//   shm_driver latency NAME     publish-to-read latency per journal update until closed
//   shm_driver noalloc NAME     every reader call, counting operator new: "allocs N"
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

// The session command readsymbol stops read_symbol between its lookup and
// its read: "lookedup L", then it waits for a line on stdin (the test
// rebinds the locate meanwhile).
#include <string_view>
static void looked_up(std::string_view symbol, uint16_t locate);
#define FEEDHANDLER_SHM_TEST_LOOKED_UP(symbol, locate) looked_up(symbol, locate)
// The session command opencut truncates the feed file to 0 in open, right
// after its mmap (mapped).
static void mapped(const char* path);
#define FEEDHANDLER_SHM_TEST_MAPPED(path) mapped(path)

#include "feedhandler/shm_reader.hpp"

namespace fs = feedhandler::shm;
using fs::Error;

// The program's clock_gettime stands in for the C library's (the reader's
// clocks, detail::realtime_ns and monotonic_ns, call it), so that the
// session commands stall and skew can move this process's clocks: both by
// g_clock_off ns. With g_stall_ns set, the next reading of CLOCK_REALTIME
// first adds it to the offset and stores a heartbeat of that moment into
// the feed file g_stall_path: a reader that lost its CPU that long, inside
// a look at the heartbeat, while the writer beat on.
// g_realtime_reads counts the readings of CLOCK_REALTIME: the reader reads
// it only to look at the heartbeat (pollfor counts a poll's looks so).
static std::atomic<int64_t> g_clock_off{0}, g_stall_ns{0}, g_realtime_reads{0};
static std::string g_stall_path;

extern "C" int clock_gettime(clockid_t c, struct timespec* ts) noexcept {
  if (syscall(SYS_clock_gettime, c, ts) != 0) return -1;
  if (c != CLOCK_REALTIME && c != CLOCK_MONOTONIC) return 0;
  if (c == CLOCK_REALTIME) g_realtime_reads++;
  int64_t stall = c == CLOCK_REALTIME ? g_stall_ns.exchange(0) : 0;
  int64_t off = g_clock_off.fetch_add(stall) + stall;
  int64_t ns = int64_t(ts->tv_sec) * 1000000000 + ts->tv_nsec + off;
  if (stall != 0) {
    int fd = ::open(g_stall_path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (::pwrite(fd, &ns, sizeof ns, 256) != sizeof ns) std::perror("stall: heartbeat");
      ::close(fd);
    }
  }
  ts->tv_sec = ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
  return 0;
}

// GCC pairs the inlined replacement operator delete's free() with the
// operator new it can see and warns, although both sides are replaced.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

// Every operator new of the program is counted: the noalloc mode checks
// that the reader's calls make none.
static std::atomic<uint64_t> g_allocs{0};
void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  std::abort();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

// g_stop_lookup is set by readsymbol: its read_symbol's first lookup
// stops (looked_up).
static bool g_stop_lookup = false;

static void looked_up(std::string_view, uint16_t locate) {
  if (!g_stop_lookup) return;
  g_stop_lookup = false;
  std::printf("lookedup %u\n", unsigned(locate));
  std::fflush(stdout);
  char line[64];
  if (std::fgets(line, sizeof line, stdin) == nullptr) std::exit(1);
}

// g_cut_mapped is set by opencut: its open truncates the file to 0 bytes
// between its mmap and its first load from the mapping.
static bool g_cut_mapped = false;

static void mapped(const char* path) {
  if (!g_cut_mapped) return;
  g_cut_mapped = false;
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0 || ftruncate(fd, 0) != 0) std::perror("opencut: truncate");
  if (fd >= 0) ::close(fd);
}

namespace {

constexpr size_t kBufSize = 1 << 20;
alignas(64) unsigned char g_buf[kBufSize];

int fail(const char* what, Error e) {
  std::printf("error %s %s\n", what, fs::error_name(e));
  std::fflush(stdout);
  return 1;
}

// quote writes s as Go's strconv.Quote does for the ASCII symbols a feed
// carries (escapes for quote, backslash and control bytes).
void quote(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\a': out += "\\a"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\v': out += "\\v"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += "\\x";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

struct JsonBook {
  std::string key;
  std::vector<fs::Level> bids, asks;
};

void append_levels(std::string& out, const std::vector<fs::Level>& ls) {
  out += '[';
  for (size_t i = 0; i < ls.size(); i++) {
    if (i > 0) out += ", ";
    out += '[' + std::to_string(ls[i].price) + ", " + std::to_string(ls[i].shares) + ", " +
           std::to_string(ls[i].orders) + ']';
  }
  out += ']';
}

// books_json renders snapshots (in locate order) as book.WriteBooksJSON does:
// books with levels only, keyed by symbol ("SYMBOL#locate" for a repeated
// symbol), sorted by key.
std::string books_json(const std::vector<std::pair<uint16_t, fs::View>>& views) {
  std::vector<JsonBook> list;
  std::map<std::string, bool> seen;
  for (const auto& [locate, v] : views) {
    if (v.bid_count() == 0 && v.ask_count() == 0) continue;
    JsonBook b;
    b.key = std::string(v.symbol());
    if (seen[b.key]) b.key += "#" + std::to_string(locate);
    seen[b.key] = true;
    fs::Level l;
    for (uint32_t i = 0; v.bid(i, l); i++) b.bids.push_back(l);
    for (uint32_t i = 0; v.ask(i, l); i++) b.asks.push_back(l);
    list.push_back(std::move(b));
  }
  std::sort(list.begin(), list.end(), [](const JsonBook& a, const JsonBook& b) { return a.key < b.key; });
  std::string out = "{";
  for (size_t i = 0; i < list.size(); i++) {
    out += i > 0 ? ",\n" : "\n";
    quote(out, list[i].key);
    out += ": {\"bids\": ";
    append_levels(out, list[i].bids);
    out += ", \"asks\": ";
    append_levels(out, list[i].asks);
    out += '}';
  }
  out += "\n}\n";
  return out;
}

// Held is a snapshot copy the follower keeps (its own aligned storage).
struct Held {
  std::vector<uint64_t> mem;  // 8-byte aligned storage
  fs::View view;
  bool has = false;
};

Error read_into(const fs::Reader& r, uint16_t locate, Held& h) {
  size_t need = r.info().max_snapshot;
  if (h.mem.size() * 8 < need) h.mem.resize((need + 7) / 8);
  fs::View v;
  Error e = r.read(locate, h.mem.data(), h.mem.size() * 8, v);
  if (e == Error::Ok) {
    h.view = v;
    h.has = true;
  }
  return e;
}

std::vector<std::pair<uint16_t, fs::View>> sorted_views(std::map<uint16_t, Held>& held) {
  std::vector<std::pair<uint16_t, fs::View>> out;
  for (auto& [loc, h] : held) {
    if (h.has) out.emplace_back(loc, h.view);
  }
  return out;
}

int cmd_json(const char* name) {
  fs::Reader r;
  if (Error e = r.open(name); e != Error::Ok) return fail("open", e);
  std::map<uint16_t, Held> held;
  fs::Instrument in;
  for (uint32_t i = 0; r.instrument(i, in); i++) {
    if (in.retired) continue;
    Error e = read_into(r, in.locate, held[in.locate]);
    if (e != Error::Ok && e != Error::NoData) return fail("read", e);
  }
  std::fputs(books_json(sorted_views(held)).c_str(), stdout);
  return 0;
}

// cmd_follow follows the journal from attach to close, reading the book of
// every update (and every book after an overrun), and prints the copies it
// holds: they must equal what the writer left in the file.
int cmd_follow(const char* name) {
  fs::Reader r;
  if (Error e = r.open_wait(name, 60000000000, 100000); e != Error::Ok) return fail("open", e);
  fs::Follower f = r.follow();
  std::map<uint16_t, Held> held;
  auto rescan = [&]() -> Error {
    fs::Instrument in;
    for (uint32_t i = 0; r.instrument(i, in); i++) {
      if (in.retired) continue;
      Held& h = held[in.locate];
      if (h.has && h.view.version() == r.version(in.locate)) continue;
      Error e = read_into(r, in.locate, h);
      if (e != Error::Ok && e != Error::NoData) return e;
    }
    return Error::Ok;
  };
  if (Error e = rescan(); e != Error::Ok) return fail("read", e);
  std::printf("attached\n");
  std::fflush(stdout);
  fs::Update ups[256];
  uint64_t updates = 0, reads = 0;
  fs::WaitOptions opt;
  opt.check_every_ns = 1000000;
  for (;;) {
    size_t n = 0;
    Error e = f.wait(ups, 256, n, 1000000000, opt);
    for (size_t i = 0; i < n; i++) {
      updates++;
      Held& h = held[ups[i].locate];
      if (h.has && h.view.version() >= ups[i].version) continue;  // already read a newer copy
      Error re = read_into(r, ups[i].locate, h);
      if (re != Error::Ok) return fail("read", re);
      reads++;
      if (h.view.version() < ups[i].version) return fail("read older than journal", Error::Format);
    }
    if (e == Error::Overrun) {
      if (Error re = rescan(); re != Error::Ok) return fail("rescan", re);
      continue;
    }
    if (e == Error::Closed) break;
    if (e != Error::Ok) return fail("wait", e);
  }
  // No rescan here: the books printed are what the journal (and the
  // rescans after overruns) led the follower to read.
  std::printf("stats updates %" PRIu64 " reads %" PRIu64 " overruns %" PRIu64 " lost %" PRIu64 "\n", updates,
              reads, f.overruns(), f.lost());
  std::fputs(books_json(sorted_views(held)).c_str(), stdout);
  return 0;
}

// check_view recomputes the k-th snapshot of a locate the way the Go test
// writer's fillSnapshot makes it (every field from locate and seq) and
// reports the first field that differs: a torn copy cannot pass.
bool check_view(const fs::View& v, uint32_t depth, std::string& why) {
  const bookfb::Snapshot* s = v.snapshot();
  uint64_t k = s->seq();
  uint16_t loc = s->locate();
  uint64_t nb = k % (depth + 1), na = (k / 3) % (depth + 1);
  char sym[16];
  std::snprintf(sym, sizeof sym, "S%u", unsigned(loc));
  auto bad = [&](const char* field) {
    why = std::string("locate ") + std::to_string(loc) + " seq " + std::to_string(k) + ": " + field;
    return false;
  };
  if (v.symbol() != sym) return bad("symbol");
  if (s->exchange_time() != k * 3 + loc) return bad("exchange time");
  if (s->receive_time() != int64_t(k * 5)) return bad("receive time");
  if (s->publish_time() == 0) return bad("publish time");
  if (s->trading_state() != bookfb::TradingState(k % 5)) return bad("state");
  if (uint16_t(s->flags()) != (k & 0xF)) return bad("flags");
  if (s->system_event() != uint8_t('A' + k % 26)) return bad("system event");
  if (v.bid_count() != nb || v.ask_count() != na) return bad("level counts");
  if (s->bid_levels() != uint32_t(nb + k % 7) || s->ask_levels() != uint32_t(na + k % 11)) return bad("book levels");
  if (s->last_trade_price() != (uint32_t(k) ^ uint32_t(loc))) return bad("last trade price");
  if (s->last_trade_shares() != k * 17) return bad("last trade shares");
  if (s->volume() != k * 19) return bad("volume");
  if (s->messages() != k + loc) return bad("messages");
  fs::Level l;
  for (uint32_t i = 0; i < nb; i++) {
    v.bid(i, l);
    if (l.price != uint32_t(k) + 1000 - i || l.shares != k * 7 + i || l.orders != i + uint32_t(loc)) return bad("bid");
  }
  for (uint32_t i = 0; i < na; i++) {
    v.ask(i, l);
    if (l.price != uint32_t(k) + 2000 + i || l.shares != k * 13 + i || l.orders != (i ^ uint32_t(k))) return bad("ask");
  }
  return true;
}

// cmd_torn is the C++ twin of the Go readerProcess: random reads and journal
// follows against a writer publishing at full speed, until it closes. A
// test of torn copies, not of liveness: the Go test gives a stale limit
// beyond any stall of a live writer on a loaded machine, and a read that
// met a slot held odd for over a second (Busy: a live writer stalled
// inside a publish) is not an error.
int cmd_torn(const char* name, bool slow, int64_t stale_ns) {
  fs::Reader r;
  fs::OpenOptions oo;
  oo.stale_after_ns = stale_ns;
  if (Error e = r.open_wait(name, 10000000000, 1000000, oo); e != Error::Ok) return fail("open", e);
  const uint32_t depth = r.info().depth;
  const uint32_t count = r.info().instruments;
  fs::Follower f = r.follow();
  std::vector<uint64_t> last(65536);
  uint64_t reads = 0, updates = 0, busy = 0;
  std::mt19937_64 rng{uint64_t(getpid())};
  std::string why;
  auto check = [&](uint16_t loc) -> bool {
    fs::View v;
    Error e = r.read(loc, g_buf, kBufSize, v);
    if (e == Error::NoData || e == Error::UnknownLocate) return true;
    if (e == Error::Busy) {
      busy++;
      return true;
    }
    if (e != Error::Ok) {
      why = std::string("read: ") + fs::error_name(e);
      return false;
    }
    reads++;
    if (!check_view(v, depth, why)) {
      why = "torn snapshot: " + why;
      return false;
    }
    if (v->locate() != loc) {
      why = "read locate " + std::to_string(loc) + " returned " + std::to_string(v->locate());
      return false;
    }
    // The torn test's writer never rebinds: a locate's version only grows.
    // (A rebind restarts it from 1; a reader following rebinds compares
    // with != and checks the symbol, as examples/microprice.cpp does.)
    if (v.version() < last[loc]) {
      why = "locate " + std::to_string(loc) + " went back in version";
      return false;
    }
    last[loc] = v.version();
    return true;
  };
  // A second thread reads random instruments through the same Reader until
  // the feed closes (a Reader's const calls are thread-safe; under
  // -fsanitize=thread this checks it).
  std::atomic<bool> done{false};
  std::string thread_error;
  uint64_t thread_reads = 0;
  std::thread other([&] {
    std::vector<uint64_t> mem(kBufSize / 8 / 16);
    std::vector<uint64_t> seen(65536);
    std::mt19937_64 trng{uint64_t(getpid()) + 1};
    std::string twhy;
    while (!done.load(std::memory_order_relaxed)) {
      uint16_t loc = uint16_t(trng() % count);
      fs::View v;
      Error e = r.read(loc, mem.data(), mem.size() * 8, v);
      if (e == Error::NoData || e == Error::UnknownLocate || e == Error::Busy) continue;
      if (e != Error::Ok) {
        thread_error = std::string("thread read: ") + fs::error_name(e);
        return;
      }
      thread_reads++;
      // No rebinds in this test: a version going back is a torn read.
      if (!check_view(v, depth, twhy) || v->locate() != loc || v.version() < seen[loc]) {
        thread_error = "thread: torn snapshot: " + twhy;
        return;
      }
      seen[loc] = v.version();
    }
  });
  struct Joiner {
    std::atomic<bool>& done;
    std::thread& t;
    ~Joiner() {
      done = true;
      if (t.joinable()) t.join();
    }
  } joiner{done, other};
  fs::Update ups[64];
  fs::WaitOptions opt;
  opt.spin = 10;
  opt.check_every_ns = 1000000;
  int64_t deadline = fs::detail::monotonic_ns() + 60000000000;
  for (uint64_t iter = 0; fs::detail::monotonic_ns() < deadline; iter++) {
    if (!check(uint16_t(rng() % count))) {
      std::printf("error %s\n", why.c_str());
      return 1;
    }
    if (slow && iter % 2 == 0) {
      while (f.pending() <= r.info().journal_len && r.check() == Error::Ok) fs::detail::sleep_ns(100000);
    }
    size_t n = 0;
    Error e = f.wait(ups, 64, n, 1000000, opt);
    if (e == Error::Closed) {
      for (uint32_t loc = 0; loc < count; loc++) {
        if (!check(uint16_t(loc))) {
          std::printf("error %s\n", why.c_str());
          return 1;
        }
      }
      done = true;
      other.join();
      if (!thread_error.empty()) {
        std::printf("error %s\n", thread_error.c_str());
        return 1;
      }
      std::printf("stats reads %" PRIu64 " updates %" PRIu64 " overruns %" PRIu64 " lost %" PRIu64
                  " thread-reads %" PRIu64 " busy %" PRIu64 "\n",
                  reads, updates, f.overruns(), f.lost(), thread_reads, busy);
      return 0;
    }
    if (e != Error::Ok && e != Error::Overrun) return fail("wait", e);
    for (size_t i = 0; i < n; i++) {
      updates++;
      uint64_t busy0 = busy;
      if (!check(ups[i].locate)) {
        std::printf("error %s\n", why.c_str());
        return 1;
      }
      if (busy == busy0 && last[ups[i].locate] < ups[i].version) {
        std::printf("error locate %u: read version %" PRIu64 " after journal version %" PRIu64 "\n",
                    unsigned(ups[i].locate), last[ups[i].locate], ups[i].version);
        return 1;
      }
    }
  }
  std::printf("error writer did not close the feed within 60s\n");
  return 1;
}

// scribble fills the stack below its caller with 0xAB, so that a value a
// later call leaves uninitialized reads as 0xABAB..., not as a lucky 0.
__attribute__((noinline)) void scribble() {
  volatile unsigned char b[4096];
  for (size_t i = 0; i < sizeof b; i++) b[i] = 0xAB;
}

// follow_into makes f a follower of r in a frame of its own, on the stack
// scribble left.
__attribute__((noinline)) void follow_into(fs::Follower& f, const fs::Reader& r) { f = r.follow(); }

// cmd_session runs commands from stdin against one Reader, for the
// lifecycle and journal tests.
int cmd_session(const char* name) {
  fs::Reader r;
  fs::Follower f;
  char line[256];
  fs::Update ups[1024];
  while (std::fgets(line, sizeof line, stdin) != nullptr) {
    char cmd[32] = {};
    long arg = 0;
    int got = std::sscanf(line, "%31s %ld", cmd, &arg);
    if (got < 1) continue;
    std::string c = cmd;
    if (c == "open") {
      Error e = r.open(name);
      std::printf("open %s", fs::error_name(e));
      if (e == Error::LayoutVersion) std::printf(" found %u want %u", r.found_layout_version(), fs::kLayoutVersion);
      if (e == Error::Ok) std::printf(" pid %d generation %" PRIu64, r.info().writer_pid, r.info().generation);
      std::printf("\n");
    } else if (c == "info") {  // info: every field of info()
      const fs::Info& in = r.info();
      std::printf("info version %u generation %" PRIu64 " start %" PRId64 " pid %d", in.layout_version,
                  in.generation, in.start_time_ns, in.writer_pid);
      std::printf(" instruments %u depth %u journal %u slot %u max %u every %" PRId64 "\n", in.instruments,
                  in.depth, in.journal_len, in.slot_size, in.max_snapshot, in.heartbeat_interval_ns);
    } else if (c == "opencut") {  // opencut: open, the file truncated to 0 right after open's mmap (mapped)
      g_cut_mapped = true;
      Error e = r.open(name);
      g_cut_mapped = false;
      std::printf("opencut %s\n", fs::error_name(e));
    } else if (c == "check") {
      std::printf("check %s\n", fs::error_name(r.check()));
    } else if (c == "checktext" || c == "opentext" || c == "openwait") {
      // checktext, opentext: check or open, and error_text of its error;
      // openwait MS: open_wait for MS milliseconds, and its error_text.
      Error e = c == "checktext" ? r.check()
                : c == "opentext" ? r.open(name)
                                  : r.open_wait(name, int64_t(arg) * 1000000, 1000000);
      char text[512];
      std::printf("%s %s %s\n", cmd, fs::error_name(e), r.error_text(e, text, sizeof text));
    } else if (c == "stall") {  // stall S: the next realtime reading comes S seconds on, the writer having beaten
      g_stall_path = r.path();
      g_stall_ns = int64_t(arg) * 1000000000;
      std::printf("stall Ok\n");
    } else if (c == "skew") {  // skew S: both clocks S seconds on
      g_clock_off += int64_t(arg) * 1000000000;
      std::printf("skew Ok\n");
    } else if (c == "read") {
      fs::View v;
      Error e = r.read(uint16_t(arg), g_buf, kBufSize, v);
      if (e == Error::Ok) {
        std::printf("read Ok seq %" PRIu64 " version %" PRIu64 "\n", v->seq(), v.version());
      } else {
        std::printf("read %s\n", fs::error_name(e));
      }
    } else if (c == "readsymbol") {  // readsymbol SYM: read_symbol, stopped after its lookup (looked_up)
      char sym[32] = {};
      std::sscanf(line, "%*s %31s", sym);
      g_stop_lookup = true;
      fs::View v;
      Error e = r.read_symbol(sym, g_buf, kBufSize, v);
      g_stop_lookup = false;
      if (e == Error::Ok) {
        std::printf("readsymbol Ok %.*s locate %u seq %" PRIu64 "\n", int(v.symbol().size()), v.symbol().data(),
                    unsigned(v->locate()), v->seq());
      } else {
        std::printf("readsymbol %s\n", fs::error_name(e));
      }
    } else if (c == "lookup") {
      char sym[32] = {};
      std::sscanf(line, "%*s %31s", sym);
      uint16_t loc = 0;
      bool ok = r.lookup(sym, loc);
      std::printf("lookup %s %u\n", ok ? "Ok" : "ErrUnknownLocate", unsigned(loc));
    } else if (c == "version") {
      std::printf("version %" PRIu64 "\n", r.version(uint16_t(arg)));
    } else if (c == "follow") {
      scribble();
      follow_into(f, r);
      std::printf("follow Ok pending %" PRIu64 "\n", f.pending());
    } else if (c == "poll" || c == "wait") {
      size_t n = 0;
      fs::WaitOptions opt;
      opt.check_every_ns = 1;
      Error e = c == "poll" ? f.poll(ups, 1024, n) : f.wait(ups, 1024, n, arg * 1000000, opt);
      std::printf("%s %s n %zu", cmd, fs::error_name(e), n);
      for (size_t i = 0; i < n; i++) std::printf(" %u:%" PRIu64, unsigned(ups[i].locate), ups[i].version);
      std::printf("\n");
    } else if (c == "pollupto") {
      // pollupto N: poll up to N times while each poll returns nothing and
      // no error, as a strategy's loop of polls does.
      size_t n = 0;
      long polls = 0;
      Error e;
      do {
        polls++;
        e = f.poll(ups, 1024, n);
      } while (e == Error::Ok && n == 0 && polls < arg);
      std::printf("pollupto %s n %zu polls %ld\n", fs::error_name(e), n, polls);
    } else if (c == "pollmany") {
      // pollmany N: poll N times, whatever each returns; "looks" counts
      // the liveness tests the polls ran (their readings of the realtime
      // clock), the error and n are the last poll's.
      int64_t reads0 = g_realtime_reads;
      size_t n = 0;
      Error e = Error::Ok;
      for (long i = 0; i < arg; i++) e = f.poll(ups, 1024, n);
      std::printf("pollmany %s n %zu looks %" PRId64 "\n", fs::error_name(e), n, int64_t(g_realtime_reads) - reads0);
    } else if (c == "pollfor") {
      // pollfor MS: poll for MS ms, or until a poll returns records or an
      // error: 1024 polls as fast as it can, then 1024 with 100 us sleeps
      // between them, and so on; "looks" counts the polls' looks at the
      // heartbeat (its readings of the realtime clock).
      int64_t deadline = fs::detail::monotonic_ns() + arg * 1000000;
      int64_t reads0 = g_realtime_reads;
      size_t n = 0;
      Error e;
      for (long i = 0;; i++) {
        e = f.poll(ups, 1024, n);
        if (e != Error::Ok || n > 0 || fs::detail::monotonic_ns() >= deadline) break;
        if (i % 2048 >= 1024) fs::detail::sleep_ns(100000);
      }
      std::printf("pollfor %s n %zu looks %" PRId64 "\n", fs::error_name(e), n, int64_t(g_realtime_reads) - reads0);
    } else if (c == "waitcap") {
      // waitcap CAP MS: wait(MS) into a buffer of CAP records (CAP 0: none).
      long ms = 0;
      std::sscanf(line, "%*s %*d %ld", &ms);
      size_t n = 0;
      Error e = f.wait(arg == 0 ? nullptr : ups, size_t(arg), n, ms * 1000000);
      std::printf("waitcap %s n %zu\n", fs::error_name(e), n);
    } else if (c == "waitloop") {
      // waitloop MS FOR_MS CHECK_MS: wait(MS) with check_every CHECK_MS
      // (0: the default) again and again, as a caller's loop of short
      // waits does, until a wait returns records or an error, or FOR_MS
      // passed (at least one call). The check clock is the follower's.
      long for_ms = 0, check_ms = 0;
      std::sscanf(line, "%*s %*d %ld %ld", &for_ms, &check_ms);
      fs::WaitOptions opt;
      opt.check_every_ns = check_ms * 1000000;
      int64_t t0 = fs::detail::monotonic_ns(), deadline = t0 + for_ms * 1000000;
      size_t n = 0;
      long calls = 0;
      Error e;
      do {
        calls++;
        e = f.wait(ups, 1024, n, arg * 1000000, opt);
      } while (e == Error::Ok && n == 0 && fs::detail::monotonic_ns() < deadline);
      std::printf("waitloop %s n %zu calls %ld ms %" PRId64 "\n", fs::error_name(e), n, calls,
                  (fs::detail::monotonic_ns() - t0) / 1000000);
    } else if (c == "chdir") {
      // chdir DIR: change the working directory, as a strategy may after open.
      char dir[256] = {};
      std::sscanf(line, "%*s %255s", dir);
      std::printf("chdir %s\n", ::chdir(dir) == 0 ? "Ok" : std::strerror(errno));
    } else if (c == "path") {
      std::printf("path %s\n", r.path());
    } else if (c == "stats") {
      std::printf("stats overruns %" PRIu64 " lost %" PRIu64 " pending %" PRIu64 "\n", f.overruns(), f.lost(),
                  f.pending());
    } else if (c == "close") {
      r.close();
      std::printf("close Ok\n");
    } else if (c == "guard") {
      std::printf("guard %s\n", fs::error_name(fs::install_truncation_guard()));
    } else if (c == "ignorebus") {
      // ignorebus [siginfo]: SIGBUS ignored (SIG_IGN), with SA_SIGINFO in
      // the flags when asked, as an application may have it before the
      // guard is installed.
      char flag[16] = {};
      std::sscanf(line, "%*s %15s", flag);
      struct sigaction sa;
      std::memset(&sa, 0, sizeof sa);
      sa.sa_handler = SIG_IGN;
      if (std::strcmp(flag, "siginfo") == 0) sa.sa_flags = SA_SIGINFO;
      sigemptyset(&sa.sa_mask);
      std::printf("ignorebus %s\n", sigaction(SIGBUS, &sa, nullptr) == 0 ? "Ok" : std::strerror(errno));
    } else if (c == "sendbus") {
      // sendbus: a SIGBUS sent to the process (kill), not a fault.
      std::fflush(stdout);
      if (kill(getpid(), SIGBUS) != 0) {
        std::printf("sendbus %s\n", std::strerror(errno));
      } else {
        std::printf("sendbus survived\n");
      }
    } else if (c == "faultother") {
      // faultother PATH: a SIGBUS that is not the guard's: map a page of a
      // new file PATH, cut the file to 0 and read the page.
      char path[256] = {};
      std::sscanf(line, "%*s %255s", path);
      int fd = ::open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
      if (fd < 0 || ftruncate(fd, 4096) != 0) {
        std::printf("faultother %s\n", std::strerror(errno));
      } else {
        void* m = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED || ftruncate(fd, 0) != 0) {
          std::printf("faultother %s\n", std::strerror(errno));
        } else {
          std::fflush(stdout);
          std::printf("faultother survived %d\n", int(*static_cast<volatile const unsigned char*>(m)));
        }
      }
    } else {
      std::printf("error unknown command %s\n", cmd);
    }
    std::fflush(stdout);
  }
  return 0;
}

// cmd_bench_read times n consistent reads of locate 1 in batches and prints
// the median and minimum per-read time of the batches.
int cmd_bench_read(const char* name, long n) {
  fs::Reader r;
  if (Error e = r.open(name); e != Error::Ok) return fail("open", e);
  const long batch = 10000;
  std::vector<double> per;
  uint64_t sum = 0;
  for (long done = 0; done < n || per.empty(); done += batch) {
    int64_t t0 = fs::detail::monotonic_ns();
    for (long i = 0; i < batch; i++) {
      fs::View v;
      Error e = r.read(1, g_buf, kBufSize, v);
      if (e != Error::Ok) return fail("read", e);
      sum += v->seq();
    }
    per.push_back(double(fs::detail::monotonic_ns() - t0) / batch);
  }
  std::sort(per.begin(), per.end());
  std::printf("read median-ns %.2f min-ns %.2f batches %zu sum %" PRIu64 "\n", per[per.size() / 2], per[0],
              per.size(), sum);
  return 0;
}

// cmd_latency follows the journal spinning and measures, per update, the
// time from the writer's publish timestamp to the consistent copy in hand.
int cmd_latency(const char* name) {
  fs::Reader r;
  if (Error e = r.open_wait(name, 10000000000, 1000000); e != Error::Ok) return fail("open", e);
  fs::Follower f = r.follow();
  std::printf("ready\n");
  std::fflush(stdout);
  std::vector<int64_t> lat;
  lat.reserve(1 << 20);
  fs::Update ups[16];
  fs::WaitOptions opt;
  opt.spin = 1 << 30;
  for (;;) {
    size_t n = 0;
    Error e = f.wait(ups, 16, n, 1000000000, opt);
    if (e == Error::Closed) break;
    if (e != Error::Ok && e != Error::Overrun) return fail("wait", e);
    for (size_t i = 0; i < n; i++) {
      fs::View v;
      if (Error re = r.read(ups[i].locate, g_buf, kBufSize, v); re != Error::Ok) return fail("read", re);
      if (v.version() == ups[i].version && lat.size() < lat.capacity()) {
        lat.push_back(fs::detail::realtime_ns() - v->publish_time());
      }
    }
  }
  if (lat.empty()) {
    std::printf("error no samples\n");
    return 1;
  }
  std::sort(lat.begin(), lat.end());
  std::printf("latency n %zu p50 %" PRId64 " p99 %" PRId64 " max %" PRId64 "\n", lat.size(), lat[lat.size() / 2],
              lat[lat.size() * 99 / 100], lat.back());
  return 0;
}

// cmd_noalloc calls every reader operation (open, lookup, read, version,
// check, instrument, follow, poll, wait, close) and prints how many
// operator new calls they made.
int cmd_noalloc(const char* name) {
  uint64_t before = g_allocs.load();
  uint64_t sink = 0;
  for (int round = 0; round < 100; round++) {
    fs::Reader r;
    if (Error e = r.open(name); e != Error::Ok) return fail("open", e);
    uint16_t loc = 0;
    if (!r.lookup("S1", loc)) return fail("lookup", Error::UnknownLocate);
    fs::Instrument in;
    r.instrument(0, in);
    fs::View v;
    if (Error e = r.read(loc, g_buf, kBufSize, v); e != Error::Ok) return fail("read", e);
    if (Error e = r.read_symbol("S1", g_buf, kBufSize, v); e != Error::Ok) return fail("read_symbol", e);
    fs::Level l;
    v.bid(0, l);
    sink += v->seq() + l.price + r.version(loc) + uint64_t(r.check()) + in.locate + v.symbol().size();
    fs::Follower f = r.follow();
    fs::Update ups[4];
    size_t n = 0;
    f.poll(ups, 4, n);
    fs::WaitOptions opt;
    opt.spin = 1;
    opt.check_every_ns = 1;
    f.wait(ups, 4, n, 100000, opt);
    sink += n + f.pending();
    r.close();
  }
  uint64_t allocs = g_allocs.load() - before;
  // The counter itself must see an allocation, or the check proves nothing.
  uint64_t probe = g_allocs.load();
  std::vector<uint64_t>* heap = new std::vector<uint64_t>(16, sink);
  sink += heap->back();
  delete heap;
  if (g_allocs.load() - probe < 2) {
    std::printf("error operator new is not counted\n");
    return 1;
  }
  std::printf("allocs %" PRIu64 " sink %" PRIu64 "\n", allocs, sink);
  return 0;
}

}  // namespace

// cmd_retired_race loads directory entry 0's flags byte (instrument,
// lookup) in this thread while another stores it atomically, as the writer
// retires an entry, so that ThreadSanitizer can see how the reader loads
// it: the Reader's read-only mapping is replaced at the same address with a
// writable mapping of the same file (the writer is another process, whose
// stores TSan cannot see). A plain load is a data race (TSan exits 66).
int cmd_retired_race(const char* name) {
  fs::Reader r;
  if (Error e = r.open(name); e != Error::Ok) return fail("open", e);
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (maps == nullptr) return 1;
  char line[4096];
  unsigned long lo = 0, hi = 0;
  size_t plen = std::strlen(r.path());
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    size_t n = std::strlen(line);
    if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
    if (n >= plen && std::strcmp(line + n - plen, r.path()) == 0 && std::sscanf(line, "%lx-%lx", &lo, &hi) == 2) break;
    lo = hi = 0;
  }
  std::fclose(maps);
  int fd = ::open(r.path(), O_RDWR | O_CLOEXEC);
  if (lo == 0 || fd < 0 ||
      mmap(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    std::printf("error remap %s: %s\n", r.path(), std::strerror(errno));
    return 1;
  }
  uint8_t* base = reinterpret_cast<uint8_t*>(lo);
  uint8_t* flags = base + fs::detail::le64(base + fs::detail::kOffDirectory) + fs::detail::kDirFlags;
  std::thread writer([flags] {
    for (int i = 0; i < 1000; i++) __atomic_store_n(flags, uint8_t(i & 1), __ATOMIC_RELEASE);
  });
  long retired = 0, found = 0;
  for (int i = 0; i < 1000; i++) {
    fs::Instrument in;
    uint16_t loc;
    if (r.instrument(0, in) && in.retired) retired++;
    if (r.lookup("AAPL", loc)) found++;
  }
  writer.join();
  __atomic_store_n(flags, uint8_t(0), __ATOMIC_RELEASE);
  ::close(fd);
  std::printf("retiredrace Ok retired %ld found %ld\n", retired, found);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: shm_driver json|follow|torn|session|bench-read|latency|noalloc NAME [ARG]\n");
    return 2;
  }
  std::string mode = argv[1];
  const char* name = argv[2];
  if (mode == "json") return cmd_json(name);
  if (mode == "follow") return cmd_follow(name);
  if (mode == "torn") {
    return cmd_torn(name, argc > 3 && std::string(argv[3]) == "slow", argc > 4 ? std::atoll(argv[4]) : 0);
  }
  if (mode == "session") return cmd_session(name);
  if (mode == "bench-read") return cmd_bench_read(name, argc > 3 ? std::atol(argv[3]) : 1000000);
  if (mode == "latency") return cmd_latency(name);
  if (mode == "noalloc") return cmd_noalloc(name);
  if (mode == "retiredrace") return cmd_retired_race(name);
  std::fprintf(stderr, "shm_driver: unknown mode %s\n", mode.c_str());
  return 2;
}
