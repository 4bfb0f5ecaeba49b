package rx

// This file holds the AF_XDP backend's counters: Stats, with the programs'
// and the sockets' kernel counters read and kept.

// Stats reads the receiver's counters, the programs' per-CPU counters and
// the sockets' kernel statistics. It allocates nothing (the handler calls it
// every 20 ms for the life of the process).
func (r *xdpRx) Stats() Stats {
	s := r.counters.stats()
	s.Extra.Add("parse_malformed", s.Malformed)
	// The line datagrams dropped as the kernel would drop them before
	// any socket sees them (a failed checksum, a source it drops, IPv4
	// options it refuses: the socket backends never get them) are
	// malformed too.
	for why := range r.bad {
		v := r.bad[why].Load()
		s.Extra.Add(lineDropExtra[why], v)
		s.Malformed += v
	}
	s.Extra.Add("xdp_kernel_ts", r.kernelTS.Load())
	s.Extra.Add("xdp_user_ts", r.userTS.Load())
	s.Extra.Add("xdp_wakeups", r.wakeups.Load())
	s.Extra.Add("xsk_fill_deferred", r.fillDeferred.Load())
	r.readKernelCounters()
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	for i, c := range r.lastProg {
		// The program's malformed frames are every malformed frame on the
		// interface, the feed's or not, passed to the kernel (which drops
		// them, as it does under the socket backends): xdp_malformed
		// only. Malformed is the feed's own datagrams, as on every
		// backend: the frames the sockets delivered that Receive rejected.
		// Line frames on a queue without a socket go to the kernel, and
		// fragmented line datagrams too (it reassembles them): delivered
		// through the device's kernel sockets (xdp_kernel.go), whose
		// drops are counted below; lost to a device with a line
		// without one.
		if !r.kernelCovers[i] {
			s.Dropped += c.NoSocket + c.Fragmented
		}
		// Not VLANOther and VLANUntagged: a frame of a line's group and
		// port on a VLAN not the line's, or a VLAN line's untagged, is not
		// the line's (the kernel would not give it to the line's device,
		// so the socket backends never see it either): counting it would count another
		// stream's traffic as the feed's loss. Untagged frames are the
		// line's own only when the NIC strips the tag before XDP
		// (rx-vlan-offload): then the line loses every frame, which its
		// gaps and dead-line alerts show, the start and feedhandler check
		// warn of, and xdp_vlan_untagged counts; no frame tells the two
		// cases apart.
		s.Extra.Add("xdp_redirected", c.Redirected)
		s.Extra.Add("xdp_passed", c.Passed)
		s.Extra.Add("xdp_malformed", c.Malformed)
		s.Extra.Add("xdp_no_socket", c.NoSocket)
		s.Extra.Add("xdp_no_meta", c.NoMeta)
		s.Extra.Add("xdp_fragmented", c.Fragmented)
		s.Extra.Add("xdp_vlan_other", c.VLANOther)
		s.Extra.Add("xdp_vlan_untagged", c.VLANUntagged)
		// Nor OtherHost: frames sent to another host's MAC address,
		// which a NIC in promiscuous mode hands up and the kernel drops.
		s.Extra.Add("xdp_other_host", c.OtherHost)
	}
	for _, st := range r.lastSock {
		// A frame that finds the fill ring empty: in copy mode the kernel
		// drops it and counts it twice, in rx_dropped (so in Dropped) and
		// in rx_fill_ring_empty_descs (measured: TestStatistics in package
		// xsk logs RxDropped 68, FillRingEmptyDescs 68). In zero-copy mode
		// the driver's refill finds the fill ring empty and counts that
		// in rx_fill_ring_empty_descs, once per refill attempt, not per
		// frame (also when the NIC still held frames and nothing was
		// lost); the frames the NIC then drops are only in the driver's
		// own counters (ethtool -S, per queue or per interface, any
		// traffic). No counter of the socket says how many line frames
		// were lost, so Dropped leaves them out rather than guess; the
		// lines' gaps show the loss (alert FeedhandlerFillRingEmpty).
		// Not measured: veth has no zero-copy.
		s.Dropped += st.RxDropped + st.RxRingFull
		s.Extra.Add("xsk_rx_dropped", st.RxDropped)
		s.Extra.Add("xsk_rx_invalid_descs", st.RxInvalidDescs)
		s.Extra.Add("xsk_rx_ring_full", st.RxRingFull)
		s.Extra.Add("xsk_fill_ring_empty_descs", st.FillRingEmptyDescs)
	}
	s.Extra.Add("xdp_stats_read_errors", r.statsErrors.Load())
	s.Extra.Add("xsk_unbound", r.unbound.Load())
	s.Extra.Add("bad_releases", r.badReleases.Load())
	// The fallback and kernel sockets' own counters, under the socket
	// backend's names (0 without any, so that the set of names stays
	// fixed); the kernel sockets' datagrams are xdp_kernel_delivered.
	var delivered, filtered, truncated, gone, rejoins uint64
	lists := [2][]*socketRx{r.kernelList}
	if l := r.fallbackList.Load(); l != nil {
		lists[1] = *l
	}
	for k, list := range lists {
		for _, f := range list {
			fs := f.Stats()
			for i := range s.Packets {
				s.Packets[i] += fs.Packets[i]
				s.Bytes[i] += fs.Bytes[i]
				if k == 0 {
					delivered += fs.Packets[i]
				}
			}
			s.Dropped += fs.Dropped
			s.Malformed += fs.Malformed
			s.Unmatched += fs.Unmatched
			filtered += fs.Extra.Get("source_filtered")
			truncated += fs.Extra.Get("truncated")
			gone += fs.Extra.Get("line_interfaces_gone")
			rejoins += fs.Extra.Get("line_rejoins")
		}
	}
	s.Extra.Add("xdp_socket_fallbacks", r.fellBack.Load())
	s.Extra.Add("xdp_kernel_delivered", delivered)
	s.Extra.Add("source_filtered", filtered)
	s.Extra.Add("truncated", truncated)
	s.Extra.Add("line_interfaces_gone", gone)
	s.Extra.Add("line_rejoins", rejoins)
	return s
}

// readKernelCounters refreshes lastProg and lastSock from the programs and
// sockets, keeping the last good reading of any that fails. After Close it
// reads nothing: the readings Close took last stand.
func (r *xdpRx) readKernelCounters() {
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed.Load() {
		return
	}
	r.refreshKernelCounters()
}

// refreshKernelCounters is readKernelCounters under r.life, held by the
// caller (read by Stats, or written by Close before the teardown).
func (r *xdpRx) refreshKernelCounters() {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	for i, x := range r.ifaces {
		c, err := x.prog.Counters()
		if err != nil {
			r.statsErrors.Add(1)
			continue
		}
		r.lastProg[i] = c
		if c.NoSocket > 0 && !x.warnedNoSocket {
			x.warnedNoSocket = true
			fate := "where no socket is bound to the line, so they are lost (counted in receive_dropped_total, xdp_no_socket; logged once)"
			if r.kernelCovers[i] {
				fate = "which delivers them to the lines' sockets, read between the rings' batches: later than the rings' frames, and dropped when a socket's buffer fills (xdp_no_socket, xdp_kernel_delivered, receive_dropped_total; logged once)"
			}
			r.log.Warn().Str("interface", x.name).Uint64("xdp_no_socket", c.NoSocket).Ints("queues", r.boundQueues(x)).
				Msgf("rx: xdp: line frames arrive on rx queues of %s without an AF_XDP socket: the program gives them to the kernel, %s. The NIC spreads the feed over queues other than receive.queues (RSS, or channels added while running): bind those queues too, or steer the feed's groups to the bound ones (ethtool -N, docs/TUNING.md section 5)", x.name, fate)
		}
	}
	for i, q := range r.queues {
		st, err := q.sock.Statistics()
		if err != nil {
			r.statsErrors.Add(1)
			continue
		}
		r.lastSock[i] = st
	}
}

// boundQueues lists the rx queues of x that have a socket.
func (r *xdpRx) boundQueues(x *xdpIface) []int {
	var qs []int
	for _, q := range r.queues {
		if q.iface == x {
			qs = append(qs, q.sock.Queue())
		}
	}
	return qs
}
