# summary.awk: summarises a tracefs text trace for one CPU (see hotcpu.sh).
# awk -v cpu=N -f summary.awk TRACE   (it reads TRACE twice by itself)
# Pass 1 finds the hot thread (named on the stalls file's first line, else
# the one that ran longest on cpu after it was last seen on another CPU: the
# pinned thread, from its pinning on); pass 2 attributes the time
# it lost: switches out (by state and by who ran) and interrupts on cpu
# while it ran (by name). Times in microseconds.
function parse(   p, rest) {
	if ($0 ~ /^#/) return 0
	if (!match($0, / \[[0-9]+\] /)) return 0
	c = substr($0, RSTART + 2, RLENGTH - 4) + 0
	# The task field is "%16s-%-7d" (comm-pid, the pid padded with
	# spaces): keep the pid alone, without the padding.
	task = substr($0, 1, RSTART - 1); sub(/.*-/, "", task); sub(/ +$/, "", task)
	rest = substr($0, RSTART + RLENGTH)
	split(rest, f, " ")
	# f[1] flags, f[2] "secs.usecs:", f[3] "event:", then fields
	ts = substr(f[2], 1, length(f[2]) - 1) * 1e6
	ev = substr(f[3], 1, length(f[3]) - 1)
	args = substr(rest, index(rest, f[3]) + length(f[3]) + 1)
	return 1
}
function kv(key,   i, n, a) {
	n = split(args, a, " ")
	for (i = 1; i <= n; i++) if (index(a[i], key "=") == 1) return substr(a[i], length(key) + 2)
	return ""
}
function addstat(k, d) {
	cnt[k]++; tot[k] += d; if (d > mx[k]) mx[k] = d
	if (d >= 5) ge5[k]++
	if (d >= 20) ge20[k]++
}
BEGIN {
	pass = 1; first = -1; since = -1
	# The stalls file names the hot thread: "tid N" on its first line.
	if (stalls != "" && (getline line < stalls) > 0 && line ~ /^tid /) forced = substr(line, 5) + 0
	close(stalls)
}
FNR == 1 && NR != 1 {
	pass = 2; for (p in run) if (run[p] > best) { best = run[p]; hot = p }
	if (forced) { hot = forced ""; best = run[hot] }
	cur = ""; since = -1; from = elsewhere[hot]
}
{
	if (!parse()) next
	if (pass == 1) {
		if (c != cpu && ev == "sched_switch") {
			pp = kv("prev_pid"); np = kv("next_pid")
			run[pp] = 0; run[np] = 0; elsewhere[pp] = ts; elsewhere[np] = ts
		}
		if (c == cpu && ev == "sched_switch") {
			pp = kv("prev_pid"); np = kv("next_pid")
			if (since >= 0) run[pp] += ts - since
			since = ts; name[np] = kv("next_comm")
		}
		next
	}
	if (ts < from) next
	if (first < 0) first = ts
	if (c == cpu && cfirst == 0) cfirst = ts
	last = ts
	if (ev == "sched_wakeup") { wk[kv("comm")]++; next }
	if (c != cpu) next
	if (ev ~ /^page_fault_/ && task == hot) {
		# a point event (the tracepoint has no exit): counted, and it
		# names a stall that nothing longer overlaps
		k = ev; sub(/^page_/, "", k); addstat("in-run page " k, 0)
		ne++; es[ne] = ts; ee[ne] = ts + 0.001; el[ne] = "page " k
		next
	}
	if (ev == "sched_switch") {
		pp = kv("prev_pid"); np = kv("next_pid"); st = kv("prev_state")
		if (pp == hot) {
			out = ts
			why = (st ~ /^R/) ? "involuntary" : "voluntary(" st ")"
			by = kv("next_comm")
			gsub(/[0-9]+$/, "N", by)
			nswitch++
		}
		if (np == hot && out > 0) {
			d = ts - out
			addstat("switch " why " -> " by, d)
			ne++; es[ne] = out; ee[ne] = ts; el[ne] = "switch " why " -> " by
			lost += d
			out = 0
		}
		cur = np
		next
	}
	k = ""
	if (ev ~ /_entry$/) {
		if (ev == "irq_handler_entry") k = "irq " kv("name")
		else if (ev == "softirq_entry") { k = args; sub(/.*action=/, "", k); sub(/\]$/, "", k); k = "softirq " k }
		else if (ev == "hrtimer_expire_entry") k = "  hrtimer " kv("function")
		else { k = ev; sub(/_entry$/, "", k) }
		kind = (ev == "softirq_entry") ? "s" : (ev == "irq_handler_entry" ? "i" : (ev == "hrtimer_expire_entry" ? "h" : "v"))
		open[kind] = ts; openk[kind] = k; openhot[kind] = (cur == hot)
		next
	}
	if (ev ~ /_exit$/) {
		kind = (ev == "softirq_exit") ? "s" : (ev == "irq_handler_exit" ? "i" : (ev == "hrtimer_expire_exit" ? "h" : "v"))
		# an hrtimer runs inside the timer interrupt: listed, not added twice
		if (open[kind] > 0 && openhot[kind]) {
			d = ts - open[kind]; addstat("in-run " openk[kind], d)
			if (kind != "h") { irqt += d; ne++; es[ne] = open[kind]; ee[ne] = ts; el[ne] = openk[kind] }
		}
		open[kind] = 0
	}
}
END {
	if (stalls != "") attribute()
	span = last - first
	printf "cpu %d, %.3f s traced from the hot thread's pinning; hot thread tid %s (%s) ran %.3f s of it\n", cpu, span / 1e6, hot, name[hot], best / 1e6
	printf "hot thread switched out %d times, %.0f us off cpu (%.3f%% of its run); interrupts while it ran %.0f us (%.3f%%)\n",
		nswitch, lost, 100 * lost / best, irqt, 100 * irqt / best
	printf "%-60s %8s %10s %9s %9s %6s %6s\n", "what (time the hot thread lost)", "count", "total-us", "mean-us", "max-us", ">=5us", ">=20us"
	for (k in cnt) printf "%-60s %8d %10.0f %9.2f %9.1f %6d %6d\n", k, cnt[k], tot[k], tot[k] / cnt[k], mx[k], ge5[k], ge20[k] | "sort"
	close("sort")
	printf "wakeups aimed at cpu %d, by woken task:\n", cpu
	for (k in wk) printf "  %-30s %d\n", k, wk[k] | "sort -k2 -n -r | head -15"
	close("sort -k2 -n -r | head -15")
}

# attribute matches the hot thread's stalls (file stalls: start and length
# in CLOCK_MONOTONIC ns, from the paced benchmark's FH_STALLS_OUT) against
# what the trace shows on cpu during each: the event overlapping it most
# names it; "nothing on cpu" is a stall with no switch, interrupt or softirq
# on the CPU, the hypervisor's (or the loop's own work, for short ones).
function attribute(   line, a, s0, s1, i, o, best, lab, cov, n, lo) {
	lo = 1
	while ((getline line < stalls) > 0) {
		if (line ~ /^tid /) continue
		# the benchmark kept only its first stalls
		if (line ~ /^cut /) { printf "the stalls file lists only the first stalls: %d later ones were not kept\n", substr(line, 5); continue }
		split(line, a, " ")
		s0 = a[1] / 1000; s1 = s0 + a[2] / 1000
		if (s0 < from || s0 > last) continue
		# cpu's buffer wrapped (hotcpu.sh): before its oldest kept
		# event the trace cannot say what ran
		if (wrapped && s0 < cfirst) { cut++; continue }
		best = 0; cov = 0
		# A gap holds the work on the packets the call before it handed
		# out (about 1.1 us a packet, with its B copy): a gap no longer
		# than 1.5 us a packet is that work, not a stall.
		lab = (a[3] * 1.5 >= s1 - s0) ? "nothing on cpu: the batch's own work" : "nothing on cpu"
		while (lo < ne && ee[lo] < s0 - 100000) lo++
		for (i = lo; i <= ne && es[i] <= s1; i++) {
			o = (ee[i] < s1 ? ee[i] : s1) - (es[i] > s0 ? es[i] : s0)
			if (o <= 0) continue
			cov += o
			if (o > best) { best = o; lab = el[i] }
		}
		if (cov > s1 - s0) cov = s1 - s0
		n = (s1 - s0 >= 20) ? "20" : "5"
		sc[n, lab]++; sl[n, lab] += s1 - s0; sv[n, lab] += cov; labs[lab] = 1
		nst[n]++; nstl[n] += s1 - s0; nstv[n] += cov
	}
	close(stalls)
	if (cut) printf "%d stalls before cpu %d's oldest kept event (the buffer wrapped) left out\n", cut, cpu
	for (n = 5; n <= 20; n += 15) {
		printf "hot thread's stalls of %s us (gaps between two Receive calls): %d, %.0f us, %.0f us of it covered by events on cpu\n",
			(n == 5 ? "5-20" : ">= 20"), nst[n], nstl[n], nstv[n]
		printf "  %-52s %7s %7s %10s %10s\n", "named by (most overlap)", "stalls", "share", "stall-us", "covered-us"
		for (lab in labs) if (sc[n, lab]) printf "  %-52s\t%7d %6.1f%% %10.0f %10.0f\n", lab, sc[n, lab], 100 * sc[n, lab] / nst[n], sl[n, lab], sv[n, lab] | "sort -t'\t' -k2 -n -r"
		close("sort -t'\t' -k2 -n -r")
	}
}
