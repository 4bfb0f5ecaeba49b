// Package xsk implements AF_XDP sockets over golang.org/x/sys/unix, without
// cgo.
//
// A UMEM is an mmapped area of fixed-size frames (on huge pages when the
// system has them, else normal pages with transparent huge pages requested)
// that the kernel writes received frames into. A Socket is bound to one rx
// queue of one interface; it owns a range of the UMEM's frames and four
// rings shared with the kernel: fill (frames given to the kernel to receive
// into), rx (received frames), tx and completion (transmitted frames coming
// back). Ring indices are read and written atomically, with cached copies
// so that shared cache lines are touched once per batch (the libxdp
// pattern). Several sockets may share one UMEM (XDP_SHARED_UMEM), one per
// (interface, queue), or each map its own.
//
// Binding negotiates zero-copy (ZeroCopyAuto tries XDP_ZEROCOPY, then
// XDP_COPY when the driver answers EOPNOTSUPP, as veth does), always asks for
// need_wakeup, optionally enables busy polling, and retries while the kernel
// still tears down a socket recently closed on the same queue (EBUSY).
//
// Frames only arrive once an XDP program redirects them to the socket
// through an XSKMAP (package bpf). The receive loop:
//
//	n := s.Receive(descs)                  // non-blocking, no allocation
//	for _, d := range descs[:n] {
//		use(s.Data(d))                     // a view into the UMEM
//		addrs = append(addrs, d.Addr)
//	}
//	s.Fill(addrs)                          // frames back to the kernel
//	if n == 0 { s.Wait(100 * time.Millisecond) }
//
// Metadata that the XDP program reserved in front of a frame
// (bpf_xdp_adjust_meta) lies just before the frame's data in the UMEM, in
// copy and zero-copy mode; Socket.Meta returns a view of it. The kernel
// keeps XDP_PACKET_HEADROOM (256 bytes) before the data of every frame, so
// there is room for it whatever UMEMConfig.Headroom is.
//
// Errors caused by a kernel, driver or privilege level that cannot do AF_XDP
// wrap ErrNotSupported.
package xsk
