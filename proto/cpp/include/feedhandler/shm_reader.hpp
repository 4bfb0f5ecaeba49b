// feedhandler shared-memory book reader, C++17, header only.
//
// Reads the feed files that feedhandler publishes under /dev/shm (layout
// version 1, docs/SHM.md): open or wait for a feed, look up a symbol, copy a
// consistent snapshot of a book into a caller buffer (seqlock), follow the
// change journal, and tell a live writer from a dead, closed or restarted
// one. It follows the same protocol, and reports the same conditions, as the
// Go reader in proto/shm.
//
// No exceptions and no allocation: every operation returns an Error code.
// Snapshots decode with the code flatc generates from proto/book.fbs
// (book_generated.h, namespace bookfb), against the flatbuffers 2.0.8 headers
// (Debian libflatbuffers-dev).
//
//   feedhandler::shm::Reader r;
//   if (auto e = r.open("itch"); e != feedhandler::shm::Error::Ok) { ... error_name(e) ... }
//   alignas(8) static unsigned char buf[1 << 16];          // >= r.info().max_snapshot
//   uint16_t loc;  r.lookup("AAPL", loc);
//   feedhandler::shm::View v;
//   r.read(loc, buf, sizeof buf, v);                        // consistent copy in buf
//   v->seq(); v.bid(0, level); v->publish_time();
//   auto f = r.follow();                                    // change journal from now on
//   feedhandler::shm::Update ups[256]; size_t n;
//   f.wait(ups, 256, n, 1'000'000'000);                     // Overrun: rescan; Closed, WriterDead, Restarted
//
// Threads: a Reader's const methods are safe to call from several threads
// (open/close are not). A Follower belongs to one thread.
#ifndef FEEDHANDLER_SHM_READER_HPP_
#define FEEDHANDLER_SHM_READER_HPP_

#if __cplusplus < 201703L
#error "feedhandler/shm_reader.hpp needs C++17 or later (-std=c++17)"
#endif

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "feedhandler/book_generated.h"

#if !defined(__GNUC__) && !defined(__clang__)
#error "feedhandler/shm_reader.hpp needs GCC or Clang (__atomic builtins)"
#endif
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "feedhandler/shm_reader.hpp: the feed file is little-endian; big-endian hosts are not supported"
#endif

// FEEDHANDLER_SHM_TEST_LOOKED_UP(symbol, locate) runs in read_symbol between
// its lookup and its read: the tests (proto/cpp/tests/shm_driver.cpp) define
// it before including this header, to rebind the locate there. Nothing by
// default.
#ifndef FEEDHANDLER_SHM_TEST_LOOKED_UP
#define FEEDHANDLER_SHM_TEST_LOOKED_UP(symbol, locate) ((void)0)
#endif
// FEEDHANDLER_SHM_TEST_MAPPED(path) runs in open between its mmap and its
// first load from the mapping: the tests truncate the file there. Nothing
// by default.
#ifndef FEEDHANDLER_SHM_TEST_MAPPED
#define FEEDHANDLER_SHM_TEST_MAPPED(path) ((void)0)
#endif

namespace feedhandler {
namespace shm {

// The layout version this reader understands (docs/SHM.md). A file of another
// version is Error::LayoutVersion.
constexpr uint32_t kLayoutVersion = 1;

// Error codes. Each condition the Go reader reports with a sentinel has its
// own code here; error_name gives the Go sentinel's name.
enum class Error : int {
  Ok = 0,
  NotExist,          // no feed file of that name (writer not started): retry, or open_wait
  PermissionDenied,  // the file exists but this user may not read it (EACCES)
  Format,            // not a feed file, truncated or inconsistent
  LayoutVersion,     // the file has another layout version (Reader::found_layout_version)
  WriterDead,        // the writer's heartbeat is stale, or two intervals old and its pid gone
  Restarted,         // a new writer replaced the file: close, open again, follow again
  Closed,            // the writer closed the feed; the last books stay readable
  Overrun,           // the follower fell more than a journal length behind: rescan
  UnknownLocate,     // locate or symbol not registered
  NoData,            // registered, nothing published yet
  ShortBuffer,       // read buffer smaller than Info::max_snapshot
  Misaligned,        // read buffer not 8-byte aligned (FlatBuffers structs need it)
  Busy,              // a live writer held the slot for over a second
  NotOpen,           // the Reader is not open
  System,            // another system call failure: Reader::sys_errno
};

// error_name returns the name of the Go sentinel for e ("ErrNotExist", ...).
inline const char* error_name(Error e) noexcept {
  switch (e) {
    case Error::Ok: return "Ok";
    case Error::NotExist: return "ErrNotExist";
    case Error::PermissionDenied: return "ErrPermission";
    case Error::Format: return "ErrFormat";
    case Error::LayoutVersion: return "ErrLayoutVersion";
    case Error::WriterDead: return "ErrWriterDead";
    case Error::Restarted: return "ErrRestarted";
    case Error::Closed: return "ErrClosed";
    case Error::Overrun: return "ErrOverrun";
    case Error::UnknownLocate: return "ErrUnknownLocate";
    case Error::NoData: return "ErrNoData";
    case Error::ShortBuffer: return "ErrShortBuffer";
    case Error::Misaligned: return "ErrMisaligned";
    case Error::Busy: return "ErrBusy";
    case Error::NotOpen: return "ErrNotOpen";
    case Error::System: return "ErrSystem";
  }
  return "ErrUnknown";
}

// error_message describes e in words (the Go sentinels' texts).
inline const char* error_message(Error e) noexcept {
  switch (e) {
    case Error::Ok: return "ok";
    case Error::NotExist: return "shm: feed does not exist";
    case Error::PermissionDenied: return "shm: permission denied";
    case Error::Format: return "shm: not a feed file";
    case Error::LayoutVersion: return "shm: layout version mismatch";
    case Error::WriterDead: return "shm: writer is dead";
    case Error::Restarted: return "shm: writer restarted";
    case Error::Closed: return "shm: writer closed the feed";
    case Error::Overrun: return "shm: journal overrun";
    case Error::UnknownLocate: return "shm: unknown locate";
    case Error::NoData: return "shm: no snapshot published yet";
    case Error::ShortBuffer: return "shm: buffer too small";
    case Error::Misaligned: return "shm: buffer not 8-byte aligned";
    case Error::Busy: return "shm: slot busy";
    case Error::NotOpen: return "shm: reader not open";
    case Error::System: return "shm: system call failed";
  }
  return "shm: unknown error";
}

// Info describes a feed file (its static header).
struct Info {
  uint32_t layout_version = 0;
  uint64_t generation = 0;       // random, new for every file a writer creates
  int64_t start_time_ns = 0;     // writer start, Unix ns
  int32_t writer_pid = 0;
  uint32_t instruments = 0;      // slot capacity
  uint32_t depth = 0;            // levels per side
  uint32_t journal_len = 0;      // records, a power of two
  uint32_t slot_size = 0;
  uint32_t max_snapshot = 0;     // bytes a read buffer needs
  int64_t heartbeat_interval_ns = 0;
};

// Instrument is a registered instrument (a directory entry).
struct Instrument {
  uint16_t locate = 0;
  uint8_t symbol_len = 0;
  char symbol_buf[9] = {};
  // retired: the locate was bound to another symbol since (a session
  // change), or the symbol moved to another locate; the entry keeps the old
  // book's last snapshot in its slot, and reading the locate reads its
  // current symbol's book (or fails with UnknownLocate if it has none).
  bool retired = false;
  std::string_view symbol() const noexcept { return std::string_view(symbol_buf, symbol_len); }
};

// Level is one price level, best first.
struct Level {
  uint32_t price = 0;   // ITCH price, 4 implied decimals
  uint64_t shares = 0;
  uint32_t orders = 0;
};

// Update is one change-journal record: locate was published at version.
struct Update {
  uint16_t locate = 0;
  uint64_t version = 0;
};

// View is a consistent snapshot in the caller's buffer, decoded with the
// generated accessors (v->seq(), v->bids(), ...), plus the slot version it
// was read at. It stays valid until the buffer is reused.
class View {
 public:
  const bookfb::Snapshot* snapshot() const noexcept { return snap_; }
  const bookfb::Snapshot* operator->() const noexcept { return snap_; }
  uint64_t version() const noexcept { return version_; }
  const uint8_t* data() const noexcept { return data_; }  // the FlatBuffer
  size_t size() const noexcept { return size_; }
  uint32_t bid_count() const noexcept { return snap_ ? snap_->bids()->size() : 0; }
  uint32_t ask_count() const noexcept { return snap_ ? snap_->asks()->size() : 0; }
  // bid copies bid level i (0 is best); false past the last level.
  bool bid(uint32_t i, Level& out) const noexcept { return level(snap_ ? snap_->bids() : nullptr, i, out); }
  bool ask(uint32_t i, Level& out) const noexcept { return level(snap_ ? snap_->asks() : nullptr, i, out); }
  std::string_view symbol() const noexcept { return snap_ ? snap_->symbol()->string_view() : std::string_view(); }

 private:
  friend class Reader;
  static bool level(const flatbuffers::Vector<const bookfb::Level*>* v, uint32_t i, Level& out) noexcept {
    if (v == nullptr || i >= v->size()) return false;
    const bookfb::Level* l = v->Get(i);
    out.price = l->price();
    out.orders = l->orders();
    out.shares = l->shares();
    return true;
  }
  const bookfb::Snapshot* snap_ = nullptr;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint64_t version_ = 0;
};

// OpenOptions tune a Reader.
struct OpenOptions {
  // How old the writer's heartbeat may get before check() reports
  // WriterDead. Zero: 10 heartbeat intervals, at least one second. (Two
  // intervals are enough when the writer's pid is gone as well.)
  int64_t stale_after_ns = 0;
};

// WaitOptions tune Follower::wait.
struct WaitOptions {
  int spin = 0;               // empty polls before yielding the CPU; 0: 1000
  int64_t sleep_ns = 0;       // sleep between polls once yielding found nothing; 0: 50 µs
  int64_t check_every_ns = 0; // how often a follower's waits check the writer; 0: 100 ms
};

class Follower;

namespace detail {

// Layout of version 1 (docs/SHM.md; proto/shm/layout.go, encode.go).
constexpr uint64_t kHeaderSize = 4096;
constexpr uint64_t kMaxLocates = 65536;
constexpr uint64_t kMaxDepth = 4096;
constexpr uint64_t kCacheLine = 64;
constexpr uint64_t kSlotHeader = 64;
constexpr uint64_t kRecordSize = 16;
constexpr uint64_t kDirEntrySize = 16;
// Directory entry: locate (le16), symbol length, flags, 4 reserved bytes,
// symbol (8 bytes, space padded). kDirRetired in the flags byte marks a
// retired entry: its locate was bound to another symbol since, or its
// symbol moved to another locate (docs/SHM.md).
constexpr size_t kDirFlags = 3;
constexpr uint8_t kDirRetired = 1;
constexpr uint64_t kVersionMask = (uint64_t(1) << 48) - 1;
constexpr uint64_t kStampBusy = ~uint64_t(0);
constexpr uint32_t kStateClosed = 1;
// The most empty polls between two of a poll's looks at the writer's
// liveness (docs/SHM.md, "A dead writer, in the poll"; Go maxLookEvery).
constexpr int64_t kMaxLookEvery = 1024;
// The largest heartbeat interval a header may promise (the Go writer's
// MaxHeartbeatInterval, an hour): a file that says more, or 0 or less, is
// not a feed file, and 10 intervals (the default stale limit) cannot
// overflow.
constexpr int64_t kMaxHeartbeatInterval = int64_t(3600) * 1000000000;

constexpr size_t kOffMagic = 0, kOffLayoutVersion = 8, kOffHeaderSize = 12, kOffGeneration = 16,
                 kOffStartTime = 24, kOffWriterPid = 32, kOffSlotSize = 36, kOffCapacity = 40,
                 kOffDepth = 44, kOffJournalLen = 48, kOffHeartbeatEvery = 56, kOffIndex = 64,
                 kOffDirectory = 72, kOffJournal = 80, kOffSlots = 88, kOffFileSize = 96,
                 kOffMaxSnapshot = 108, kOffTrailer = 112, kOffHeartbeat = 256, kOffState = 264, kOffHead = 384,
                 kOffCount = 512;

constexpr unsigned char kMagic[8] = {'F', 'H', 'B', 'O', 'O', 'K', 'S', 0};

// The fixed FlatBuffer layout of a slot (layout version 1).
constexpr size_t kVtableAt = 8, kVtableLen = 2 * 2 + 17 * 2, kTableAt = 48, kTableLen = 92,
                 kSymbolAt = kTableAt + kTableLen, kLevelSize = 16, kFieldSymbol = 4, kFieldBids = 64,
                 kFieldAsks = 68;
// Table offsets of the 17 fields in schema (id) order.
constexpr uint16_t kFieldOffsets[17] = {84, 4, 8, 16, 24, 32, 88, 86, 64, 68, 72, 76, 80, 40, 48, 56, 89};

constexpr size_t bids_at(size_t sym_len) {
  size_t end = kSymbolAt + 4 + sym_len + 1;
  return end + (12 - end % 8) % 8;  // first offset >= end with offset % 8 == 4
}
constexpr uint64_t max_snapshot_size(uint64_t depth) {
  return bids_at(8) + 4 + depth * kLevelSize + 4 + 4 + depth * kLevelSize;
}

inline uint16_t le16(const uint8_t* p) noexcept { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t le32(const uint8_t* p) noexcept { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t le64(const uint8_t* p) noexcept { uint64_t v; std::memcpy(&v, p, 8); return v; }

// valid_snapshot reports whether b[0:n] is a FlatBuffer laid out as layout
// version 1 writes it, with at most depth levels per side: everything the
// generated accessors touch lies inside it (the Go reader's validSnapshot).
inline bool valid_snapshot(const uint8_t* b, size_t n, uint64_t depth) noexcept {
  if (n < kSymbolAt + 4) return false;
  if (le32(b) != kTableAt || std::memcmp(b + 4, "FHB1", 4) != 0) return false;
  if (le16(b + kVtableAt) != kVtableLen || le16(b + kVtableAt + 2) != kTableLen) return false;
  for (size_t i = 0; i < 17; i++) {
    if (le16(b + kVtableAt + 4 + 2 * i) != kFieldOffsets[i]) return false;
  }
  if (le16(b + kVtableAt + kVtableLen) != 0) return false;  // padding up to the table
  if (le32(b + kTableAt) != kTableAt - kVtableAt) return false;
  if (le32(b + kTableAt + kFieldSymbol) != kSymbolAt - (kTableAt + kFieldSymbol)) return false;
  size_t sym_len = le32(b + kSymbolAt);
  if (sym_len > 8) return false;
  size_t bids = bids_at(sym_len);
  if (le32(b + kTableAt + kFieldBids) != bids - (kTableAt + kFieldBids) || bids + 4 > n) return false;
  uint64_t nb = le32(b + bids);
  if (nb > depth) return false;
  size_t asks = bids + 4 + nb * kLevelSize + 4;
  if (le32(b + kTableAt + kFieldAsks) != asks - (kTableAt + kFieldAsks) || asks + 4 > n) return false;
  uint64_t na = le32(b + asks);
  return na <= depth && asks + 4 + na * kLevelSize <= n;
}

// clean_path makes the absolute path p lexically clean in place, as Go's
// filepath.Clean does (the Go writer and readers, and Python's normpath,
// name files so): no empty or "." element, a ".." removes the element
// before it (at the root it goes), no trailing slash. So "x/../feed" is
// "feed" whether x exists or not, and "feed/" is "feed".
inline void clean_path(char* p) noexcept {
  const size_t n = std::strlen(p);
  size_t r = 1, w = 1;  // p[0] is '/', kept
  while (r < n) {
    if (p[r] == '/') {
      r++;
    } else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
      r++;
    } else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
      r += 2;
      if (w > 1) {  // back to the slash before the last element
        w--;
        while (w > 1 && p[w] != '/') w--;
      }
    } else {
      if (w != 1) p[w++] = '/';
      while (r < n && p[r] != '/') p[w++] = p[r++];
    }
  }
  p[w] = 0;
}

inline int64_t clock_ns(clockid_t c) noexcept {
  struct timespec ts;
  clock_gettime(c, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
inline int64_t realtime_ns() noexcept { return clock_ns(CLOCK_REALTIME); }
inline int64_t monotonic_ns() noexcept { return clock_ns(CLOCK_MONOTONIC); }
// sub_sat is a - b, saturated to the int64 range: a heartbeat is whatever
// the file holds, and a corrupt one (say INT64_MIN) must make an age that
// is merely huge, not signed overflow (undefined behaviour).
inline int64_t sub_sat(int64_t a, int64_t b) noexcept {
  int64_t d;
  if (__builtin_sub_overflow(a, b, &d)) return b < 0 ? INT64_MAX : INT64_MIN;
  return d;
}
// add_sat is a + b, saturated to the int64 range (a deadline of "now +
// INT64_MAX" is the end of time, not a wrap into the past).
inline int64_t add_sat(int64_t a, int64_t b) noexcept {
  int64_t d;
  if (__builtin_add_overflow(a, b, &d)) return b < 0 ? INT64_MIN : INT64_MAX;
  return d;
}
// put_duration writes ns at p (n bytes) as Go prints a duration rounded to
// the millisecond below a minute ("203ms", "1.5s", "2s"; "0s"), in seconds
// above it; returns what snprintf does.
inline int put_duration(char* p, size_t n, int64_t ns) noexcept {
  long long ms = (long long)(ns / 1000000 + (ns % 1000000 >= 500000 ? 1 : 0));
  if (ms == 0) return std::snprintf(p, n, "0s");
  if (ms < 1000 && ms > -1000) return std::snprintf(p, n, "%lldms", ms);
  long long frac = (ms < 0 ? -ms : ms) % 1000;
  if (frac == 0) return std::snprintf(p, n, "%llds", ms / 1000);
  int digits = frac % 100 == 0 ? 1 : frac % 10 == 0 ? 2 : 3;
  long long shown = digits == 1 ? frac / 100 : digits == 2 ? frac / 10 : frac;
  return std::snprintf(p, n, "%s%lld.%0*llds", ms < 0 ? "-" : "", (ms < 0 ? -ms : ms) / 1000, digits, shown);
}
inline void sleep_ns(int64_t ns) noexcept {
  struct timespec ts = {time_t(ns / 1000000000), long(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// The truncation guard (install_truncation_guard): every Reader registers
// its mapping here at open, whether or not the guard is installed, and
// unregisters it at close. The SIGBUS handler looks a fault's address up
// here. Lock-free: the handler may run at any moment in any thread.
struct GuardEntry {
  std::atomic<int> claimed{0};
  std::atomic<uintptr_t> base{0};  // 0: not in use (published last, cleared first)
  std::atomic<size_t> size{0};
  std::atomic<int> faulted{0};     // the handler replaced the mapping with zero pages
};
constexpr int kGuardEntries = 256;
inline GuardEntry g_guard[kGuardEntries];
inline std::atomic<int> g_guard_state{0};  // 0 not installed, 1 installing, 2 installed
inline struct sigaction g_guard_old;       // the SIGBUS disposition before the guard's

// guard_register records a mapping; the entry's index, or -1 when every
// entry is taken (that Reader is not guarded).
inline int guard_register(const void* base, size_t size) noexcept {
  for (int i = 0; i < kGuardEntries; i++) {
    int free = 0;
    if (g_guard[i].claimed.compare_exchange_strong(free, 1, std::memory_order_acq_rel)) {
      g_guard[i].faulted.store(0, std::memory_order_relaxed);
      g_guard[i].size.store(size, std::memory_order_relaxed);
      g_guard[i].base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
      return i;
    }
  }
  return -1;
}

inline void guard_unregister(int i) noexcept {
  if (i < 0) return;
  g_guard[i].base.store(0, std::memory_order_release);
  g_guard[i].claimed.store(0, std::memory_order_release);
}

inline bool guard_faulted(int i) noexcept {
  return i >= 0 && g_guard[i].faulted.load(std::memory_order_relaxed) != 0;
}

// guard_handler is the SIGBUS handler of install_truncation_guard. A fault
// the kernel raised (si_code > 0) at an address inside a registered mapping
// (the file was truncated under it) replaces that whole mapping with
// read-only zero pages, marks it faulted and returns: the faulting load runs
// again and reads 0. Anything else goes to the disposition that was there
// before: its handler, or the default action (the fault repeats and kills
// the process, as it would have without the guard).
inline void guard_handler(int sig, siginfo_t* si, void* ctx) noexcept {
  if (si != nullptr && si->si_code > 0) {
    uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
    for (int i = 0; i < kGuardEntries; i++) {
      uintptr_t b = g_guard[i].base.load(std::memory_order_acquire);
      if (b == 0 || a < b || a - b >= g_guard[i].size.load(std::memory_order_relaxed)) continue;
      int saved = errno;
      long m = syscall(SYS_mmap, reinterpret_cast<void*>(b), g_guard[i].size.load(std::memory_order_relaxed),
                       PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      errno = saved;
      if (m != -1) {
        g_guard[i].faulted.store(1, std::memory_order_relaxed);
        return;
      }
      break;
    }
  }
  // sa_handler and sa_sigaction share their storage: SIG_DFL and SIG_IGN
  // are values of either, whatever the flags say.
  const struct sigaction& o = g_guard_old;
  bool sent = si == nullptr || si->si_code <= 0;
  if (o.sa_handler == SIG_IGN) {
    // Ignored before the guard: a sent SIGBUS stays ignored; a fault could
    // not be ignored (the kernel takes the default action), so it is not.
    if (sent) return;
  } else if (o.sa_handler != SIG_DFL) {
    if ((o.sa_flags & SA_SIGINFO) != 0) {
      o.sa_sigaction(sig, si, ctx);
    } else {
      o.sa_handler(sig);
    }
    return;
  }
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, nullptr);
  if (sent) raise(sig);  // sent, not a fault: it will not repeat
}

}  // namespace detail

// install_truncation_guard makes a feed file truncated under a Reader (an
// operator's `truncate -s 0`; the writer never truncates) an error instead
// of a crash. Without it, a load from a page of the mapping past the file's
// new end kills the process with SIGBUS: check() reports the truncation
// (Format) when it runs first, but a poll, wait or read between the
// truncation and the next check faults. The guard is process-wide, so it is
// opt-in: it installs a SIGBUS handler (sigaction, SA_SIGINFO|SA_ONSTACK)
// that handles only faults inside the mappings of Readers (open ones, and
// ones opened later; up to 256 at a time) and passes every other SIGBUS to
// the disposition it replaced (its handler; SIG_IGN, under which a sent
// SIGBUS stays ignored; or the default action). A guarded mapping that
// faults is replaced by zero pages: from then on
// check() says Format (it did already: the file is shorter than the
// mapping), poll, wait, read and read_symbol say Format where the zeros
// would otherwise read as an overrun, an unknown locate or symbol, no data
// or an empty journal, and pending() is 0; close the Reader. Nothing is
// added to a read or a poll that does not fault. Call it once, early
// (before other threads run); a later sigaction(SIGBUS) by the
// application replaces it. Ok, or System (sigaction failed: errno).
inline Error install_truncation_guard() noexcept {
  int want = 0;
  if (!detail::g_guard_state.compare_exchange_strong(want, 1, std::memory_order_acq_rel)) {
    while (detail::g_guard_state.load(std::memory_order_acquire) == 1) sched_yield();
    return Error::Ok;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = detail::guard_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &detail::g_guard_old) != 0) {
    detail::g_guard_state.store(0, std::memory_order_release);
    return Error::System;
  }
  detail::g_guard_state.store(2, std::memory_order_release);
  return Error::Ok;
}

// Reader maps one feed file read-only.
class Reader {
 public:
  Reader() noexcept = default;
  ~Reader() { close(); }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  Reader(Reader&& o) noexcept { *this = static_cast<Reader&&>(o); }
  Reader& operator=(Reader&& o) noexcept {
    if (this != &o) {
      close();
      std::memcpy(static_cast<void*>(this), static_cast<const void*>(&o), sizeof(Reader));
      o.mem_ = nullptr;
      o.size_ = 0;
      o.fd_ = -1;
      o.guard_ = -1;
    }
    return *this;
  }

  // open maps the feed file name (a bare name lives under /dev/shm, a name
  // with a slash is a path). NotExist while the writer has not created it;
  // PermissionDenied, Format, LayoutVersion, System otherwise. It succeeds
  // on a closed or dead writer's file so that its last books stay readable;
  // check() tells the writer's state. A relative path is resolved against
  // the working directory once, here (path() is absolute): check() looks at
  // the same file after the process changed its working directory. The
  // path is cleaned as Go's filepath.Clean cleans it ("x/../feed" is
  // "feed", "feed/" is "feed"), so a name names the file the Go writer
  // and readers name by it. After an open that failed, info() is empty
  // (Info{}): nothing of a refused header, nor of a file open before.
  Error open(const char* name, const OpenOptions& opt = OpenOptions()) noexcept {
    Error e = map_file(name, opt);
    if (e != Error::Ok) forget_header();
    return e;
  }

  // open_wait is open, retried every poll_ns while the feed does not exist,
  // until timeout_ns passed. error_text then says how long it waited.
  Error open_wait(const char* name, int64_t timeout_ns, int64_t poll_ns,
                  const OpenOptions& opt = OpenOptions()) noexcept {
    int64_t deadline = detail::add_sat(detail::monotonic_ns(), timeout_ns);
    for (;;) {
      Error e = open(name, opt);
      if (e != Error::NotExist) return e;
      // One reading decides both: two could straddle the deadline and
      // return without the wait that error_text names.
      if (detail::monotonic_ns() > deadline) {
        waited_ns_ = timeout_ns;
        return e;
      }
      detail::sleep_ns(poll_ns > 0 ? poll_ns : 1000000);
    }
  }

 private:
  // map_file is open but for forgetting a refused header.
  Error map_file(const char* name, const OpenOptions& opt) noexcept {
    close();
    errno_ = 0;
    found_version_ = 0;
    waited_ns_ = -1;
    if (name == nullptr) return Error::NotExist;
    size_t n = std::strlen(name);
    bool bare = std::memchr(name, '/', n) == nullptr;
    static constexpr char kDir[] = "/dev/shm/";
    size_t dir = 0;
    if (bare) {
      dir = sizeof kDir - 1;
      std::memcpy(path_, kDir, dir);
    } else if (name[0] != '/') {
      if (getcwd(path_, sizeof path_) == nullptr) {
        errno_ = errno;
        path_[0] = 0;
        return Error::System;
      }
      dir = std::strlen(path_);
      if (dir > 0 && path_[dir - 1] != '/') path_[dir++] = '/';  // dir < sizeof path_: getcwd left room for its NUL
      while (n >= 2 && name[0] == '.' && name[1] == '/') {       // "./x": /cwd/x
        name += 2;
        n -= 2;
      }
    }
    if (dir + n + 1 > sizeof path_) {
      errno_ = ENAMETOOLONG;
      path_[0] = 0;
      return Error::System;
    }
    std::memcpy(path_ + dir, name, n + 1);
    detail::clean_path(path_);  // the file Go's filepath.Clean names

    // O_NONBLOCK: a FIFO under the name must not hang open (it is then
    // refused as not a regular file).
    int fd = ::open(path_, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      Error e = from_errno(errno);
      ::close(fd);
      return e;
    }
    if (!S_ISREG(st.st_mode) || uint64_t(st.st_size) < detail::kHeaderSize) {
      ::close(fd);
      return Error::Format;
    }
    // The header first, read rather than mapped: MAP_POPULATE faults in
    // every page of the mapping, and tmpfs allocates a page for each hole
    // it faults. A file that is no feed of this layout (another program's
    // sparse shm file under a mistyped name, a feed truncated to a larger
    // size, another layout version) would cost its whole size in memory,
    // kept by the file after open refused it. The mapping's header is
    // checked again below: the file may change in between.
    {
      unsigned char h[detail::kHeaderSize];
      ssize_t got = pread(fd, h, sizeof h, 0);
      Error e = got < 0                    ? from_errno(errno)
                : got < ssize_t(sizeof h) ? Error::Format  // truncated since its fstat
                                           : read_header(h, uint64_t(st.st_size));
      if (e != Error::Ok) {
        ::close(fd);
        return e;
      }
    }
    void* m = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    int merr = errno;
    if (m == MAP_FAILED) {
      ::close(fd);
      return from_errno(merr);
    }
    // Kept open while mapped: check() fstats it (a file truncated under
    // the mapping).
    fd_ = fd;
    mem_ = static_cast<const uint8_t*>(m);
    size_ = size_t(st.st_size);
    guard_ = detail::guard_register(mem_, size_);  // install_truncation_guard
    ino_ = st.st_ino;
    dev_ = st.st_dev;
    FEEDHANDLER_SHM_TEST_MAPPED(path_);
    // The file may have been truncated since its fstat sized the mapping
    // (MAP_POPULATE takes milliseconds for a large file): asked again
    // before the first load from the mapping, which would fault (SIGBUS)
    // on a page past the file's new end. A truncation after this fstat
    // still faults, unless install_truncation_guard was called.
    struct stat now;
    if (fstat(fd, &now) != 0) {
      Error e = from_errno(errno);
      close();
      return e;
    }
    if (uint64_t(now.st_size) < uint64_t(size_)) {
      close();
      return Error::Format;
    }
    Error e = read_header(mem_, size_);
    if (e == Error::Ok && cut()) e = Error::Format;
    if (e != Error::Ok) {
      close();
      return e;
    }
    live_start();
    stale_ns_ = opt.stale_after_ns;
    if (stale_ns_ <= 0) {
      stale_ns_ = 10 * info_.heartbeat_interval_ns;
      if (stale_ns_ < 1000000000) stale_ns_ = 1000000000;
    }
    return Error::Ok;
  }

  // forget_header empties what read_header stored (a refused header's
  // first fields, or the file open before).
  void forget_header() noexcept {
    info_ = Info();
    index_ = directory_ = journal_ = slots_ = trailer_ = 0;
    stale_ns_ = 0;
  }

 public:

  // close unmaps the file; Views stay valid (they live in caller buffers).
  void close() noexcept {
    detail::guard_unregister(guard_);
    guard_ = -1;
    if (mem_ != nullptr) munmap(const_cast<uint8_t*>(mem_), size_);
    if (fd_ >= 0) ::close(fd_);
    mem_ = nullptr;
    size_ = 0;
    fd_ = -1;
  }

  bool is_open() const noexcept { return mem_ != nullptr; }
  const char* path() const noexcept { return path_; }  // absolute (resolved at open)
  const Info& info() const noexcept { return info_; }
  // sys_errno is the errno behind the last open's System or PermissionDenied.
  int sys_errno() const noexcept { return errno_; }
  // found_layout_version is the version of the file the last open refused
  // with LayoutVersion.
  uint32_t found_layout_version() const noexcept { return found_version_; }

  // error_text writes e, the error a call of this reader returned last,
  // with its cause as the Go and Python readers say it, into buf (len
  // bytes, cut to fit, NUL-terminated) and returns buf:
  //   "/dev/shm/itch: pid 26530 gone, heartbeat 203ms old: shm: writer is dead"
  //   "/dev/shm/itch: layout version 2, this library reads 1: shm: layout version mismatch"
  //   "/dev/shm/itch: waited 60s: shm: feed does not exist (is the writer ...)" after open_wait gave up
  // The causes are kept where the error is made (an open that failed, a
  // look that found the writer dead); nothing on the read or poll path
  // that succeeds. No allocation. A WriterDead from another thread's call
  // of the same reader may show that call's cause.
  const char* error_text(Error e, char* buf, size_t len) const noexcept {
    if (buf == nullptr || len == 0) return buf;
    const char* msg = error_message(e);
    int n = 0;
    auto put = [&](int k) { n = k < 0 ? n : (size_t(n) + size_t(k) < len ? n + k : int(len) - 1); };
    auto at = [&]() { return buf + n; };
    auto room = [&]() { return len - size_t(n); };
    buf[0] = 0;
    if (path_[0] != 0) put(std::snprintf(at(), room(), "%s: ", path_));
    switch (e) {
      case Error::WriterDead: {
        int32_t pid = __atomic_load_n(&dead_pid_, __ATOMIC_RELAXED);
        int64_t age = __atomic_load_n(&dead_age_ns_, __ATOMIC_RELAXED);
        if (pid != 0) put(std::snprintf(at(), room(), "pid %d gone, ", int(pid)));
        put(std::snprintf(at(), room(), "heartbeat "));
        put(detail::put_duration(at(), room(), age));
        put(std::snprintf(at(), room(), " old: %s", msg));
        break;
      }
      case Error::LayoutVersion:
        put(std::snprintf(at(), room(), "layout version %u, this library reads %u: %s", unsigned(found_version_),
                          unsigned(kLayoutVersion), msg));
        break;
      case Error::NotExist:
        if (waited_ns_ >= 0) {
          put(std::snprintf(at(), room(), "waited "));
          put(detail::put_duration(at(), room(), waited_ns_));
          put(std::snprintf(at(), room(), ": %s (%s)", msg, kNotExistHint));
        } else {
          put(std::snprintf(at(), room(), "%s", msg));
        }
        break;
      case Error::System:
      case Error::PermissionDenied:
        if (errno_ != 0) {
          put(std::snprintf(at(), room(), "%s: %s", std::strerror(errno_), msg));
          break;
        }
        put(std::snprintf(at(), room(), "%s", msg));
        break;
      default:
        put(std::snprintf(at(), room(), "%s", msg));
    }
    return buf;
  }

  // kNotExistHint is what an open_wait that timed out asks to check (the
  // Go and Python readers' words).
  static constexpr const char* kNotExistHint =
      "is the writer, feedhandler run, running? its feed config's shm.name must name this file";

  // heartbeat_ns is the writer's last heartbeat, Unix ns (0 when not open).
  int64_t heartbeat_ns() const noexcept {
    return mem_ != nullptr ? load_acquire<int64_t>(detail::kOffHeartbeat) : 0;
  }

  // check reports the writer's state: Ok while alive; Restarted when a new
  // writer replaced the file, or re-initialized it in place (another
  // generation; close, open again); Format when the mapped
  // file was truncated below the size mapped (the writer never does; reading
  // the mapping would fault with SIGBUS); Closed when it closed the feed;
  // WriterDead when its heartbeat is older than the stale limit, or older
  // than two heartbeat intervals with its process gone. Same order of checks
  // as the Go reader.
  Error check() const noexcept {
    if (mem_ == nullptr) return Error::NotOpen;
    Error e = check_file();
    return e != Error::Ok ? e : writer_gone();
  }

  // instrument_count is the number of registered instruments.
  uint32_t instrument_count() const noexcept {
    if (mem_ == nullptr) return 0;
    uint32_t n = load_acquire<uint32_t>(detail::kOffCount);
    return n < info_.instruments ? n : info_.instruments;
  }

  // instrument returns directory entry i (registration order), i < instrument_count();
  // a retired entry (out.retired) names a symbol its locate no longer has
  // (or a locate its symbol no longer has).
  bool instrument(uint32_t i, Instrument& out) const noexcept {
    if (i >= instrument_count()) return false;
    const uint8_t* e = mem_ + directory_ + uint64_t(i) * detail::kDirEntrySize;
    out.locate = detail::le16(e);
    out.symbol_len = e[2] > 8 ? 8 : e[2];
    std::memcpy(out.symbol_buf, e + 8, out.symbol_len);
    out.symbol_buf[out.symbol_len] = 0;
    out.retired = (dir_flags(e) & detail::kDirRetired) != 0;
    return true;
  }

  // lookup finds the locate of symbol (no padding) by scanning the
  // directory: a few microseconds for ten thousand instruments, so look up
  // once and keep the locate (and look up again after a session change: a
  // symbol may move to another locate). The writer keeps at most one live
  // entry per symbol: it retires the old one before storing the new.
  bool lookup(std::string_view symbol, uint16_t& locate) const noexcept {
    if (symbol.empty() || symbol.size() > 8) return false;
    uint32_t n = instrument_count();
    for (uint32_t i = 0; i < n; i++) {
      const uint8_t* e = mem_ + directory_ + uint64_t(i) * detail::kDirEntrySize;
      // The length as instrument() and the Go and Python readers take it:
      // at most 8 (a corrupt entry may say more).
      size_t len = e[2] > 8 ? 8 : e[2];
      if ((dir_flags(e) & detail::kDirRetired) == 0 && len == symbol.size() &&
          std::memcmp(e + 8, symbol.data(), symbol.size()) == 0) {
        locate = detail::le16(e);
        return true;
      }
    }
    return false;
  }

  // version is how many snapshots of locate were published (0: none or
  // unknown locate). After Overrun, compare versions to find what changed.
  uint64_t version(uint16_t locate) const noexcept {
    uint64_t slot;
    if (!slot_of(locate, slot)) return 0;
    return load_acquire<uint64_t>(slots_ + slot * info_.slot_size) / 2;
  }

  // read copies the latest consistent snapshot of locate into buf (len
  // bytes, at least info().max_snapshot, 8-byte aligned) and points out at
  // it. It allocates nothing and throws nothing: the seqlock protocol copies
  // the slot, then re-checks its sequence and retries when a writer was
  // publishing meanwhile. A slot held odd by a dead or closed writer is
  // WriterDead or Closed; by a live writer for over a second, Busy. An even
  // slot with a length above max_snapshot is Format.
  Error read(uint16_t locate, void* buf, size_t len, View& out) const noexcept {
    if (mem_ == nullptr) return Error::NotOpen;
    uint64_t slot;
    if (!slot_of(locate, slot)) return faulted() ? Error::Format : Error::UnknownLocate;
    if (len < info_.max_snapshot) return Error::ShortBuffer;
    if (reinterpret_cast<uintptr_t>(buf) % 8 != 0) return Error::Misaligned;
    const uint8_t* base = mem_ + slots_ + slot * info_.slot_size;
    const uint64_t* seq = reinterpret_cast<const uint64_t*>(base);
    const uint32_t* lenp = reinterpret_cast<const uint32_t*>(base + 8);
    const uint8_t* data = base + detail::kSlotHeader;
    uint8_t* dst = static_cast<uint8_t*>(buf);
    int64_t start = 0;
    Error gone = Error::Ok;  // check(): the writer closed or died; the slot changes no more
    for (uint32_t spin = 1;; spin++) {
      uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
      if (s1 == 0) return faulted() ? Error::Format : Error::NoData;
      if ((s1 & 1) == 0) {
        uint32_t n = __atomic_load_n(lenp, __ATOMIC_ACQUIRE);
        // The writer never stores such a length, and an aligned 4-byte
        // load does not tear: the file is corrupt, and no retry will read
        // it (retrying would end in Busy or WriterDead a second later).
        if (n > info_.max_snapshot) return Error::Format;
        copy_racy(dst, data, n);
        load_fence();
        if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) == s1) {
          if (!detail::valid_snapshot(dst, n, info_.depth)) return Error::Format;
          out.snap_ = flatbuffers::GetRoot<bookfb::Snapshot>(dst);
          out.data_ = dst;
          out.size_ = n;
          out.version_ = s1 / 2;
          return Error::Ok;
        }
      }
      // The attempt after the writer was found gone failed too: it left
      // the slot odd, inside a publish.
      if (gone != Error::Ok) return gone;
      if (spin < 256) continue;
      sched_yield();
      if (spin % 1024 != 0) continue;
      // Slow path: a writer that died or closed while holding the slot
      // will never release it. One that is gone between publishes left the
      // slot readable: one more attempt reads it. The mapped file's own
      // writer is asked about, not the file's name: a new writer may have
      // replaced the file since the old one died inside a publish.
      Error e = writer_gone();
      if (e != Error::Ok) {
        gone = e;
        continue;
      }
      if (start == 0) {
        start = detail::monotonic_ns();
      } else if (detail::monotonic_ns() - start > 1000000000) {
        return Error::Busy;
      }
    }
  }

  // read_symbol is read by symbol (a directory scan; see lookup): the book
  // of symbol, never another's. It looks the symbol's locate up, then reads
  // the locate. A session change between the two (the writer rebinding the
  // locate to another symbol, or the symbol to another locate) leaves the
  // locate with another symbol's book, or none: every slot holds one
  // symbol's snapshots, so the snapshot's symbol tells, and read_symbol
  // looks up again once (as Go's ReadSymbol). A symbol whose locate changed
  // again meanwhile is UnknownLocate. A closed Reader is NotOpen, a mapping
  // the truncation guard replaced Format, as for read.
  Error read_symbol(std::string_view symbol, void* buf, size_t len, View& out) const noexcept {
    if (mem_ == nullptr) return Error::NotOpen;
    for (bool again = false;; again = true) {
      uint16_t locate;
      // Not found: the truncation guard's zero pages have no directory.
      if (!lookup(symbol, locate)) return faulted() ? Error::Format : Error::UnknownLocate;
      FEEDHANDLER_SHM_TEST_LOOKED_UP(symbol, locate);
      Error e = read(locate, buf, len, out);
      bool moved = e == Error::UnknownLocate || e == Error::NoData;
      if (e == Error::Ok && out.symbol() != symbol) {
        out = View();
        if (again) return Error::UnknownLocate;
        moved = true;
      }
      if (!moved || again) return e;
    }
  }

  // follow returns a follower positioned at the journal head: it reports
  // publications from now on. To start from a complete picture, follow
  // first, then read every instrument, then poll. A follower of a closed
  // Reader says NotOpen; it starts at journal position 0 when the Reader is
  // opened again.
  inline Follower follow() const noexcept;

 private:
  // check_file is check without the writer's state (writer_gone): whether
  // the mapped file is still the one open read, at its size. check runs it
  // first: a file replaced, truncated, re-initialized or cut is said before
  // its writer's state.
  Error check_file() const noexcept {
    struct stat st;
    bool named = stat(path_, &st) == 0;
    if (named && (st.st_ino != ino_ || st.st_dev != dev_)) return Error::Restarted;
    // Before anything reads the mapping. A read racing the truncation
    // still faults. The name's stat, when it is the mapped file, has its
    // size; otherwise (the name is gone) the descriptor kept open has it.
    if ((named || fstat(fd_, &st) == 0) && uint64_t(st.st_size) < uint64_t(size_)) return Error::Format;
    // The same file, re-initialized in place (a copy over it, a writer that
    // opened the name with O_TRUNC rather than renaming its file into
    // place): the static header never changes in the file open read, so
    // another generation is another writer's file, whose layout this
    // Reader does not have.
    if (load_acquire<uint64_t>(detail::kOffGeneration) != info_.generation) return Error::Restarted;
    // The same file, cut below its size and grown back (its header kept,
    // the rest zeros), or its end overwritten: the trailer tells.
    if (cut()) return Error::Format;
    return Error::Ok;
  }

  // writer_gone is check without the file's replacement: whether the
  // writer of the mapped file closed it (Closed) or died (WriterDead), even
  // when a new writer has replaced the file since.
  Error writer_gone() const noexcept {
    if (load_acquire<uint32_t>(detail::kOffState) == detail::kStateClosed) return Error::Closed;
    int64_t age = heartbeat_age();
    // The pid alone does not say: a reader in another pid namespace (a
    // container) sees no such process, or another one, under the writer's
    // pid. Gone and two heartbeats missed is dead, sooner than the stale
    // limit. (The interval is at most an hour: 2 intervals cannot overflow.)
    if (age > 2 * info_.heartbeat_interval_ns && kill(pid_t(info_.writer_pid), 0) != 0 && errno == ESRCH) {
      return dead(info_.writer_pid, age);
    }
    if (age > stale_ns_) return dead(0, age);
    return Error::Ok;
  }
  // dead keeps the cause of a WriterDead for error_text (pid: the writer's,
  // gone; 0 when its heartbeat is merely stale): on the error path alone.
  Error dead(int32_t pid, int64_t age) const noexcept {
    __atomic_store_n(&dead_pid_, pid, __ATOMIC_RELAXED);
    __atomic_store_n(&dead_age_ns_, age, __ATOMIC_RELAXED);
    return Error::WriterDead;
  }

  // Liveness (docs/SHM.md, "Writer liveness"): the writer is judged by
  // whether its heartbeat changes, timed on this process's monotonic clock.
  // The heartbeat is the writer's CLOCK_REALTIME; compared with the
  // reader's, a step of either clock would read as a live writer going
  // stale at once, or a dead one looking fresh. Its realtime age counts
  // only at open and to place a change the reader sees within the time
  // since its previous look; between changes the age grows on the
  // monotonic clock.
  //
  // live_start is the look at open: the heartbeat's realtime age (0 if in
  // the future) places the beat. The clocks are read before the heartbeat,
  // as in heartbeat_age.
  void live_start() noexcept {
    int64_t r = detail::realtime_ns(), m = detail::monotonic_ns();
    int64_t hb = heartbeat_ns(), a = detail::sub_sat(r, hb);
    live_hb_ = hb;
    live_seen_ = m;
    live_beat_ = detail::sub_sat(m, a > 0 ? a : 0);
  }
  // heartbeat_age loads the heartbeat and returns how long ago (ns) the
  // writer stored it: a value other than the last one seen was stored since
  // the previous look, when its realtime age says, kept within that
  // interval (a clock step cannot move it further); the same value has aged
  // by the monotonic clock since. const calls run in several threads
  // (read's slow path, check): live_lock_ guards the fields.
  //
  // The clocks are read first, then the heartbeat: a reader that loses its
  // CPU in between (a loaded machine, a stopped process) loads a heartbeat
  // at least as new as the clocks' readings, and the age is at most the
  // true one. The other way round its own stall was the writer's age: past
  // the stale limit, WriterDead for a writer that had beaten all along.
  int64_t heartbeat_age() const noexcept {
    while (__atomic_exchange_n(&live_lock_, 1, __ATOMIC_ACQUIRE) != 0) sched_yield();
    int64_t r = detail::realtime_ns(), m = detail::monotonic_ns();
    int64_t hb = heartbeat_ns();
    if (hb != live_hb_) {
      int64_t since = m > live_seen_ ? m - live_seen_ : 0;
      int64_t a = detail::sub_sat(r, hb);
      if (a < 0) a = 0;
      if (a > since) a = since;
      live_hb_ = hb;
      live_beat_ = m - a;
    }
    if (m > live_seen_) live_seen_ = m;
    int64_t age = detail::sub_sat(m, live_beat_);
    __atomic_store_n(&live_lock_, 0, __ATOMIC_RELEASE);
    return age;
  }

  friend class Follower;

  template <typename T>
  T load_acquire(size_t off) const noexcept {
    return __atomic_load_n(reinterpret_cast<const T*>(mem_ + off), __ATOMIC_ACQUIRE);
  }

  // dir_flags loads the flags byte of directory entry e. The writer sets
  // its retired bit at any time after the entry was published (the rest of
  // the entry never changes), so it is an atomic load, never a plain one
  // the compiler may assume nobody changes. Acquire, as every mapped word
  // that changes is loaded (docs/SHM.md, "Memory ordering"); relaxed would
  // do: nothing read after it depends on the flag's store.
  static uint8_t dir_flags(const uint8_t* e) noexcept {
    return __atomic_load_n(e + detail::kDirFlags, __ATOMIC_ACQUIRE);
  }

  // copy_racy copies bytes that a writer may be changing concurrently; the
  // seqlock re-check discards a torn copy. Sanitizers are told not to
  // instrument it: the race is the protocol.
  __attribute__((no_sanitize("thread", "address"))) static void copy_racy(uint8_t* dst, const uint8_t* src,
                                                                          size_t n) noexcept {
    std::memcpy(dst, src, n);
  }

  // load_fence keeps the copy's loads before the seqlock re-check. x86-64
  // never reorders loads with loads (TSO), so a compiler barrier is enough
  // (and ThreadSanitizer accepts it); weakly ordered CPUs (arm64) need an
  // acquire fence (dmb ishld).
  static void load_fence() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("" ::: "memory");
#else
    std::atomic_thread_fence(std::memory_order_acquire);
#endif
  }

  Error from_errno(int e) noexcept {
    errno_ = e;
    if (e == ENOENT) return Error::NotExist;
    if (e == EACCES || e == EPERM) return Error::PermissionDenied;
    return Error::System;
  }

  bool slot_of(uint16_t locate, uint64_t& slot) const noexcept {
    if (mem_ == nullptr) return false;
    uint32_t v = load_acquire<uint32_t>(index_ + uint64_t(locate) * 4);
    if (v == 0 || v > info_.instruments) return false;
    slot = v - 1;
    return true;
  }

  // read_header validates the static header at h, of a file of size bytes,
  // like the Go reader's readHeader: the mapping's, or the file's first
  // page read before it is mapped.
  Error read_header(const uint8_t* h, uint64_t size) noexcept {
    using namespace detail;
    if (std::memcmp(h + kOffMagic, kMagic, 8) != 0) return Error::Format;
    uint32_t v = le32(h + kOffLayoutVersion);
    if (v != kLayoutVersion) {
      found_version_ = v;
      return Error::LayoutVersion;
    }
    Info& in = info_;
    in.layout_version = v;
    in.generation = le64(h + kOffGeneration);
    in.start_time_ns = int64_t(le64(h + kOffStartTime));
    in.writer_pid = int32_t(le32(h + kOffWriterPid));
    uint64_t slot_size = le32(h + kOffSlotSize);
    uint64_t capacity = le32(h + kOffCapacity);
    uint64_t depth = le32(h + kOffDepth);
    uint64_t journal_len = le32(h + kOffJournalLen);
    in.heartbeat_interval_ns = int64_t(le64(h + kOffHeartbeatEvery));
    uint64_t index = le64(h + kOffIndex), directory = le64(h + kOffDirectory), journal = le64(h + kOffJournal),
             slots = le64(h + kOffSlots), file_size = le64(h + kOffFileSize);
    uint64_t max_snapshot = le32(h + kOffMaxSnapshot);
    // The trailer (a copy of the generation in the file's last 8 bytes;
    // offset 0: an earlier writer's file, without one).
    uint64_t trailer = le64(h + kOffTrailer);
    // The writer pid is 1 to Linux's largest (below PID_MAX_LIMIT, 2^22):
    // kill of 0 or a negative pid would signal a process group.
    if (in.writer_pid <= 0 || in.writer_pid >= (int32_t(1) << 22) || capacity == 0 || capacity > kMaxLocates ||
        depth == 0 || depth > kMaxDepth || in.heartbeat_interval_ns <= 0 ||
        in.heartbeat_interval_ns > kMaxHeartbeatInterval ||
        journal_len > (uint64_t(1) << 30) || slot_size > (uint64_t(1) << 20) ||
        max_snapshot < max_snapshot_size(depth) || index > file_size || directory > file_size ||
        journal > file_size || slots > file_size) {
      return Error::Format;
    }
    if (le32(h + kOffHeaderSize) != kHeaderSize || file_size != size || journal_len == 0 ||
        (journal_len & (journal_len - 1)) != 0 || slot_size % kCacheLine != 0 ||
        slot_size < kSlotHeader + max_snapshot || index != kHeaderSize || directory < index + kMaxLocates * 4 ||
        journal < directory + capacity * kDirEntrySize || slots < journal + journal_len * kRecordSize ||
        slots % kCacheLine != 0 || journal % kCacheLine != 0 || slots + capacity * slot_size > file_size ||
        (trailer != 0 && (trailer != file_size - 8 || trailer % 8 != 0 || trailer < slots + capacity * slot_size))) {
      return Error::Format;
    }
    in.slot_size = uint32_t(slot_size);
    in.instruments = uint32_t(capacity);
    in.depth = uint32_t(depth);
    in.journal_len = uint32_t(journal_len);
    in.max_snapshot = uint32_t(max_snapshot);
    index_ = index;
    directory_ = directory;
    journal_ = journal;
    slots_ = slots;
    trailer_ = trailer;
    return Error::Ok;
  }

  // cut reports whether the file's trailer is no longer the generation:
  // the file was cut below its size and grown back (which the header, in
  // its first page, may survive), or its end overwritten. A file without a
  // trailer is never cut. The caller knows the file covers the mapping.
  bool cut() const noexcept {
    return trailer_ != 0 && load_acquire<uint64_t>(trailer_) != info_.generation;
  }

  const uint8_t* mem_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;  // the mapped file, open while mapped (check fstats it)
  Info info_;
  uint64_t index_ = 0, directory_ = 0, journal_ = 0, slots_ = 0, trailer_ = 0;
  ino_t ino_ = 0;
  dev_t dev_ = 0;
  int64_t stale_ns_ = 0;
  // Liveness: the heartbeat last seen, the monotonic ns of the last look,
  // and the monotonic ns the writer is taken to have stored it. Changed by
  // const calls, under live_lock_ (a spin lock: held for a few loads).
  mutable int live_lock_ = 0;
  mutable int64_t live_hb_ = 0, live_seen_ = 0, live_beat_ = 0;
  int errno_ = 0;
  // guard_ is the mapping's entry in the truncation guard's table (-1:
  // none); faulted() says whether the guard replaced the mapping with zero
  // pages (asked on error paths only).
  int guard_ = -1;
  bool faulted() const noexcept { return detail::guard_faulted(guard_); }
  uint32_t found_version_ = 0;
  int64_t waited_ns_ = -1;  // open_wait's wait when it gave up on NotExist (-1: open did not wait)
  mutable int32_t dead_pid_ = 0;      // the last WriterDead's gone pid (0: stale heartbeat)
  mutable int64_t dead_age_ns_ = 0;   // and its heartbeat's age
  char path_[4096] = {};
};

// Follower follows the change journal of a Reader. It points at the
// Reader: the Reader must outlive it and stay where it is (do not move it
// while it has followers). One thread per Follower. It follows the file
// the Reader maps: when the Reader is opened again on another file (a
// restarted writer's: another generation), the follower reads that file's
// journal from its start; opened again on the same file, it keeps its
// place.
class Follower {
 public:
  Follower() noexcept = default;

  // lost is the number of records skipped because of overruns.
  uint64_t lost() const noexcept { return lost_; }
  // overruns is the number of times poll returned Overrun.
  uint64_t overruns() const noexcept { return overruns_; }
  // pending is the number of records published and not yet polled (0
  // once the truncation guard replaced the mapping with zero pages).
  uint64_t pending() const noexcept {
    uint64_t h = head();
    if (h == 0 && r_ != nullptr && r_->faulted()) return 0;  // no position: Go's Pending after a fault
    return h - (same_file() ? next_ : 0);
  }

  // poll copies up to cap new journal records into dst without blocking
  // and sets n. A record a publisher is still writing ends the batch. When
  // the follower fell more than journal_len records behind, the ring
  // overwrote records it had not read: poll returns Overrun (n holds the
  // records read before the gap), skips to the newest record, and the caller
  // must rescan every instrument (read or version).
  // Once the writer closed the feed, a poll that finds no new record
  // returns check()'s error, Closed (Restarted first when a new writer
  // replaced the file), after the records published before the close; a
  // record the closed writer claimed and never wrote is an Overrun (rescan),
  // as wait says. A writer that died (killed, the OOM killer) stores
  // nothing: a poll that finds nothing new looks at its heartbeat every
  // few empty polls (about once a heartbeat interval, at most every
  // kMaxLookEvery) and, once the writer is dead as check() says it (its
  // pid gone and two heartbeats missed, or the heartbeat older than the
  // stale limit), returns check()'s error, WriterDead (Restarted first when
  // a new writer replaced the file), and so on every empty poll until the
  // writer beats again. A capacity of 0 returns Ok.
  Error poll(Update* dst, size_t cap, size_t& n) noexcept {
    n = 0;
    if (r_ == nullptr || r_->mem_ == nullptr) return Error::NotOpen;
    if (!same_file()) {  // the Reader was opened again, on another file
      gen_ = r_->info_.generation;
      next_ = 0;
    }
    const uint64_t jl = r_->info_.journal_len;
    uint64_t h = head();
    // A head of 0 is the guard's zero pages (a file truncated under the
    // mapping), or a journal nothing was appended to yet: only then is
    // the guard asked, so that a follower at position 0 says Format too.
    if (h - next_ > jl || (h == 0 && r_->faulted())) return overrun(h);
    while (n < cap && next_ < h) {
      const uint8_t* rec = r_->mem_ + r_->journal_ + (next_ & (jl - 1)) * detail::kRecordSize;
      const uint64_t* stamp = reinterpret_cast<const uint64_t*>(rec);
      const uint64_t* data = reinterpret_cast<const uint64_t*>(rec + 8);
      uint64_t want = next_ + 1;
      uint64_t s1 = __atomic_load_n(stamp, __ATOMIC_ACQUIRE);
      if (s1 != want) {
        if (s1 != detail::kStampBusy && s1 > want) return overrun(head());
        // Claimed but not written yet, or being rewritten: a lap later
        // would show in the head.
        if (head() - next_ > jl) return overrun(head());
        break;
      }
      uint64_t d = __atomic_load_n(data, __ATOMIC_ACQUIRE);
      if (__atomic_load_n(stamp, __ATOMIC_ACQUIRE) != s1) return overrun(head());  // a publisher a lap ahead
      dst[n].locate = uint16_t(d >> 48);
      dst[n].version = d & detail::kVersionMask;
      n++;
      next_++;
    }
    if (n == 0 && cap > 0) {
      // The writer closed the feed: a poll that found nothing new says so
      // (one load, on the empty path only).
      if (r_->load_acquire<uint32_t>(detail::kOffState) == detail::kStateClosed) return stopped(r_->writer_gone());
      // A dead writer stores nothing: a countdown in the follower's own
      // memory, no load of the mapping, brings the look.
      if (--until_look_ <= 0) return look();
    }
    return Error::Ok;
  }

  // wait is poll that blocks until at least one record arrives or
  // timeout_ns passes (then Ok with n == 0). It spins, yields, then sleeps,
  // and checks the writer every check_every_ns: a dead, closed or restarted
  // writer ends the wait with WriterDead, Closed or Restarted, after the
  // records published before it stopped were delivered (when a dead or
  // closed writer left a record it claimed unwritten, the records behind
  // it cannot be: Overrun, counted in lost, then the writer's state at the
  // next wait; rescan) (a file truncated
  // under the mapping: Format, when the check comes before a poll faults,
  // or always with install_truncation_guard; see check()). The follower's
  // first wait checks once its spin found nothing; the clock of the checks
  // runs across calls, so a loop of waits shorter than check_every_ns (or
  // of 0) still checks every check_every_ns. With cap 0 it returns at once
  // what poll returns.
  Error wait(Update* dst, size_t cap, size_t& n, int64_t timeout_ns, WaitOptions opt = WaitOptions()) noexcept {
    // With a capacity of 0 no record can be returned: do not block, return
    // what poll does (Ok with n == 0, or Overrun), as Go and Python do.
    if (cap == 0) return poll(dst, cap, n);
    if (opt.spin <= 0) opt.spin = 1000;
    if (opt.sleep_ns <= 0) opt.sleep_ns = 50000;
    if (opt.check_every_ns <= 0) opt.check_every_ns = 100000000;
    for (int i = 0; i < opt.spin; i++) {
      Error e = poll(dst, cap, n);
      if (n > 0 || e != Error::Ok) return e;
    }
    int64_t start = detail::monotonic_ns();
    for (int yields = 0;; yields++) {
      Error e = poll(dst, cap, n);
      if (n > 0 || e != Error::Ok) return e;
      int64_t t = detail::monotonic_ns();
      if (last_check_ == 0 || t - last_check_ >= opt.check_every_ns) {
        last_check_ = t;
        Error c = r_->check();
        if (c == Error::Format) return c;  // truncated: not read again (its pages fault)
        if (c != Error::Ok) {
          e = poll(dst, cap, n);
          if (n > 0 || e != Error::Ok) return e;
          if (at_hole(c)) {
            last_check_ = 0;  // the next wait checks at once and says why
            return overrun(head());
          }
          return c;
        }
      }
      if (t - start >= timeout_ns) return Error::Ok;
      if (yields < 100) {
        sched_yield();
      } else {
        detail::sleep_ns(opt.sleep_ns);
      }
    }
  }

 private:
  friend class Reader;
  // A follower of a closed Reader starts at position 0, as Go's Follow of
  // a closed Reader does (head() would return next_, not yet initialized):
  // if the Reader is opened again it reads that file's journal from the
  // start, or reports an overrun.
  explicit Follower(const Reader* r) noexcept
      : r_(r),
        next_(r != nullptr && r->mem_ != nullptr ? r->load_acquire<uint64_t>(detail::kOffHead) : 0),
        gen_(r != nullptr && r->mem_ != nullptr ? r->info_.generation : 0) {}
  // same_file: the Reader maps the file this follower's position is in
  // (a closed Reader's followers are at position 0 of no file).
  bool same_file() const noexcept { return r_ == nullptr || r_->mem_ == nullptr || r_->info_.generation == gen_; }
  uint64_t head() const noexcept {
    return r_ && r_->mem_ ? r_->load_acquire<uint64_t>(detail::kOffHead) : next_;
  }
  // look is a poll's look at the writer's liveness, on its empty path
  // every look_every_ polls: check()'s liveness test (the clocks, the
  // heartbeat, and kill(pid, 0) once two heartbeats are missed), run once,
  // and once that says dead, what stopped says of it. The next look comes look_every_
  // empty polls on, as many as the follower made in a heartbeat interval
  // at the rate since the previous look (1 to kMaxLookEvery): a follower
  // that polls slowly still looks about once an interval, a fast one
  // rarely reads a clock. Once the writer is dead, at the next empty poll,
  // which says so again (or nothing, once it beats again). As Go's.
  Error look() noexcept {
    int64_t now = detail::monotonic_ns();
    if (looked_at_ != 0) {
      int64_t elapsed = now - looked_at_, every = look_every_ > 0 ? look_every_ : 1;
      // every <= kMaxLookEvery, the interval at most an hour: no overflow.
      every = elapsed > 0 ? every * r_->info_.heartbeat_interval_ns / elapsed : detail::kMaxLookEvery;
      look_every_ = every < 1 ? 1 : every > detail::kMaxLookEvery ? detail::kMaxLookEvery : every;
    }
    looked_at_ = now;
    Error gone = r_->writer_gone();
    if (gone == Error::Ok) {
      until_look_ = look_every_;
      return Error::Ok;
    }
    look_every_ = until_look_ = 1;
    return stopped(gone);
  }
  // stopped is what poll returns once the writer closed the feed, or its
  // look found it dead, and nothing new came: gone, writer_gone's error
  // (Closed or WriterDead), after check()'s tests of the file (check_file:
  // Restarted when a new writer replaced the file since), so that the poll
  // says what check() says without running the liveness test a second
  // time; an overrun instead at a hole (at_hole).
  Error stopped(Error gone) noexcept {
    Error c = r_->check_file();
    if (c == Error::Ok) c = gone;
    return at_hole(c) ? overrun(head()) : c;
  }
  // at_hole: a follower that found nothing new, told c by check(), stopped
  // at a record the writer claimed and, closed or dead, will never write
  // (a shared-mode publisher stopped between its claim and its stores):
  // the records behind it are never delivered, so the follower returns an
  // overrun for them (lost: the caller rescans) before c. A poll's
  // (stopped) and a wait's check alike.
  bool at_hole(Error c) const noexcept {
    return (c == Error::Closed || c == Error::WriterDead) && head() > next_;
  }
  Error overrun(uint64_t h) noexcept {
    // The truncation guard replaced the mapping with zero pages: the head
    // read 0, and this is no overrun.
    if (r_->faulted()) {
      next_ = h;
      return Error::Format;
    }
    // A file re-initialized in place by a restarted writer: its head
    // starts again, below next_. A restart, as check() says, not an
    // overrun: a rescan would read another writer's slots through this
    // file's layout. next_ stays.
    if (r_->load_acquire<uint64_t>(detail::kOffGeneration) != r_->info_.generation) return Error::Restarted;
    if (h > next_) lost_ += h - next_;
    next_ = h;
    overruns_++;
    return Error::Overrun;
  }

  const Reader* r_ = nullptr;
  uint64_t next_ = 0;
  // gen_ is the generation of the file next_ counts in (0: made from a
  // closed Reader, position 0 of whatever file it opens).
  uint64_t gen_ = 0;
  uint64_t lost_ = 0;
  uint64_t overruns_ = 0;
  // last_check_ is when wait last checked the writer (monotonic ns; 0:
  // never, so a check is due). A member, not a local of wait: a clock that
  // started with each call would never reach check_every in a loop of
  // shorter waits, and such a loop would never see the writer close or die.
  int64_t last_check_ = 0;
  // The poll's look at the writer's liveness (look): until_look_ counts
  // down the empty polls to the next look, look_every_ is how many it
  // counted from, looked_at_ the monotonic ns of the last look (0: none).
  int64_t until_look_ = 0, look_every_ = 0, looked_at_ = 0;
};

inline Follower Reader::follow() const noexcept { return Follower(this); }

}  // namespace shm
}  // namespace feedhandler

#endif  // FEEDHANDLER_SHM_READER_HPP_
