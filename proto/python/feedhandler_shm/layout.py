"""Byte layout of a feed file, layout version 1 (docs/SHM.md).

Constants only: offsets and precompiled Structs. Nothing here touches a file.
"""

import struct

LAYOUT_VERSION = 1
SCHEMA_VERSION = 1
MAGIC = b"FHBOOKS\x00"
FILE_IDENTIFIER = b"FHB1"
DIR = "/dev/shm"
MAX_LOCATES = 1 << 16
MAX_DEPTH = 4096
# The writer pid in a header is 1 to Linux's largest (below PID_MAX_LIMIT,
# 2**22); os.kill of 0 or a negative pid would signal a process group.
MAX_PID = (1 << 22) - 1

CACHE_LINE = 64
PAGE_SIZE = 4096
HEADER_SIZE = PAGE_SIZE
SLOT_HEADER = CACHE_LINE
RECORD_SIZE = 16
DIR_ENTRY_SIZE = 16
# Directory entry: locate (uint16), symbol length, flags, 4 reserved bytes,
# symbol (8 bytes, space padded).
DIR_FLAGS = 3  # offset of the flags byte
DIR_RETIRED = 1  # flags bit: the slot is retired (its locate was bound to another symbol, or its symbol moved)
VERSION_MASK = (1 << 48) - 1
STAMP_BUSY = (1 << 64) - 1

# Header: the static fields, offsets 0..111, read once at open.
HEADER = struct.Struct("<8sIIQqIIIIIIqQQQQQ4sI")
OFF_LAYOUT_VERSION = 8
OFF_GENERATION = 16  # uint64, random, new for every file a writer creates
# uint64: offset of the trailer (a copy of the generation in the file's last
# 8 bytes); 0 in files of earlier writers, without one.
OFF_TRAILER = 112
# Dynamic header fields, each on its own 128-byte block.
OFF_HEARTBEAT = 256  # int64 Unix ns
OFF_STATE = 264  # uint32: 0 open, 1 closed
OFF_HEAD = 384  # uint64 journal records ever appended
OFF_COUNT = 512  # uint32 instruments registered
STATE_OPEN = 0
STATE_CLOSED = 1

# Every load of a field that another process writes goes through one of
# these. CPython swaps its native unpackers into the little-endian table on
# little-endian machines, so each of these is one memcpy of 8 or 4 bytes
# from an aligned address: one load instruction (see docs/SHM.md, "Python
# reader", for why that is enough on x86-64).
U64 = struct.Struct("<Q")
I64 = struct.Struct("<q")
U32 = struct.Struct("<I")
SEQ_LEN = struct.Struct("<QI")  # slot seq, then len: loaded in this order

# The slot FlatBuffer as the Go writer lays it out (proto/shm/encode.go).
# The layout version fixes this encoding, so the fast decoder can read the
# table with one unpack after checking the fixed prefix.
VTABLE_AT = 8
TABLE_AT = 48
TABLE_LEN = 92
SYMBOL_AT = TABLE_AT + TABLE_LEN  # 140
LEVEL_SIZE = 16
F_SYMBOL, F_BIDS, F_ASKS = 4, 64, 68
# Field offsets in the table, in schema (id) order: locate, symbol, seq,
# exchange_time, receive_time, publish_time, trading_state, flags, bids,
# asks, bid_levels, ask_levels, last_trade_price, last_trade_shares, volume,
# messages, system_event.
FIELD_OFFSETS = (84, 4, 8, 16, 24, 32, 88, 86, 64, 68, 72, 76, 80, 40, 48, 56, 89)
VTABLE_LEN = 4 + 2 * len(FIELD_OFFSETS)
# From TABLE_AT + 4: symbol uoffset, seq, exchange_time, receive_time,
# publish_time, last_trade_shares, volume, messages, bids uoffset, asks
# uoffset, bid_levels, ask_levels, last_trade_price, locate, flags,
# trading_state, system_event.
TABLE = struct.Struct("<IQQqqQQQIIIIIHHBB")
LEVEL = struct.Struct("<IIQ")  # price, orders, shares (book.fbs struct Level)


def _prefix():
    b = bytearray(TABLE_AT + 4)
    struct.pack_into("<I", b, 0, TABLE_AT)
    b[4:8] = FILE_IDENTIFIER
    struct.pack_into("<HH", b, VTABLE_AT, VTABLE_LEN, TABLE_LEN)
    struct.pack_into("<%dH" % len(FIELD_OFFSETS), b, VTABLE_AT + 4, *FIELD_OFFSETS)
    struct.pack_into("<I", b, TABLE_AT, TABLE_AT - VTABLE_AT)
    return bytes(b)


# PREFIX is the first 52 bytes of every slot FlatBuffer: root offset, file
# identifier, vtable, the table's soffset.
PREFIX = _prefix()
PREFIX_LEN = len(PREFIX)


def bids_at(sym_len):
    """Offset of the bid vector's count after a symbol of sym_len bytes."""
    end = SYMBOL_AT + 4 + sym_len + 1
    return end + (12 - end % 8) % 8


def max_snapshot_size(depth):
    return bids_at(8) + 4 + depth * LEVEL_SIZE + 4 + 4 + depth * LEVEL_SIZE
