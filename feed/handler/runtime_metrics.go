package handler

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/marketfeed/feedhandler/internal/procstat"
)

// standardMetric is one of the process's and the Go runtime's families
// that every Prometheus client exports under the same names
// (process_cpu_seconds_total, go_goroutines, ...): dashboards and alerts
// written for any Go service read them. Name, help and type are
// client_golang's (collectors.NewProcessCollector, NewGoCollector), so
// the text format and the protobuf format, which client_golang's
// collectors serve (RegisterStandard), carry the same series.
type standardMetric struct {
	name, help string
	kind       metricKind
	value      func(*runtimeSample) float64 // nil: the summary, go_gc_duration_seconds
}

// standard are the standard families the Exposition renders, read at
// each scrape without allocating: the process's from /proc/self
// (procstat), the runtime's from runtime/metrics and debug.ReadGCStats.
// The protobuf format has every family of client_golang's collectors,
// these and more (every go_memstats_ family).
var standard = [...]standardMetric{
	{"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", kindCounter, func(s *runtimeSample) float64 { return s.p.CPUSeconds }},
	{"process_open_fds", "Number of open file descriptors.", kindGauge, func(s *runtimeSample) float64 { return float64(s.p.OpenFDs) }},
	{"process_max_fds", "Maximum number of open file descriptors.", kindGauge, func(s *runtimeSample) float64 { return float64(s.p.MaxFDs) }},
	{"process_virtual_memory_bytes", "Virtual memory size in bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.p.VirtualBytes) }},
	{"process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.p.VirtualMax) }},
	{"process_resident_memory_bytes", "Resident memory size in bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.p.ResidentBytes) }},
	{"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", kindGauge, func(s *runtimeSample) float64 { return s.p.StartTime }},
	{"go_goroutines", "Number of goroutines that currently exist.", kindGauge, func(s *runtimeSample) float64 { return float64(s.gor) }},
	{"go_threads", "Number of OS threads created.", kindGauge, func(s *runtimeSample) float64 { return float64(s.threads) }},
	{"go_gc_duration_seconds", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", kindSummary, nil},
	{"go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", kindGauge, func(s *runtimeSample) float64 { return float64(s.gc.LastGC.UnixNano()) / 1e9 }},
	{"go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmGOGC)) }},
	{"go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmMemLimit)) }},
	{"go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", kindCounter, func(s *runtimeSample) float64 { return float64(s.rmUint(rmAllocBytes)) }},
	{"go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", kindCounter, func(s *runtimeSample) float64 { return float64(s.rmUint(rmAllocObjects) + s.rmUint(rmTinyObjects)) }},
	{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmHeapObjects)) }},
	{"go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmHeapObjects) + s.rmUint(rmHeapUnused)) }},
	{"go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmHeapReleased)) }},
	{"go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmHeapGoal)) }},
	{"go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", kindGauge, func(s *runtimeSample) float64 { return float64(s.rmUint(rmTotal)) }},
}

// runtimeNames are the runtime/metrics samples runtimeSample reads, in
// the order of its rm constants.
var runtimeNames = [...]string{
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
	"/gc/heap/allocs:bytes",
	"/gc/heap/allocs:objects",
	"/gc/heap/tiny/allocs:objects",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/released:bytes",
	"/gc/heap/goal:bytes",
	"/memory/classes/total:bytes",
}

const (
	rmGOGC = iota
	rmMemLimit
	rmAllocBytes
	rmAllocObjects
	rmTinyObjects
	rmHeapObjects
	rmHeapUnused
	rmHeapReleased
	rmHeapGoal
	rmTotal
)

// gcQuantiles are go_gc_duration_seconds's quantiles, as client_golang
// reports them: the least, the quartiles and the greatest of the pauses
// the runtime keeps (the last 256).
var gcQuantiles = [5]string{"0", "0.25", "0.5", "0.75", "1"}

// runtimeSample is one reading of the standard families, in buffers it
// keeps: read again, it allocates nothing.
type runtimeSample struct {
	proc    *procstat.Reader // nil: /proc/self could not be opened (no process_ families)
	p       procstat.Process
	procOK  bool
	rm      [len(runtimeNames)]metrics.Sample
	gc      debug.GCStats
	threads int
	gor     int
	// The cgroup's memory limits (nil: not cgroup v2's, none exported),
	// NoLimit where none is set.
	cgroup *procstat.CgroupMemory
	limits [len(cgroupFiles)]uint64
}

// cgroupFiles are the label values of cgroup_memory_limit_bytes, in the
// order of cgroupLimits.
var cgroupFiles = [...]string{"memory.max", "memory.high"}

// cgroupLimits reads c's limits, in the order of cgroupFiles: NoLimit
// where none is set, or c is nil or cannot be read.
func cgroupLimits(c *procstat.CgroupMemory) [len(cgroupFiles)]uint64 {
	if c != nil {
		if l, err := c.Read(); err == nil {
			return [...]uint64{l.Max, l.High}
		}
	}
	return [...]uint64{procstat.NoLimit, procstat.NoLimit}
}

// hasLimit says whether a limit is set (cgroup_memory_limit_bytes has a
// sample).
func (s *runtimeSample) hasLimit() bool {
	for _, v := range s.limits {
		if v != procstat.NoLimit {
			return true
		}
	}
	return false
}

func newRuntimeSample() *runtimeSample {
	s := &runtimeSample{}
	s.proc, _ = procstat.Self()
	s.cgroup, _ = procstat.SelfCgroupMemory()
	for i, n := range runtimeNames {
		s.rm[i].Name = n
	}
	// ReadGCStats's buffers, at the size it wants: the pause history
	// twice and three figures, and the pause ends.
	const maxPause = len(runtime.MemStats{}.PauseNs)
	s.gc.Pause = make([]time.Duration, 2*maxPause+3)
	s.gc.PauseEnd = make([]time.Time, 0, maxPause)
	s.gc.PauseQuantiles = make([]time.Duration, len(gcQuantiles))
	return s
}

// read takes the figures now.
func (s *runtimeSample) read() {
	s.procOK = s.proc != nil && s.proc.Read(&s.p) == nil
	s.limits = cgroupLimits(s.cgroup)
	metrics.Read(s.rm[:])
	debug.ReadGCStats(&s.gc)
	s.threads, _ = runtime.ThreadCreateProfile(nil)
	s.gor = runtime.NumGoroutine()
}

// rmUint is sample i's value (0 if the runtime does not have it).
func (s *runtimeSample) rmUint(i int) uint64 {
	if s.rm[i].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.rm[i].Value.Uint64()
}

// appendRuntime appends the standard families, as appendText read them,
// in the text format: with the feed label, as every family of the handler
// has it. Under e.mu.
func (e *Exposition) appendRuntime(b []byte) []byte {
	s := e.rt
	for i := range standard {
		m := &standard[i]
		if m.name[0] == 'p' && !s.procOK {
			continue // as client_golang leaves out what it could not read
		}
		b = appendHeader(b, "", m.name, m.help, m.kind)
		if m.kind == kindSummary {
			for q, ls := range e.quantiles {
				b = stdSample(b, m.name, "", ls, s.gc.PauseQuantiles[q].Seconds())
			}
			b = stdSample(b, m.name, "_sum", e.plain, s.gc.PauseTotal.Seconds())
			b = seriesName(b, m.name, "_count", e.plain)
			b = strconv.AppendInt(b, s.gc.NumGC, 10)
			b = append(b, '\n')
			continue
		}
		b = stdSample(b, m.name, "", e.plain, m.value(s))
	}
	return b
}

// stdSample appends the sample line <name><suffix><labels> v (expfmt's
// float: strconv writes +Inf, -Inf and NaN as it does).
func stdSample(b []byte, name, suffix, labels string, v float64) []byte {
	b = seriesName(b, name, suffix, labels)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// RegisterStandard registers on reg client_golang's process and Go
// collectors, with h's label feed: the protobuf format's standard
// families, which the Exposition's text format renders itself (the
// families of standard; the collectors have more).
//
// It logs the cgroup's memory limits, or why they are not exported, and
// what of the process's figures cannot be read: /proc/self (no
// process_ family then, feedhandler_process_metrics_readable 0), or
// /proc/stat (a /proc of the processes only, ProcSubset=pid: the boot
// time is taken from the clocks, every family kept).
func RegisterStandard(reg prometheus.Registerer, h *Handler) {
	// Opened now, before the process gives up privileges (the
	// Exposition's reader of /proc/self).
	proc := processCollector{Collector: collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	if r, err := procstat.Self(); err != nil {
		h.log.Warn().Err(err).Msg("process metrics not exported: /proc/self cannot be read (a /proc without this process, or hardened against it); process_* families absent, feedhandler_process_metrics_readable 0")
	} else if why := r.BootTimeFromClocks(); why != nil {
		h.log.Info().Err(why).Msg("process start time from the clocks: /proc/stat cannot be read (a /proc of the processes only, ProcSubset=pid); every process_* family exported")
		proc.start, proc.proc = prometheus.NewDesc(startTimeName, standardHelp(startTimeName), nil, nil), r
	}
	if c, err := procstat.SelfCgroupMemory(); err != nil {
		h.log.Info().Err(err).Msg("cgroup memory limit not exported (feedhandler_cgroup_memory_limit_bytes absent): FeedhandlerNearMemoryLimit cannot fire")
	} else {
		ev := h.log.Info().Str("cgroup", c.Dir())
		for i, v := range cgroupLimits(c) {
			if v == procstat.NoLimit {
				ev = ev.Str(cgroupFiles[i], "max")
			} else {
				ev = ev.Uint64(cgroupFiles[i], v)
			}
		}
		ev.Msg("cgroup memory limits (feedhandler_cgroup_memory_limit_bytes; max: none)")
	}
	prometheus.WrapRegistererWith(prometheus.Labels{"feed": h.cfg.Feed}, reg).MustRegister(
		proc,
		collectors.NewGoCollector(),
	)
}

const startTimeName = "process_start_time_seconds"

// standardHelp is the help of standard's family name.
func standardHelp(name string) string {
	for _, m := range standard {
		if m.name == name {
			return m.help
		}
	}
	return ""
}

// processCollector is client_golang's process collector, with the
// process's start time from procstat where the library has none: it
// counts the start from /proc/stat's btime, which a /proc of the
// processes only (ProcSubset=pid) does not have, and leaves
// process_start_time_seconds out, which the text format has (procstat
// takes the boot time from the clocks). Describe is the library's, which
// describes the family already.
type processCollector struct {
	prometheus.Collector
	proc  *procstat.Reader // nil: the library reads the start time
	start *prometheus.Desc
}

func (c processCollector) Collect(ch chan<- prometheus.Metric) {
	c.Collector.Collect(ch)
	var p procstat.Process
	if c.proc != nil && c.proc.Read(&p) == nil {
		ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, p.StartTime)
	}
}
