"""Reader of a feedhandler shared-memory feed file (docs/SHM.md).

Pure Python over mmap. The file is mapped read-only; every read of a book is
a seqlock copy (load seq, copy the bytes, load seq again, retry on change)
into bytes this process owns, which are then decoded. See docs/SHM.md,
"Python reader", for the guarantees and what they rest on.
"""

import collections
import errno
import mmap
import operator
import os
import platform
import stat as statmod
import time
import warnings

from . import layout as L
from .errors import (
    BusyError,
    ClosedError,
    FormatError,
    LayoutVersionError,
    NoDataError,
    NotExistError,
    OverrunError,
    PermissionDeniedError,
    ReaderClosedError,
    RestartedError,
    SystemCallError,
    UnknownLocateError,
    WriterDeadError,
)

try:  # optional: books as NumPy arrays
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the machine
    _np = None

# A slot held odd by a live writer longer than this is ErrBusy, as in Go.
BUSY_TIMEOUT = 1.0

# The clocks a Reader judges the writer's liveness by (Reader._heartbeat_age):
# CLOCK_REALTIME, which the heartbeat is written in, and the monotonic clock.
# Looked up at each call, so that tests can step them.
_real_ns = time.time_ns
_mono_ns = time.monotonic_ns

# The most empty polls between two of a poll's looks at the writer's liveness
# (docs/SHM.md, "A dead writer, in the poll"; Go maxLookEvery, C++
# kMaxLookEvery).
MAX_LOOK_EVERY = 1024

# Journal positions are uint64: their differences wrap as in Go and C++.
_U64_MASK = (1 << 64) - 1

# The largest heartbeat interval a header may promise (ns); a larger one, or
# 0 or less, is a corrupt header.
MAX_HEARTBEAT_INTERVAL_NS = 3600 * 10**9

# The seqlock copy is proved correct for x86-64 only (docs/SHM.md, "Why a
# pure-Python seqlock read is safe on x86-64"): pure Python has no load fence
# for weakly ordered CPUs.
ORDERED_LOADS = platform.machine().lower() in ("x86_64", "amd64")
if not ORDERED_LOADS:
    warnings.warn("feedhandler_shm: on %s a pure-Python seqlock read is not guaranteed consistent "
                  "(no load fence); use the Go or C++ reader" % platform.machine(), RuntimeWarning)

Info = collections.namedtuple(
    "Info",
    "layout_version generation start_time_ns writer_pid instruments depth "
    "journal_len slot_size max_snapshot heartbeat_interval_ns",
)
Info.__doc__ = "Geometry and identity of a feed file (Go shm.Info)."

Instrument = collections.namedtuple("Instrument", "locate symbol")
Instrument.__doc__ = "A registered instrument: ITCH locate and symbol (no padding)."

Update = collections.namedtuple("Update", "locate version")
Update.__doc__ = "A change-journal record: locate was published at version (slot publish count)."

Level = collections.namedtuple("Level", "price orders shares")
Level.__doc__ = "One price level, fields in book.fbs order: ITCH price (4 implied decimals), orders, shares."

if _np is not None:
    LEVEL_DTYPE = _np.dtype([("price", "<u4"), ("orders", "<u4"), ("shares", "<u8")])
else:
    LEVEL_DTYPE = None

TRADING_STATES = ("Unknown", "Halted", "Paused", "QuotationOnly", "Trading")
FLAG_NAMES = ((1, "PossiblyStale"), (2, "ShortSaleRestricted"), (4, "Crossed"), (8, "OperationalHalt"))


def path_of(name):
    """The file of a feed: a bare name lives under /dev/shm, a name with a slash is a path."""
    if "/" in name:
        return os.path.normpath(name)
    return os.path.join(L.DIR, name)


def _system_error(what, e):
    """SystemCallError for the OSError e of what (it keeps e's errno)."""
    return SystemCallError(e.errno, "%s: %s" % (what, e.strerror or e))


def _permission_message(path, op):
    who = "uid %d gid %d groups %s" % (os.getuid(), os.getgid(), sorted(os.getgroups()))
    try:
        st = os.stat(path)
    except OSError:
        return "%s shm %s: permission denied (this process: %s)" % (op, path, who)
    group = str(st.st_gid)
    try:
        import grp

        group = "%s (%d)" % (grp.getgrgid(st.st_gid).gr_name, st.st_gid)
    except (ImportError, KeyError):
        pass
    return (
        "%s shm %s: permission denied: file mode %s, owner uid %d, group %s; this process: %s. "
        "Run as a member of the feed's group, or ask the operator to change the feed's mode/group"
        % (op, path, statmod.filemode(st.st_mode), st.st_uid, group, who)
    )


_FIELDS = ("_sym_off", "seq", "exchange_time", "receive_time", "publish_time", "last_trade_shares",
           "volume", "messages", "_bids_off", "_asks_off", "bid_levels", "ask_levels",
           "last_trade_price", "locate", "flags", "trading_state", "system_event")
_make_level = Level._make
_new = tuple.__new__
_iter_levels = L.LEVEL.iter_unpack


class Book:
    """A consistent snapshot of one instrument, decoded from this process's own copy.

    Fields (book.fbs names): locate, symbol, seq, exchange_time, receive_time,
    publish_time, trading_state, flags, bids, asks, bid_levels, ask_levels,
    last_trade_price, last_trade_shares, volume, messages, system_event; plus
    version (the slot's publish count). ``bids`` and ``asks`` are lists of
    Level, best first, decoded on first access. ``flatbuffer`` is the
    snapshot's FlatBuffer (bytes); ``snapshot()`` wraps it in the
    flatc-generated ``bookfb.Snapshot``; ``bids_array()``/``asks_array()``
    return NumPy structured arrays when NumPy is installed.
    """

    __slots__ = ("flatbuffer", "version", "_t", "_sym_len", "_bids_at", "_nb", "_asks_at", "_na",
                 "_bids", "_asks")

    @property
    def symbol(self):
        return self.flatbuffer[L.SYMBOL_AT + 4: L.SYMBOL_AT + 4 + self._sym_len].decode("utf-8", "surrogateescape")

    @property
    def bids(self):
        if self._bids is None:
            at = self._bids_at + 4
            self._bids = [_new(Level, x) for x in _iter_levels(self.flatbuffer[at: at + self._nb * 16])]
        return self._bids

    @property
    def asks(self):
        if self._asks is None:
            at = self._asks_at + 4
            self._asks = [_new(Level, x) for x in _iter_levels(self.flatbuffer[at: at + self._na * 16])]
        return self._asks

    @property
    def bid_count(self):
        """Bid levels in this snapshot (at most the feed's depth)."""
        return self._nb

    @property
    def ask_count(self):
        """Ask levels in this snapshot (at most the feed's depth)."""
        return self._na

    def best_bid(self):
        """Best bid Level, or None."""
        return _make_level(L.LEVEL.unpack_from(self.flatbuffer, self._bids_at + 4)) if self._nb else None

    def best_ask(self):
        """Best ask Level, or None."""
        return _make_level(L.LEVEL.unpack_from(self.flatbuffer, self._asks_at + 4)) if self._na else None

    def bids_array(self):
        """Bids as a read-only NumPy structured array (LEVEL_DTYPE); needs NumPy."""
        return self._array(self._bids_at, self._nb)

    def asks_array(self):
        """Asks as a read-only NumPy structured array (LEVEL_DTYPE); needs NumPy."""
        return self._array(self._asks_at, self._na)

    def _array(self, at, n):
        if _np is None:
            raise ImportError("feedhandler_shm: NumPy is not installed (Debian: python3-numpy)")
        return _np.frombuffer(self.flatbuffer, dtype=LEVEL_DTYPE, count=n, offset=at + 4)

    def snapshot(self):
        """The flatc-generated bookfb.Snapshot over this book's FlatBuffer."""
        from bookfb.Snapshot import Snapshot

        return Snapshot.GetRootAs(self.flatbuffer, 0)

    def trading_state_name(self):
        s = self.trading_state
        return TRADING_STATES[s] if s < len(TRADING_STATES) else "TradingState(%d)" % s

    def flag_names(self):
        """Names of the known flag bits set (unknown bits are ignored)."""
        return [n for bit, n in FLAG_NAMES if self.flags & bit]

    def as_dict(self):
        """Every field as plain Python values (levels as lists of Level)."""
        d = {k: getattr(self, k) for k in _FIELDS if not k.startswith("_")}
        d["symbol"] = self.symbol
        d["version"] = self.version
        d["bids"] = self.bids
        d["asks"] = self.asks
        return d

    def __repr__(self):
        return "Book(%s locate=%d seq=%d version=%d bid=%s ask=%s)" % (
            self.symbol, self.locate, self.seq, self.version, self.best_bid(), self.best_ask())


def _field(i, name):
    get = operator.itemgetter(i)
    return property(lambda self: get(self._t), doc="Snapshot field %s (book.fbs)." % name)


for _i, _name in enumerate(_FIELDS):
    if not _name.startswith("_"):
        setattr(Book, _name, _field(_i, _name))
del _i, _name


_table = L.TABLE.unpack_from
_u32 = L.U32.unpack_from
_TABLE_AT4 = L.TABLE_AT + 4
_SYMBOL_AT = L.SYMBOL_AT
_SYMBOL_OFF = L.SYMBOL_AT - (L.TABLE_AT + L.F_SYMBOL)
_BIDS_AT = tuple(L.bids_at(n) for n in range(9))
_BIDS_FIELD = L.TABLE_AT + L.F_BIDS
_ASKS_FIELD = L.TABLE_AT + L.F_ASKS


def decode(data, version, depth):
    """Decode a slot FlatBuffer (bytes this process owns) into a Book.

    The layout version fixes the encoding (proto/shm/encode.go); anything
    else, or a vector longer than depth, is FormatError, so a corrupt file
    cannot make the decoder read out of bounds or return garbage silently.
    """
    n = len(data)
    if n < L.SYMBOL_AT + 4 or not data.startswith(L.PREFIX):
        raise FormatError("snapshot is not layout version %d" % L.LAYOUT_VERSION)
    t = _table(data, _TABLE_AT4)
    sym_len = _u32(data, _SYMBOL_AT)[0]
    if t[0] != _SYMBOL_OFF or sym_len > 8:
        raise FormatError("snapshot symbol out of place")
    bids = _BIDS_AT[sym_len]
    if t[8] != bids - _BIDS_FIELD or bids + 4 > n:
        raise FormatError("snapshot bids out of place")
    nb = _u32(data, bids)[0]
    asks = bids + 8 + nb * 16
    if nb > depth or t[9] != asks - _ASKS_FIELD or asks + 4 > n:
        raise FormatError("snapshot asks out of place")
    na = _u32(data, asks)[0]
    if na > depth or asks + 4 + na * 16 > n:
        raise FormatError("snapshot asks beyond the copy")
    b = Book()
    b.flatbuffer = data
    b.version = version
    b._t = t
    b._sym_len = sym_len
    b._bids_at = bids
    b._nb = nb
    b._asks_at = asks
    b._na = na
    b._bids = None
    b._asks = None
    return b


class Reader:
    """One feed file, mapped read-only. Use ``open``/``open_wait`` to make one.

    Methods raise the exceptions of feedhandler_shm.errors. After close(),
    every method but close (and the ``info``/``path`` attributes, which read
    nothing from the file) raises ReaderClosedError, as do the methods of a
    Follower made from it. A Reader is not meant for concurrent use by
    several threads (each thread opens its own).
    """

    def __init__(self, path, stale_after=None):
        # A relative path is resolved against the working directory once,
        # here: check() looks at the same file after a chdir.
        try:
            path = os.path.abspath(path)
        except OSError as e:  # the working directory was removed
            raise _system_error("open shm %s" % path, e) from None
        self.path = path
        try:
            # Not blocking: a FIFO of that name would block a plain open
            # until a writer came; it is refused below, not being a
            # regular file.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotExistError("open shm %s: feed does not exist" % path) from None
        except PermissionError:
            raise PermissionDeniedError(_permission_message(path, "open")) from None
        except OSError as e:  # EMFILE, ENAMETOOLONG, ...: not the file's format
            raise _system_error("open shm %s" % path, e) from None
        self._mm = None
        self._mv = None
        try:
            try:
                st = os.fstat(fd)
            except OSError as e:  # EIO, EOVERFLOW, ...: as Go's "fstat: %w"
                raise _system_error("open shm %s: fstat" % path, e) from None
            if not statmod.S_ISREG(st.st_mode) or st.st_size < L.HEADER_SIZE:
                raise FormatError("open shm %s: %d bytes, not a feed file" % (path, st.st_size))
            self._ino, self._dev = st.st_ino, st.st_dev
            # The header first, read rather than mapped: MAP_POPULATE faults
            # in every page of the mapping, and tmpfs allocates a page for
            # each hole it faults. A file that is no feed of this layout
            # (another program's sparse shm file under a mistyped name, a
            # feed truncated to a larger size, another layout version)
            # would cost its whole size in memory, kept by the file after
            # open refused it. The mapping's header is checked again below:
            # the file may change in between.
            try:
                header = os.pread(fd, L.HEADER_SIZE, 0)
            except OSError as e:
                raise _system_error("open shm %s: read header" % path, e) from None
            if len(header) < L.HEADER_SIZE:
                raise FormatError("open shm %s: header of %d bytes (truncated since its fstat): not a feed file"
                                  % (path, len(header)))
            self._read_header(header, st.st_size)
            try:
                self._mm = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                                     prot=mmap.PROT_READ)
            except PermissionError:
                raise PermissionDeniedError(_permission_message(path, "mmap")) from None
            except ValueError:
                # mmap checks the length against the file's size again: the
                # file shrank since the fstat above (truncated under the
                # open; the writer never truncates).
                raise FormatError("open shm %s: file shrank below the %d bytes it had at open: not a feed file"
                                  % (path, st.st_size)) from None
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM):
                    raise PermissionDeniedError(_permission_message(path, "mmap")) from None
                raise _system_error("open shm %s: mmap" % path, e) from None
        except BaseException:
            if self._mm is not None:
                self._mm.close()
            raise
        finally:
            os.close(fd)
        self._mv = memoryview(self._mm)
        self._mapped_size = len(self._mm)
        try:
            # The file may have been truncated since its fstat sized the
            # mapping: asked again before the header is read.
            self._mapped("open")
            self._read_header(self._mv, st.st_size)
            self._check_cut("open")
        except BaseException:
            self.close()
            raise
        self._live_start()
        if stale_after is None or stale_after <= 0:
            # In integer ns, as Go and C++ compute it (float seconds would
            # be 1 ns short for some intervals).
            self._stale_ns = max(10 * self._hb_every, 10**9)
        else:
            # Rounded: seconds given to the millisecond or microsecond (1.001)
            # are that many ns, not 1 ns short as int() of the float product.
            self._stale_ns = round(stale_after * 1e9)
        self._known = -1
        self._symbols = {}

    def _read_header(self, mv, size):
        """Validate the header at the start of mv, of a file of size bytes: the
        mapping, or the file's first page read before it is mapped."""
        path = self.path
        if bytes(mv[:8]) != L.MAGIC:
            raise FormatError("open shm %s: magic %r: not a feed file" % (path, bytes(mv[:8])))
        v = L.U32.unpack_from(mv, L.OFF_LAYOUT_VERSION)[0]
        if v != L.LAYOUT_VERSION:
            raise LayoutVersionError("open shm %s: layout version %d, this library reads %d"
                                     % (path, v, L.LAYOUT_VERSION), v, L.LAYOUT_VERSION)
        (_, _, hdr, gen, start, pid, slot_size, cap, depth, jl, _schema, hb_every, index, directory,
         journal, slots, file_size, _ident, max_snap) = L.HEADER.unpack_from(mv, 0)
        trailer = L.U64.unpack_from(mv, L.OFF_TRAILER)[0]
        bad = (
            cap == 0 or cap > L.MAX_LOCATES or depth <= 0 or depth > L.MAX_DEPTH or jl > 1 << 30
            or slot_size > 1 << 20 or max_snap < L.max_snapshot_size(depth)
            or hdr != L.HEADER_SIZE or file_size != size
            or jl == 0 or jl & (jl - 1) != 0
            or slot_size % L.CACHE_LINE != 0 or slot_size < L.SLOT_HEADER + max_snap
            or index != L.HEADER_SIZE or directory < index + L.MAX_LOCATES * 4
            or journal < directory + cap * L.DIR_ENTRY_SIZE or slots < journal + jl * L.RECORD_SIZE
            or slots % L.CACHE_LINE != 0 or journal % L.CACHE_LINE != 0
            or slots + cap * slot_size > file_size
            or pid <= 0 or pid > L.MAX_PID
            or hb_every <= 0 or hb_every > MAX_HEARTBEAT_INTERVAL_NS
            or (trailer != 0 and (trailer != file_size - 8 or trailer % 8 != 0
                                  or trailer < slots + cap * slot_size))
        )
        if bad:
            raise FormatError("open shm %s: inconsistent header: not a feed file" % path)
        self._gen, self._start, self._pid = gen, start, pid
        self._slot_size, self._cap, self._depth = slot_size, cap, depth
        self._jl, self._hb_every = jl, hb_every
        self._index, self._dir, self._journal, self._slots = index, directory, journal, slots
        self._max_snap = max_snap
        self._trailer = trailer

    def _check_cut(self, op):
        """Raise FormatError when the file's trailer (a copy of the generation
        in its last 8 bytes) is no longer the generation: the file was cut
        below its size and grown back (its header, in the first page, may
        survive that), or its end overwritten. A file without a trailer (an
        earlier writer's) is not checked. The caller knows the file covers
        the mapping."""
        if self._trailer == 0:
            return
        t = L.U64.unpack_from(self._mv, self._trailer)[0]
        if t != self._gen:
            raise FormatError("%s shm %s: trailer %#x, generation %#x: file cut below its size and grown back, "
                              "or overwritten, under the writer: not a feed file any more"
                              % (op, self.path, t, self._gen))

    # -- lifecycle -------------------------------------------------------

    def close(self):
        """Unmap the file. Books already read stay valid (they own their bytes);
        any later call raises ReaderClosedError. Closing again does nothing."""
        if self._mv is not None:
            self._mv.release()
            self._mv = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def _closed_error(self, op):
        """The error of a call on a closed Reader (Go: wrapping fs.ErrClosed)."""
        return ReaderClosedError("%s shm %s: reader: file already closed" % (op, self.path))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def info(self):
        return Info(L.LAYOUT_VERSION, self._gen, self._start, self._pid, self._cap, self._depth,
                    self._jl, self._slot_size, self._max_snap, self._hb_every)

    def _mapped(self, op):
        """The mapping (a memoryview), once fstat says that the file still
        covers it: a load from a page past the end of a file truncated under
        the mapping raises SIGBUS, which kills the interpreter (pure Python
        cannot catch it). Every call that reads the mapping asks first: the
        mmap object's own descriptor, one fstat (one system call). A
        truncation between this fstat and the loads that follow still kills
        the interpreter (docs/SHM.md, "A file truncated under a reader")."""
        mv = self._mv
        if mv is None:
            raise self._closed_error(op)
        try:
            size = self._mm.size()
        except OSError as e:
            raise _system_error("%s shm %s: fstat" % (op, self.path), e) from None
        if size < self._mapped_size:
            raise FormatError("%s shm %s: file truncated to %d bytes, %d mapped: not a feed file any more"
                              % (op, self.path, size, self._mapped_size))
        return mv

    def heartbeat_ns(self):
        """The writer's last heartbeat, Unix ns."""
        return L.I64.unpack_from(self._mapped("heartbeat"), L.OFF_HEARTBEAT)[0]

    def check(self):
        """Raise if the writer is not live: RestartedError (a new writer replaced the
        file, or re-initialized it in place: close and open again), FormatError (the mapped file was truncated
        below the size mapped: the writer never does), ClosedError,
        WriterDeadError (process gone or heartbeat older than stale_after).
        Returns None while it is alive."""
        if self._mv is None:
            raise self._closed_error("check")
        self._check_file()
        gone = self._writer_gone()
        if gone is not None:
            raise gone

    def _check_file(self):
        """check without the writer's state (_writer_gone): raise unless the
        mapped file is still the one open read, at its size. check runs it
        first: a file replaced, truncated, re-initialized or cut is said
        before its writer's state."""
        size = None
        try:
            st = os.stat(self.path)
        except OSError:
            pass
        else:
            if st.st_ino != self._ino or st.st_dev != self._dev:
                raise RestartedError("check shm %s: writer restarted" % self.path)
            size = st.st_size
        # Before anything reads the mapping: pages past the end of the file
        # fault (SIGBUS kills the interpreter). A read racing the truncation
        # still faults. The name's stat, when it is the mapped file, has its
        # size; otherwise (the name is gone) mmap.size() fstats the
        # descriptor the mmap object keeps.
        if size is None:
            try:
                size = self._mm.size()
            except OSError:
                pass
        if size is not None and size < len(self._mm):
            raise FormatError("check shm %s: file truncated to %d bytes, %d mapped: not a feed file any more"
                              % (self.path, size, len(self._mm)))
        # The same file, re-initialized in place (a copy over it, a writer
        # that opened the name with O_TRUNC rather than renaming its file
        # into place): the static header never changes in the file open
        # read, so another generation is another writer's file, whose
        # layout this Reader does not have.
        gen = L.U64.unpack_from(self._mv, L.OFF_GENERATION)[0]
        if gen != self._gen:
            raise RestartedError("check shm %s: generation %#x, %#x at open: file re-initialized in place: "
                                 "writer restarted" % (self.path, gen, self._gen))
        # The same file, cut below its size and grown back: the trailer tells.
        self._check_cut("check")

    def _writer_gone(self):
        """check without the file's replacement: ClosedError or
        WriterDeadError, returned (not raised), if the writer of the mapped
        file closed it or died, even when a new writer has replaced the file
        since; None while it is live.

        The writer's pid not existing here is death only with a heartbeat
        older than two heartbeat intervals: a live writer in another pid
        namespace (a container sharing /dev/shm) has a pid this process
        cannot see, and keeps beating. So kill(pid, 0) is asked only then,
        as Go and C++ ask it: a look at a writer that beats makes no system
        call. Otherwise a heartbeat older than stale_after is."""
        if L.U32.unpack_from(self._mv, L.OFF_STATE)[0] == L.STATE_CLOSED:
            return ClosedError("check shm %s: writer closed the feed" % self.path)
        age = self._heartbeat_age()
        if age > 2 * self._hb_every:
            try:
                os.kill(self._pid, 0)
            except ProcessLookupError:
                return WriterDeadError("check shm %s: pid %d gone, heartbeat %.3fs old: writer is dead"
                                       % (self.path, self._pid, age / 1e9))
            except PermissionError:
                pass  # alive, another user's process
        if age > self._stale_ns:
            return WriterDeadError("check shm %s: heartbeat %.3fs old: writer is dead" % (self.path, age / 1e9))
        return None

    # Liveness (docs/SHM.md, "Writer liveness"): the writer is judged by
    # whether its heartbeat changes, timed on the monotonic clock. The
    # heartbeat is the writer's CLOCK_REALTIME; compared with this process's,
    # a step of either clock would read as a live writer going stale at once,
    # or a dead one looking fresh. Its realtime age counts only at open and to
    # place a change seen within the time since the previous look; between
    # changes the age grows on the monotonic clock.

    def _live_start(self):
        """The look at open: the heartbeat's realtime age (0 if in the future)
        places the beat. The clocks are read before the heartbeat, as in
        _heartbeat_age."""
        r, m = _real_ns(), _mono_ns()
        hb = L.I64.unpack_from(self._mv, L.OFF_HEARTBEAT)[0]
        self._live_hb, self._live_seen, self._live_beat = hb, m, m - max(r - hb, 0)

    def _heartbeat_age(self):
        """Loads the heartbeat and returns how long ago (ns) the writer stored
        it: a value other than the last one seen was stored since the previous
        look, when its realtime age says, kept within that interval (a clock
        step cannot move it further); the same value has aged by the monotonic
        clock since.

        The clocks are read first, then the heartbeat: a reader that loses the
        CPU in between (a loaded machine, a stopped process, another thread
        holding the GIL) loads a heartbeat at least as new as the clocks'
        readings, and the age is at most the true one. The other way round its
        own stall was the writer's age: past the stale limit, WriterDeadError
        for a writer that had beaten all along."""
        r, m = _real_ns(), _mono_ns()
        hb = L.I64.unpack_from(self._mv, L.OFF_HEARTBEAT)[0]
        if hb != self._live_hb:
            since = max(m - self._live_seen, 0)
            self._live_hb, self._live_beat = hb, m - min(max(r - hb, 0), since)
        self._live_seen = max(self._live_seen, m)
        return m - self._live_beat

    def state(self):
        """The writer's state as (name, message): ("live", ""), or ("restarted" |
        "closed" | "dead", the error message)."""
        if self._mv is None:
            raise self._closed_error("state")
        try:
            self.check()
        except RestartedError as e:
            return "restarted", str(e)
        except ClosedError as e:
            return "closed", str(e)
        except WriterDeadError as e:
            return "dead", str(e)
        return "live", ""

    # -- directory -------------------------------------------------------

    def instruments(self):
        """Registered instruments in registration order, but for retired slots
        (a locate bound to another symbol since: flags byte 3, bit 0)."""
        return self._instruments(self._mapped("instruments"))

    def _instruments(self, mv):
        n = min(L.U32.unpack_from(mv, L.OFF_COUNT)[0], self._cap)
        out = []
        for slot in range(n):
            off = self._dir + slot * L.DIR_ENTRY_SIZE
            e = bytes(mv[off: off + L.DIR_ENTRY_SIZE])
            if e[L.DIR_FLAGS] & L.DIR_RETIRED:
                continue
            out.append(Instrument(e[0] | e[1] << 8, e[8: 8 + min(e[2], 8)].decode("utf-8", "surrogateescape")))
        return out

    def lookup(self, symbol):
        """The locate of symbol (no padding), or None.

        The symbol map is built again when the instrument count changes; a
        retirement without a new entry (a rebind that found no slot left)
        keeps the count, so a symbol found is checked against the entry its
        locate is bound to now, as the Go reader does."""
        mv = self._mapped("lookup")
        n = L.U32.unpack_from(mv, L.OFF_COUNT)[0]
        if n != self._known:
            self._scan_symbols(n)
        locate = self._symbols.get(symbol)
        if locate is not None and not self._bound_to(locate, symbol):
            self._scan_symbols(L.U32.unpack_from(mv, L.OFF_COUNT)[0])
            locate = self._symbols.get(symbol)
        return locate

    def _scan_symbols(self, n):
        self._symbols = {}
        for ins in self._instruments(self._mv):
            self._symbols[ins.symbol] = ins.locate  # as Go: the last wins (the writer keeps one live entry per symbol)
        self._known = n

    def _bound_to(self, locate, symbol):
        slot = self._slot_of(locate)
        if slot < 0:
            return False
        off = self._dir + slot * L.DIR_ENTRY_SIZE
        e = bytes(self._mv[off: off + L.DIR_ENTRY_SIZE])
        return not e[L.DIR_FLAGS] & L.DIR_RETIRED and e[8: 8 + min(e[2], 8)].decode("utf-8", "surrogateescape") == symbol

    def locates(self):
        """Registered locates, ascending."""
        if self._mv is None:
            raise self._closed_error("locates")
        return sorted(i.locate for i in self.instruments())

    def _slot_of(self, locate):
        # None is lookup's answer for a symbol not registered: an unknown
        # locate, as Go's Lookup's 0 and false read.
        if locate is None or not 0 <= locate < L.MAX_LOCATES:
            return -1
        v = L.U32.unpack_from(self._mv, self._index + 4 * locate)[0]
        if v == 0 or v > self._cap:
            return -1
        return v - 1

    def version(self, locate):
        """How many snapshots of locate were published (0: none, or unknown locate)."""
        mv = self._mapped("version")
        slot = self._slot_of(locate)
        if slot < 0:
            return 0
        return L.U64.unpack_from(mv, self._slots + slot * self._slot_size)[0] >> 1

    # -- reading ---------------------------------------------------------

    def read_bytes(self, locate):
        """The latest consistent snapshot of locate as (flatbuffer bytes, version).

        The seqlock protocol: load seq (retry while odd), load len, copy len
        bytes, load seq again; equal means no publish overlapped the copy.
        Raises UnknownLocateError, NoDataError, FormatError (a published
        length beyond the file's max_snapshot: the writer stores none), and,
        for a slot that stays locked, WriterDeadError / ClosedError (writer
        died or closed inside a publish) or BusyError (live writer, over a
        second).
        """
        mv, mm = self._mapped("read"), self._mm
        slot = self._slot_of(locate)
        if slot < 0:
            if locate is None:
                raise UnknownLocateError("read shm locate None (lookup's answer for a symbol not registered): unknown locate")
            raise UnknownLocateError("read shm locate %s: unknown locate" % (locate,))
        base = self._slots + slot * self._slot_size
        data_at = base + L.SLOT_HEADER
        max_snap = self._max_snap
        seq_len = L.SEQ_LEN.unpack_from
        seq_only = L.U64.unpack_from
        spin = 0
        start = 0.0
        gone = None  # check(): the writer closed or died; the slot changes no more
        while True:
            s1, n = seq_len(mv, base)
            if s1 == 0:
                raise NoDataError("read shm locate %d: no snapshot published yet" % locate)
            if not s1 & 1:
                if n > max_snap:
                    raise FormatError("read shm locate %d: snapshot length %d beyond the file's %d: file corrupt"
                                      % (locate, n, max_snap))
                data = mm[data_at: data_at + n]
                if seq_only(mv, base)[0] == s1:
                    return data, s1 >> 1
            if gone is not None:
                # The attempt after the writer was found gone failed too: it
                # left the slot odd, inside a publish.
                raise type(gone)("read shm locate %d: %s" % (locate, gone)) from None
            spin += 1
            if spin < 256:
                continue
            os.sched_yield()
            if spin % 1024:
                continue
            # A writer that died or closed inside a publish never releases the
            # slot. One gone between publishes left it readable: one more
            # attempt reads it. The mapped file's own writer is asked about,
            # not the file's name: a new writer may have replaced the file
            # since the old one died inside a publish.
            self._mapped("read")
            gone = self._writer_gone()
            if gone is not None:
                continue
            if not start:
                start = time.monotonic()
            elif time.monotonic() - start > BUSY_TIMEOUT:
                raise BusyError("read shm locate %d: slot busy" % locate)

    def read(self, locate):
        """The latest consistent Book of locate (see read_bytes for the errors)."""
        data, version = self.read_bytes(locate)
        try:
            return decode(data, version, self._depth)
        except FormatError as e:
            raise FormatError("read shm locate %d: %s" % (locate, e)) from None

    def read_symbol(self, symbol):
        """The latest consistent Book of symbol, never another symbol's.

        It looks the symbol's locate up, then reads the locate. A session
        change between the two (the writer rebinding the locate to another
        symbol, or the symbol to another locate) leaves the locate with
        another symbol's book, or none: every slot holds one symbol's
        snapshots, so the book's symbol tells, and read_symbol looks up
        again once (as Go's ReadSymbol). A symbol whose locate changed again
        meanwhile is UnknownLocateError."""
        if self._mv is None:
            raise self._closed_error("read")
        for again in (False, True):
            locate = self.lookup(symbol)
            if locate is None:
                raise UnknownLocateError("read shm %r: unknown symbol" % symbol)
            try:
                b = self.read(locate)
            except (UnknownLocateError, NoDataError):
                if again:
                    raise
                continue
            if b.symbol == symbol:
                return b
        raise UnknownLocateError("read shm %r: locate %d bound to %r while it was read" % (symbol, locate, b.symbol))

    def books(self):
        """Every registered instrument's latest Book, in locate order; instruments
        with nothing published are left out."""
        if self._mv is None:
            raise self._closed_error("read")
        out = []
        for locate in self.locates():
            try:
                out.append(self.read(locate))
            except NoDataError:
                continue
        return out

    def _head(self):
        return L.U64.unpack_from(self._mv, L.OFF_HEAD)[0]

    def follow(self):
        """A Follower of the change journal, positioned at its head."""
        return Follower(self)


class Follower:
    """Follows the change journal of a Reader (Go shm.Follower).

    To start from a complete picture: follow() first, then read every
    instrument, then poll; an update published in between shows up in both.
    """

    def __init__(self, reader):
        reader._mapped("follow")
        self._r = reader
        self._next = reader._head()
        self.lost = 0
        self.overruns = 0
        # time.monotonic() of wait's last writer check; None: never checked
        # (the next wait checks at once). Kept across waits, so that a loop
        # of waits shorter than check_every still checks every check_every.
        self._last_check = None
        # The poll's look at the writer's liveness (_look): the empty polls
        # to the next look, how many that countdown started from, and the
        # monotonic ns of the last look (None: none).
        self._until_look = 0
        self._look_every = 1
        self._looked_at = None

    def pending(self):
        """Records published and not yet polled (uint64 arithmetic, as Go and
        C++: a head below the follower's position, a corrupt file, wraps)."""
        self._r._mapped("pending")
        return (self._r._head() - self._next) & _U64_MASK

    def _overrun(self, updates):
        # A file re-initialized in place by a restarted writer: its head
        # starts again, below the follower's position. A restart, as check()
        # says, not an overrun: a rescan would read another writer's slots
        # through this file's layout. The position stays.
        gen = L.U64.unpack_from(self._r._mv, L.OFF_GENERATION)[0]
        if gen != self._r._gen:
            return RestartedError("poll shm %s: generation %#x, %#x at open: file re-initialized in place: "
                                  "writer restarted" % (self._r.path, gen, self._r._gen))
        head = self._r._head()
        lost = head - self._next if head > self._next else 0
        self.lost += lost
        self._next = head
        self.overruns += 1
        return OverrunError("follow shm %s: journal overrun, %d records lost: rescan every instrument"
                            % (self._r.path, lost), updates, lost)

    def poll(self, max_records=256):
        """New journal records (list of Update), without blocking.

        Raises OverrunError when the follower fell more than a journal length
        behind; the error carries the records read before the gap, and the
        follower continues from the head (rescan every instrument). Once the
        writer closed the feed, a poll that finds no new record raises
        ClosedError (RestartedError first when a new writer replaced the
        file), after the records published before the close, as Go's and
        C++'s polls do; with max_records 0 it returns []. A writer that died
        (killed, the OOM killer) stores nothing: a poll that finds nothing new
        looks at its heartbeat every few empty polls (about once a heartbeat
        interval, at most every MAX_LOOK_EVERY) and, once the writer is dead as
        check() says it (its pid gone and two heartbeats missed, or the
        heartbeat older than stale_after), raises check()'s error,
        WriterDeadError (RestartedError first when a new writer replaced the
        file), and so on at every empty poll until the writer beats again.
        """
        r = self._r
        mv = r._mapped("poll")
        u64 = L.U64.unpack_from
        jl, mask, journal = r._jl, r._jl - 1, r._journal
        head = u64(mv, L.OFF_HEAD)[0]
        nxt = self._next
        # head - nxt as a uint64, as Go and C++ compute it: a head below the
        # follower's position (a corrupt file: the writer's head only
        # grows) is an overrun too, not "nothing new".
        if (head - nxt) & _U64_MASK > jl:
            raise self._overrun([])
        out = []
        new = tuple.__new__
        while nxt < head and len(out) < max_records:
            off = journal + (nxt & mask) * L.RECORD_SIZE
            want = nxt + 1
            s1 = u64(mv, off)[0]
            if s1 != want:
                self._next = nxt
                if s1 != L.STAMP_BUSY and s1 > want:
                    raise self._overrun(out)
                if (u64(mv, L.OFF_HEAD)[0] - nxt) & _U64_MASK > jl:
                    raise self._overrun(out)
                break  # claimed, not written yet: poll again later
            d = u64(mv, off + 8)[0]
            if u64(mv, off)[0] != s1:
                self._next = nxt
                raise self._overrun(out)
            out.append(new(Update, (d >> 48, d & L.VERSION_MASK)))
            nxt += 1
        self._next = nxt
        if not out and max_records > 0:
            if L.U32.unpack_from(mv, L.OFF_STATE)[0] == L.STATE_CLOSED:
                self._stopped(r._writer_gone())
            # A dead writer stores nothing: a countdown in the follower,
            # no load of the mapping, brings the look.
            self._until_look -= 1
            if self._until_look <= 0:
                self._look()
        return out

    def _look(self):
        """A poll's look at the writer's liveness, on its empty path every
        _look_every polls: check()'s liveness test (the clocks, the heartbeat,
        and kill(pid, 0) once two heartbeats are missed), run once, and once
        that says dead, what _stopped raises of it. The next look comes _look_every empty
        polls on, as many as the follower made in a heartbeat interval at the
        rate since the previous look (1 to MAX_LOOK_EVERY): a follower that
        polls slowly still looks about once an interval, a fast one rarely
        reads a clock. Once the writer is dead, at the next empty poll, which
        raises again (or nothing, once it beats again). As Go's and C++'s."""
        r = self._r
        now = _mono_ns()
        if self._looked_at is not None:
            elapsed = now - self._looked_at
            every = self._look_every * r._hb_every // elapsed if elapsed > 0 else MAX_LOOK_EVERY
            self._look_every = min(max(every, 1), MAX_LOOK_EVERY)
        self._looked_at = now
        gone = r._writer_gone()
        if gone is None:
            self._until_look = self._look_every
            return
        self._look_every = self._until_look = 1
        self._stopped(gone)

    def _stopped(self, gone):
        """What poll raises once the writer closed the feed, or its look found
        it dead, and nothing new came: gone, _writer_gone's error (ClosedError
        or WriterDeadError), after check()'s tests of the file (_check_file:
        RestartedError first when a new writer replaced the file), so that
        the poll raises what check() raises without running the liveness
        test a second time; OverrunError instead at a hole (_at_hole)."""
        self._r._check_file()
        if gone is None:
            return
        if self._at_hole(gone):
            raise self._overrun([])
        raise gone

    def _at_hole(self, e):
        """Whether a follower that found nothing new, told e by check(),
        stopped at a record the writer claimed and, closed or dead, will never
        write (a shared-mode publisher stopped between its claim and its
        stores): the records behind it are never delivered, so the follower
        raises OverrunError for them (lost: the caller rescans) before e. A
        poll's (_stopped) and a wait's check alike."""
        return isinstance(e, (ClosedError, WriterDeadError)) and self._r._head() > self._next

    def wait(self, timeout=1.0, max_records=256, spin=1000, sleep=50e-6, check_every=0.1):
        """poll that blocks until a record arrives or timeout seconds pass (then []).

        Spins ``spin`` polls, then yields, then sleeps ``sleep`` seconds between
        polls, and checks the writer every ``check_every`` seconds: a dead,
        closed or restarted writer ends the wait with WriterDeadError,
        ClosedError or RestartedError, after the records it published first
        (a file truncated under the mapping: FormatError, from the fstat each
        poll makes first; see Reader._mapped). When a dead or closed writer left
        a record it claimed unwritten, the records behind it cannot be
        delivered: OverrunError for them (rescan), then the writer's state
        at the next wait.
        The time of the last check is the follower's, not the call's: the
        first wait that finds nothing checks at once, and a loop of waits
        shorter than check_every (or of timeout 0) checks every check_every.
        A spin, sleep or check_every of 0 or less means the default (1000
        polls, 50 us, 0.1 s), as Go's and C++'s WaitOptions read 0 (a check
        is a stat and a kill; on every pass it would cost more than the
        poll). A wait that must not spin passes spin=1. A max_records of 0
        or less can return no record, so wait does not block: it returns
        poll's result at once ([] or
        OverrunError), as Go's Wait with an empty slice and C++'s with a
        capacity of 0 do.
        """
        if max_records <= 0:
            return self.poll(max_records)
        if spin <= 0:
            spin = 1000
        if sleep <= 0:
            sleep = 50e-6
        if check_every <= 0:
            check_every = 0.1
        for _ in range(spin):
            out = self.poll(max_records)
            if out:
                return out
        start = time.monotonic()
        yields = 0
        while True:
            out = self.poll(max_records)
            if out:
                return out
            t = time.monotonic()
            if self._last_check is None or t - self._last_check >= check_every:
                self._last_check = t
                try:
                    self._r.check()
                except (WriterDeadError, ClosedError, RestartedError) as e:
                    out = self.poll(max_records)
                    if out:
                        return out
                    if self._at_hole(e):
                        self._last_check = None  # the next wait checks at once and says why
                        raise self._overrun([]) from None
                    raise
            if t - start >= timeout:
                return []
            if yields < 100:
                yields += 1
                os.sched_yield()
            else:
                time.sleep(sleep)


def open(name, stale_after=None):  # noqa: A001 - mirrors shm.Open
    """Map the feed ``name`` (bare name under /dev/shm, or a path) read-only.

    A relative path is resolved against the working directory once, at open
    (``Reader.path`` is absolute).

    Raises NotExistError (writer not started: retry, or open_wait),
    PermissionDeniedError, FormatError, LayoutVersionError, SystemCallError
    (an OSError with its errno: no descriptor or memory left, ...). Succeeds on a
    closed or dead writer's file so its last books stay readable; check()
    tells the writer's state. stale_after (seconds) is how old the heartbeat
    may get; default 10 heartbeat intervals, at least 1 s.
    """
    return Reader(path_of(name), stale_after)


# What an open_wait that gave up asks to check, in the Go and C++ readers'
# words too.
NOT_EXIST_HINT = "is the writer, feedhandler run, running? its feed config's shm.name must name this file"


def _duration(seconds):
    """seconds as Go prints a duration rounded to the millisecond below a
    minute: "3ms", "1.5s", "2s" (the C++ reader's put_duration)."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    if abs(ms) < 1000:
        return "%dms" % ms
    return ("%.3f" % (ms / 1000)).rstrip("0").rstrip(".") + "s"


def open_wait(name, timeout, poll=0.05, stale_after=None):
    """open, retrying every poll seconds (0 or less: 1 ms, as Go and C++ read
    it) while the feed does not exist, until timeout. Then its NotExistError
    says how long it waited and what to check: "open shm /dev/shm/NAME:
    waited 60s: feed does not exist (is the writer, feedhandler run,
    running? ...)"."""
    if poll <= 0:
        poll = 0.001
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open(name, stale_after)
        except NotExistError:
            if time.monotonic() >= deadline:
                path = os.path.abspath(path_of(name))  # as Reader resolved it a moment ago
                raise NotExistError("open shm %s: waited %s: feed does not exist (%s)"
                                    % (path, _duration(timeout), NOT_EXIST_HINT)) from None
        time.sleep(poll)
