package xsk

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/mem"
)

const hugePageSize = 2 << 20

// UMEMConfig shapes a UMEM. Zero values pick the defaults shown.
type UMEMConfig struct {
	FrameSize int // bytes per frame: 2048 or 4096 (default 4096)
	Frames    int // number of frames (default 4096)
	Headroom  int // bytes the kernel leaves before each frame's data (default 0)
	Log       zerolog.Logger
}

// UMEM is the packet buffer area shared by the kernel and one or more
// sockets: Frames frames of FrameSize bytes in anonymous mmapped memory
// (never the Go heap). Sockets take disjoint ranges of frames from it.
type UMEM struct {
	mem       []byte // the frames
	mapping   []byte // the whole mmapped region
	frameSize uint32
	frames    int
	headroom  uint32
	huge      bool
	log       zerolog.Logger

	mu       sync.Mutex
	next     int     // first frame not yet handed to a socket
	owner    *Socket // the socket the UMEM is registered with
	sockets  int     // open sockets using the UMEM
	closed   bool
	implicit bool // created by Open for a single socket: closed with it
}

// NewUMEM maps the buffer area. It tries huge pages (MAP_HUGETLB) first and
// falls back to normal pages with transparent huge pages requested
// (MADV_HUGEPAGE), logging the fallback.
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	if cfg.FrameSize == 0 {
		cfg.FrameSize = 4096
	}
	if cfg.Frames == 0 {
		cfg.Frames = 4096
	}
	if cfg.FrameSize != 2048 && cfg.FrameSize != 4096 {
		return nil, fmt.Errorf("new umem: frame size %d: want 2048 or 4096", cfg.FrameSize)
	}
	if cfg.Frames < 0 || cfg.Headroom < 0 || cfg.Headroom > cfg.FrameSize-unix.XDP_PACKET_HEADROOM-128 {
		return nil, fmt.Errorf("new umem: frames %d, headroom %d out of range", cfg.Frames, cfg.Headroom)
	}
	size := cfg.FrameSize * cfg.Frames
	u := &UMEM{frameSize: uint32(cfg.FrameSize), frames: cfg.Frames, headroom: uint32(cfg.Headroom), log: cfg.Log}
	hugeSize := (size + hugePageSize - 1) &^ (hugePageSize - 1)
	m, err := unix.Mmap(-1, 0, hugeSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_HUGETLB|unix.MAP_POPULATE)
	if err == nil {
		// Read by this process only after the kernel wrote a packet
		// through its own mapping: the receive thread's first load from
		// each page would trap (mem.Touch).
		mem.Touch(m)
		u.mem, u.mapping, u.huge = m[:size:size], m, true
		u.log.Debug().Int("bytes", hugeSize).Msg("umem on huge pages")
		return u, nil
	}
	hugeErr := err
	m, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("new umem: mmap %d bytes: %w", size, err)
	}
	thp := unix.Madvise(m, unix.MADV_HUGEPAGE)
	mem.Touch(m)
	u.mem, u.mapping = m, m
	u.log.Info().Err(hugeErr).Bool("thp", thp == nil).Int("bytes", size).
		Msg("umem: huge pages unavailable (raise vm.nr_hugepages), using normal pages")
	return u, nil
}

// HugePages reports whether the UMEM sits on explicit huge pages.
func (u *UMEM) HugePages() bool { return u.huge }

// FrameSize returns the bytes per frame.
func (u *UMEM) FrameSize() int { return int(u.frameSize) }

// Frames returns the number of frames.
func (u *UMEM) Frames() int { return u.frames }

// Free returns how many frames are not yet taken by a socket.
func (u *UMEM) Free() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.frames - u.next
}

// Data returns the n bytes at UMEM address addr (as found in a Desc): a view
// valid until the frame is given back to the kernel.
func (u *UMEM) Data(addr uint64, n uint32) []byte {
	return u.mem[addr : addr+uint64(n) : addr+uint64(n)]
}

// Meta returns the n bytes just before the data at UMEM address addr:
// where AF_XDP puts the XDP metadata an XDP program reserved in front of
// the frame (bpf_xdp_adjust_meta). The bytes are whatever the buffer held
// when the program reserved no metadata, so their content must identify
// itself. Meta returns nil when fewer than n bytes of the frame precede
// addr. The view is valid until the frame is given back to the kernel.
func (u *UMEM) Meta(addr uint64, n int) []byte {
	start := addr - addr%uint64(u.frameSize)
	if n < 0 || addr-start < uint64(n) {
		return nil
	}
	return u.mem[addr-uint64(n) : addr : addr]
}

// take reserves n frames for a socket and returns the first frame's index.
func (u *UMEM) take(n int) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return 0, errors.New("umem closed")
	}
	if u.frames-u.next < n {
		return 0, fmt.Errorf("umem has %d free frames, socket needs %d", u.frames-u.next, n)
	}
	first := u.next
	u.next += n
	u.sockets++
	return first, nil
}

func (u *UMEM) reg() unix.XDPUmemReg {
	return unix.XDPUmemReg{
		Addr:     uint64(uintptr(unsafe.Pointer(&u.mem[0]))),
		Len:      uint64(len(u.mem)),
		Size:     u.frameSize,
		Headroom: u.headroom,
	}
}

// Close unmaps the UMEM. Every socket using it must be closed first.
func (u *UMEM) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	if u.sockets > 0 {
		return fmt.Errorf("close umem: %d sockets still open", u.sockets)
	}
	u.closed = true
	mem := u.mapping
	u.mem, u.mapping = nil, nil
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("close umem: %w", err)
	}
	return nil
}

// giveBack undoes take for a socket that failed to open: its frames return
// to the UMEM when no other socket took frames since.
func (u *UMEM) giveBack(first, n int) error {
	u.mu.Lock()
	if u.next == first+n {
		u.next = first
	}
	u.mu.Unlock()
	return u.release(nil)
}

// release returns a socket's claim on the UMEM (s nil: a socket that never
// opened) and closes an implicit UMEM with its last socket. The frames of a
// closed socket are not handed out again.
func (u *UMEM) release(s *Socket) error {
	u.mu.Lock()
	u.sockets--
	if s != nil && u.owner == s {
		u.owner = nil
	}
	last := u.sockets == 0 && u.implicit
	u.mu.Unlock()
	if last {
		return u.Close()
	}
	return nil
}
