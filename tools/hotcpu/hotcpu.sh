#!/bin/sh
# hotcpu.sh: what takes a hot CPU away from the handler's hot thread.
#
# Usage: tools/hotcpu/hotcpu.sh CPU OUT -- COMMAND [ARGS...]
#
# Runs COMMAND (for example a PipelinePaced benchmark, whose receive thread
# is pinned to CPU 0) with the kernel's tracer (tracefs, in its own
# instance so a parallel user of the global buffer is not disturbed)
# recording, on CPU: sched_switch, the wakeups aimed at it, device IRQs,
# softirqs, the local timer interrupt and the hrtimers it runs (the tick is
# tick_nohz_handler), IPIs (reschedule, function call), irq work and page
# faults. It keeps the raw trace in OUT.trace, /proc/stat's CPU line before
# and after (steal time, if the hypervisor reports it) in OUT.stat, and
# prints a summary (tools/hotcpu/summary.awk): the hot thread (the task
# that ran longest on CPU), every time it was switched out (voluntary or
# involuntary, by whom, for how long), and the interrupts that ran on CPU
# while it ran (count, total and longest). A stall the hot thread saw with
# no event on CPU in the trace is the hypervisor's. With FH_STALLS_OUT=FILE
# set (BenchmarkPipelinePaced writes the receive thread's stalls there), it
# names each stall by the event on CPU that overlaps it most.
#
# Needs root (tracefs). Not part of any test run.
set -eu
[ $# -ge 4 ] && [ "$3" = "--" ] || { echo "usage: $0 CPU OUT -- COMMAND [ARGS...]" >&2; exit 2; }
cpu=$1 out=$2
shift 3
T=/sys/kernel/tracing
[ -d $T/instances ] || T=/sys/kernel/debug/tracing
inst=$T/instances/hotcpu-$$
child=
# cleanup runs on every exit: it stops the command if it still runs (an
# interrupt), stops tracing and removes the instance. INT and TERM exit
# (130) through it, without a summary.
cleanup() {
	if [ -n "$child" ]; then
		env kill -TERM -- "-$child" 2>/dev/null || true # its whole process group (dash's kill takes no group)
		wait "$child" 2>/dev/null || true
	fi
	echo 0 > "$inst/tracing_on" 2>/dev/null || true
	rmdir "$inst" 2>/dev/null || true
}
mkdir "$inst"
trap cleanup EXIT
trap 'exit 130' INT TERM
echo 65536 > "$inst/buffer_size_kb"
echo mono > "$inst/trace_clock"
for e in sched/sched_switch irq/irq_handler_entry irq/irq_handler_exit irq/softirq_entry irq/softirq_exit \
	irq_vectors/local_timer_entry irq_vectors/local_timer_exit irq_vectors/reschedule_entry \
	irq_vectors/reschedule_exit irq_vectors/call_function_entry irq_vectors/call_function_exit \
	irq_vectors/call_function_single_entry irq_vectors/call_function_single_exit \
	irq_vectors/irq_work_entry irq_vectors/irq_work_exit timer/hrtimer_expire_entry timer/hrtimer_expire_exit \
	exceptions/page_fault_user exceptions/page_fault_kernel; do
	[ -d "$inst/events/$e" ] && echo 1 > "$inst/events/$e/enable"
done
echo "target_cpu == $cpu" > "$inst/events/sched/sched_wakeup/filter"
echo 1 > "$inst/events/sched/sched_wakeup/enable"
grep "^cpu$cpu " /proc/stat > "$out.stat"
echo 1 > "$inst/tracing_on"
rc=0
# In the background, so that the traps run as soon as a signal comes (a
# shell runs a trap only after its foreground command ends), and in a
# process group of its own (setsid: the child is not a group leader, so it
# keeps its pid), so that cleanup stops everything the command started
# (`flock ... go test ...`), not only its first process: a background
# command of a non-interactive shell ignores SIGINT.
setsid "$@" &
child=$!
wait "$child" || rc=$?
child=
echo 0 > "$inst/tracing_on"
grep "^cpu$cpu " /proc/stat >> "$out.stat"
# Each CPU's buffer is a ring: when it fills, the oldest events go
# (overrun). The summary would then call the early gaps "nothing on cpu";
# it leaves out the stalls before CPU's oldest kept event instead.
wrapped=0
for st in "$inst"/per_cpu/cpu*/stats; do
	n=${st%/stats}; n=${n##*/}
	ov=$(awk '$1 == "overrun:" { print $2 }' "$st")
	dr=$(awk '$1 == "dropped" { print $3 }' "$st")
	echo "trace buffer $n: ${ov:-?} events overwritten, ${dr:-?} dropped"
	if [ "$n" = "cpu$cpu" ] && [ "${ov:-0}${dr:-0}" != 00 ]; then
		wrapped=1
		echo "warning: the trace buffer of $n wrapped: its early events are lost; stalls before its oldest kept event are left out of the summary (raise buffer_size_kb or trace a shorter run)" >&2
	fi
done
cat "$inst/trace" > "$out.trace"
awk -v cpu="$cpu" -v wrapped="$wrapped" -v stalls="${FH_STALLS_OUT:-}" -f "$(dirname "$0")/summary.awk" "$out.trace" "$out.trace"
awk '{ if (NR == 1) s = $9; else printf "steal on cpu%s during the run: %d ticks\n", substr($1, 4), $9 - s }' "$out.stat"
exit $rc
