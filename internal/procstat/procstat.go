// Package procstat reads the process's own figures from /proc/self, as
// Prometheus's process collector reports them (process_cpu_seconds_total,
// process_resident_memory_bytes, ...), into fixed buffers: a Read in
// steady state allocates nothing, so a metrics scrape that reports them
// never makes the garbage collector run.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, 100 on every
// Linux architecture; procfs and client_golang take it so too).
const userHZ = 100

// Process is the process's figures, in the units of Prometheus's process
// collector.
type Process struct {
	CPUSeconds    float64 // user and system CPU time (process_cpu_seconds_total)
	ResidentBytes uint64  // resident set size (process_resident_memory_bytes)
	VirtualBytes  uint64  // virtual memory size (process_virtual_memory_bytes)
	VirtualMax    uint64  // RLIMIT_AS's soft limit; ^0: unlimited (process_virtual_memory_max_bytes)
	OpenFDs       uint64  // open file descriptors (process_open_fds)
	MaxFDs        uint64  // RLIMIT_NOFILE's soft limit (process_max_fds)
	StartTime     float64 // Unix seconds (process_start_time_seconds)
}

// Reader reads Process from /proc/self through files it keeps open: the
// stat file is read again from its start (procfs regenerates it), the fd
// directory stat'ed (its size is the count of open fds, Linux 6.2) or, on
// older kernels, listed again.
type Reader struct {
	mu       sync.Mutex
	stat     *os.File
	fdDir    *os.File
	btime    float64 // boot time, Unix seconds (/proc/stat, or the clocks)
	btimeErr error   // why /proc/stat was not read (nil: it was)
	pageSize uint64
	buf      [1024]byte
	dents    [4096]byte
}

// Self returns the process's Reader, opened at the first call and kept
// open for the life of the process (one per process: it is the process's
// own). Open it before the process gives up privileges, so that a switch
// of user cannot deny it the files.
var Self = sync.OnceValues(Open)

// Open opens a Reader of the calling process. Close releases it.
//
// The boot time, which process_start_time_seconds counts from, is
// /proc/stat's btime; where /proc/stat cannot be read (a /proc mounted
// with subset=pid, systemd's ProcSubset=pid, shows the processes only)
// it is the wall clock less CLOCK_BOOTTIME, the sum the kernel gives
// btime from, and BootTimeFromClocks says why. Only /proc/self's files
// are required.
func Open() (*Reader, error) {
	r := &Reader{pageSize: uint64(os.Getpagesize())}
	b, err := os.ReadFile("/proc/stat")
	if err == nil {
		r.btime, err = bootTime(b)
	} else {
		err = fmt.Errorf("procstat: %w", err)
	}
	if err != nil {
		r.btimeErr = err
		if r.btime, err = clockBootTime(); err != nil {
			return nil, err
		}
	}
	if r.stat, err = os.Open("/proc/self/stat"); err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	if r.fdDir, err = os.Open("/proc/self/fd"); err != nil {
		r.stat.Close()
		return nil, fmt.Errorf("procstat: %w", err)
	}
	var p Process
	if err := r.Read(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the Reader's files.
func (r *Reader) Close() error {
	r.stat.Close()
	return r.fdDir.Close()
}

// BootTimeFromClocks is why /proc/stat could not be read, the boot time
// then taken from the clocks (clockBootTime); nil when it was read.
func (r *Reader) BootTimeFromClocks() error { return r.btimeErr }

// clockBootTime is the boot time as /proc/stat's btime gives it, from the
// clocks: the wall clock less the time since boot (CLOCK_BOOTTIME), whole
// seconds (the kernel's btime is getboottime64's seconds, the same
// difference).
func clockBootTime() (float64, error) {
	var real, boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &real); err != nil {
		return 0, fmt.Errorf("procstat: clock_gettime CLOCK_REALTIME: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return 0, fmt.Errorf("procstat: clock_gettime CLOCK_BOOTTIME: %w", err)
	}
	ns := real.Nano() - boot.Nano()
	return float64(ns / 1e9), nil
}

func bootTime(procStat []byte) (float64, error) {
	for _, l := range bytes.Split(procStat, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("btime ")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procstat: /proc/stat btime %q: %w", v, err)
			}
			return float64(n), nil
		}
	}
	return 0, fmt.Errorf("procstat: /proc/stat has no btime line")
}

// Read fills p. It allocates nothing (an error aside).
func (r *Reader) Read(p *Process) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := unix.Pread(int(r.stat.Fd()), r.buf[:], 0)
	if err != nil {
		return fmt.Errorf("procstat: read /proc/self/stat: %w", err)
	}
	// The fields after the command's closing parenthesis, from the
	// state (field 3 of proc(5)): utime is field 14, stime 15,
	// starttime 22, vsize 23, rss 24.
	s := r.buf[:n]
	i := bytes.LastIndexByte(s, ')')
	if i < 0 {
		return fmt.Errorf("procstat: /proc/self/stat: no command's end")
	}
	var f [22]uint64
	field, got := 3, 0
	for _, c := range s[i+1:] {
		switch {
		case c == ' ' || c == '\n':
			if got > 0 {
				field++
				got = 0
			}
		case field < 3+len(f) && c >= '0' && c <= '9':
			f[field-3] = f[field-3]*10 + uint64(c-'0')
			got++
		default:
			got++ // the state letter, a negative figure: not one read
		}
		if field >= 3+len(f) {
			break
		}
	}
	if field < 24 {
		return fmt.Errorf("procstat: /proc/self/stat: %d fields", field)
	}
	p.CPUSeconds = float64(f[14-3]+f[15-3]) / userHZ
	p.StartTime = r.btime + float64(f[22-3])/userHZ
	p.VirtualBytes = f[23-3]
	p.ResidentBytes = f[24-3] * r.pageSize

	if p.OpenFDs, err = r.openFDs(); err != nil {
		return err
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("procstat: getrlimit RLIMIT_NOFILE: %w", err)
	}
	p.MaxFDs = lim.Cur
	if err := unix.Getrlimit(unix.RLIMIT_AS, &lim); err != nil {
		return fmt.Errorf("procstat: getrlimit RLIMIT_AS: %w", err)
	}
	p.VirtualMax = lim.Cur
	return nil
}

// openFDs counts the entries of /proc/self/fd (the Reader's own among
// them, as client_golang's count has the directory it opens).
func (r *Reader) openFDs() (uint64, error) {
	fd := int(r.fdDir.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("procstat: stat /proc/self/fd: %w", err)
	}
	if st.Size > 0 {
		return uint64(st.Size), nil
	}
	return r.listFDs()
}

// listFDs counts the entries of /proc/self/fd by listing it: before
// Linux 6.2 its size is 0.
func (r *Reader) listFDs() (uint64, error) {
	fd := int(r.fdDir.Fd())
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return 0, fmt.Errorf("procstat: seek /proc/self/fd: %w", err)
	}
	var count uint64
	for {
		n, err := unix.Getdents(fd, r.dents[:])
		if err != nil {
			return 0, fmt.Errorf("procstat: list /proc/self/fd: %w", err)
		}
		if n <= 0 {
			return count, nil
		}
		// struct linux_dirent64: ino (8), off (8), reclen (2), type
		// (1), then the name, NUL-terminated.
		for b := r.dents[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if name[0] != '.' {
				count++
			}
			b = b[reclen:]
		}
	}
}
