"""Pure-Python reader of feedhandler's shared-memory order books.

    import feedhandler_shm as shm
    with shm.open("itch") as r:           # /dev/shm/itch; NotExistError until the writer starts
        book = r.read_symbol("AAPL")      # consistent copy (seqlock), a Book
        print(book.best_bid(), book.seq, book.version)
        f = r.follow()
        for u in f.wait(timeout=1.0):     # Update(locate, version)
            ...

Errors (feedhandler_shm.errors, one class per situation, all ShmError):
NotExistError, PermissionDeniedError, FormatError, LayoutVersionError,
WriterDeadError, RestartedError, ClosedError, OverrunError,
UnknownLocateError, NoDataError, BusyError, SystemCallError (an OSError:
a system call failed for a reason other than the file), ReaderClosedError (a call on a
Reader, or its Follower, after Reader.close). The contract is docs/SHM.md.
"""

from .errors import (  # noqa: F401
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
    ShmError,
    SystemCallError,
    UnknownLocateError,
    WriterDeadError,
)
from .layout import LAYOUT_VERSION  # noqa: F401
from .reader import (  # noqa: F401
    LEVEL_DTYPE,
    ORDERED_LOADS,
    Book,
    Follower,
    Info,
    Instrument,
    Level,
    Reader,
    Update,
    decode,
    open,
    open_wait,
    path_of,
)
from .booksjson import book_entries, books_json  # noqa: F401

__all__ = [
    "open", "open_wait", "path_of", "Reader", "Follower", "Book", "Level", "Update", "Info",
    "Instrument", "LEVEL_DTYPE", "ORDERED_LOADS", "LAYOUT_VERSION", "decode", "book_entries", "books_json",
    "ShmError", "NotExistError", "PermissionDeniedError", "FormatError", "LayoutVersionError",
    "WriterDeadError", "RestartedError", "ClosedError", "OverrunError", "UnknownLocateError",
    "NoDataError", "BusyError", "ReaderClosedError", "SystemCallError",
]
