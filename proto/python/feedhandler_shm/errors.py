"""Exceptions of the feed reader, one class per situation (docs/SHM.md).

Every exception raised by this package derives from ShmError; the classes
mirror the Go reader's sentinels (proto/shm ErrNotExist, ErrFormat, ...), so
``except WriterDeadError`` here is ``errors.Is(err, shm.ErrWriterDead)`` there.
"""


class ShmError(Exception):
    """Base class of every error this package raises."""


class NotExistError(ShmError, FileNotFoundError):
    """No feed file of that name: the writer has not created it yet (Go ErrNotExist)."""


class PermissionDeniedError(ShmError, PermissionError):
    """The feed file exists but this process may not read it (EACCES/EPERM)."""


class FormatError(ShmError):
    """The file is not a feed file, or is truncated or inconsistent (Go ErrFormat)."""


class LayoutVersionError(ShmError):
    """The file has another layout version than this reader (Go ErrLayoutVersion)."""

    def __init__(self, message, have, want):
        super().__init__(message)
        self.have = have
        self.want = want


class WriterDeadError(ShmError):
    """The writer's process is gone or its heartbeat is stale (Go ErrWriterDead)."""


class RestartedError(ShmError):
    """A new writer replaced the file: close the reader and open again (Go ErrRestarted)."""


class ClosedError(ShmError):
    """The writer closed the feed; the last books stay readable (Go ErrClosed)."""


class OverrunError(ShmError):
    """A follower fell more than a journal length behind (Go ErrOverrun).

    ``updates`` holds the records read before the gap (deliver them), ``lost``
    how many records this overrun skipped. The follower is already positioned
    at the journal head: rescan every instrument (Reader.version / read).
    """

    def __init__(self, message, updates, lost):
        super().__init__(message)
        self.updates = updates
        self.lost = lost


class UnknownLocateError(ShmError, KeyError):
    """The locate or symbol is not registered (Go ErrUnknownLocate)."""

    def __str__(self):
        return Exception.__str__(self)


class NoDataError(ShmError):
    """The instrument is registered but nothing was published yet (Go ErrNoData)."""


class BusyError(ShmError):
    """A live writer held a slot locked for over a second (Go ErrBusy)."""


class SystemCallError(ShmError, OSError):
    """A system call failed for a reason that says nothing about the file
    (no descriptor or memory left, the working directory removed, ...): an
    OSError with its errno (Go: the wrapped os error; C++ Error::System).
    Not FormatError: the file may be a good feed; retry when the cause is
    gone."""


class ReaderClosedError(ShmError, ValueError):
    """This Reader was closed (Reader.close): no method reads the file any more
    (Go: an error wrapping fs.ErrClosed). Not ClosedError, which is the writer's
    close of the feed."""
