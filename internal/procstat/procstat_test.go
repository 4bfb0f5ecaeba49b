package procstat

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/proctest"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestReadAllocatesNothing: a reading of the process's figures in steady
// state allocates nothing (a metrics scrape reports them).
func TestReadAllocatesNothing(t *testing.T) {
	r, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	var p Process
	if n, exact := race.AllocsPerRun(t, 50, func() {
		if err := r.Read(&p); err != nil {
			t.Fatal(err)
		}
	}); exact && n != 0 {
		t.Errorf("Read allocates %.1f times", n)
	}
}

// TestReadFollowsTheProcess: each Read is of the process now (the stat
// file read again from its start, the fd directory counted again): 64
// MiB touched show in the resident size, ten files opened and closed in
// the open fds; the limits are getrlimit's.
func TestReadFollowsTheProcess(t *testing.T) {
	r, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var before, after Process
	if err := r.Read(&before); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := 0; i < size; i += 4096 {
		mem[i] = 1
	}
	var files []*os.File
	for range 10 {
		f, err := os.Open("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if err := r.Read(&after); err != nil {
		t.Fatal(err)
	}
	if after.ResidentBytes < before.ResidentBytes+size-(4<<20) {
		t.Errorf("resident %d bytes, then %d with 64 MiB touched", before.ResidentBytes, after.ResidentBytes)
	}
	if after.VirtualBytes < before.VirtualBytes+size {
		t.Errorf("virtual %d bytes, then %d with 64 MiB mapped", before.VirtualBytes, after.VirtualBytes)
	}
	if after.OpenFDs != before.OpenFDs+10 {
		t.Errorf("%d open fds, then %d with 10 more open", before.OpenFDs, after.OpenFDs)
	}
	listed, err := r.listFDs()
	if err != nil || listed != after.OpenFDs {
		t.Errorf("/proc/self/fd lists %d fds (%v), its size says %d", listed, err, after.OpenFDs)
	}
	for _, f := range files {
		f.Close()
	}
	if err := r.Read(&after); err != nil {
		t.Fatal(err)
	}
	if after.OpenFDs != before.OpenFDs {
		t.Errorf("%d open fds, then %d with the 10 closed", before.OpenFDs, after.OpenFDs)
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if after.MaxFDs != lim.Cur || after.MaxFDs == 0 {
		t.Errorf("max fds %d, RLIMIT_NOFILE %d", after.MaxFDs, lim.Cur)
	}
	if after.StartTime != before.StartTime || after.StartTime <= 0 || after.CPUSeconds < before.CPUSeconds {
		t.Errorf("start %v then %v, cpu %v then %v", before.StartTime, after.StartTime, before.CPUSeconds, after.CPUSeconds)
	}
}

// TestOpenUnderProcSubsetPid: under a /proc mounted with subset=pid
// (systemd's ProcSubset=pid), which has /proc/self but not /proc/stat, the
// Reader opens and reads, its boot time from the clocks
// (BootTimeFromClocks says why) and within a second of /proc/stat's btime.
// Before, Open failed on /proc/stat and the handler exported no process_
// family, silently. The child runs in a mount namespace of its own, /proc
// mounted anew there.
func TestOpenUnderProcSubsetPid(t *testing.T) {
	if proctest.InSubsetPid() {
		procSubsetChild(t)
		return
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	btime, err := bootTime(b)
	if err != nil {
		t.Fatal(err)
	}
	proctest.RunInSubsetPid(t, "TestOpenUnderProcSubsetPid", "PROCSTAT_BTIME="+strconv.FormatFloat(btime, 'f', 0, 64))
}

func procSubsetChild(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("/proc/stat under subset=pid: %v, want it missing", err)
	}
	r, err := Open()
	if err != nil {
		t.Fatalf("open under ProcSubset=pid: %v", err)
	}
	defer r.Close()
	if why := r.BootTimeFromClocks(); why == nil || !strings.Contains(why.Error(), "/proc/stat") {
		t.Errorf("BootTimeFromClocks %v, want /proc/stat's error", why)
	}
	want, _ := strconv.ParseFloat(os.Getenv("PROCSTAT_BTIME"), 64)
	if math.Abs(r.btime-want) > 1 {
		t.Errorf("boot time from the clocks %v, /proc/stat's btime %v", r.btime, want)
	}
	var p Process
	if err := r.Read(&p); err != nil {
		t.Fatal(err)
	}
	if p.ResidentBytes == 0 || p.OpenFDs == 0 || p.StartTime < want {
		t.Errorf("read under ProcSubset=pid: %+v", p)
	}
}
