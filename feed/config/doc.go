// Package config reads the feed file of `feedhandler --feed FILE.yaml`: which
// feed to receive, on which lines and interfaces, with which receive backend,
// how to pin and shard the work, what to publish and where to report.
//
// Load (or Parse) decodes the YAML strictly: every key must be known, every
// value must have the right type and range, and every problem is reported
// with the file, line and dotted field path, all at once (the first 100,
// then "nasdaq.yaml: ... and N more problems"), for example
//
//	nasdaq.yaml:14: lines.a.group: "239.1.1.300" is not an IPv4 multicast address
//	nasdaq.yaml:7: receive.bakend: unknown field (did you mean "backend"?)
//	nasdaq.yaml:3: lines.a.port: missing required field
//
// A no-break space (U+00A0) or an invisible character (U+200B) pasted into
// the file, which YAML reads as part of a name or value, is named in the
// problem it causes. Line ends may be LF, CR LF or CR.
//
// Each problem is an *Error (errors.As) wrapping ErrInvalid (errors.Is);
// several are joined with errors.Join. Anchors and aliases are allowed;
// merge keys (<<: *name) are not, nor duplicate keys.
//
// The file, with every key and its default (see feeds/nasdaq.yaml for a
// commented production example and feeds/demo.yaml for the demo):
//
//	feed:
//	  name: nasdaq-totalview      # required; [A-Za-z0-9._-], up to 64 chars
//	  protocol: itch50-moldudp64  # the only protocol (default)
//	  session: ""                 # MoldUDP64 session, up to 10 ASCII chars; "" = first seen
//	lines:                        # a is required, b optional
//	  a:
//	    interface: ens1f0         # required
//	    group: 233.54.12.111      # required; IPv4 multicast
//	    port: 26477               # required; 1..65535
//	    source: 198.51.100.10     # optional source filter (IPv4 unicast)
//	  b: {...}
//	receive:
//	  backend: auto               # auto | xdp | uring | socket
//	  queues: [0]                 # AF_XDP queues; default: the backend's (queue 0)
//	  zero_copy: auto             # auto | on | off
//	  xdp_mode: auto              # auto | native | generic
//	  busy_poll: false
//	  busy_poll_usec: 20          # 1..1000000
//	  busy_poll_budget: 64        # 1..65535
//	  batch_size: 64              # 1..4096 packets per receive call
//	  ring_size: 0                # power of two up to 1048576; 0 = backend default; uring: 2*batch_size up to 32768
//	  recv_buffer: 8MiB           # socket receive buffer: bytes or KiB/MiB/GiB
//	  poll_timeout: 100ms         # how long one receive call may block (the handler caps it at arbitration.hold/4)
//	  spin: 1ms                   # AF_XDP: poll the rings this long before blocking; absent = 0
//	cores:
//	  receive: 2                  # CPU for the receive goroutine; absent = unpinned
//	  shards: [3, 4]              # 2+ entries: sharded, one book shard thread per entry, pinned;
//	                              #   absent or one entry: run to completion on the receive thread
//	  rt_priority: 0              # 1..99: receive and shard threads run under SCHED_FIFO at this
//	                              #   priority (needs cores.receive, and cap_sys_nice or
//	                              #   LimitRTPRIO=; refused: normal scheduling, logged); 0 = normal
//	symbols: [AAPL, MSFT]         # subscribe list, 1..8 chars each; absent/empty = all
//	book:
//	  depth: 10                   # levels published per side, 1..64
//	  max_orders: 4194304         # live orders capacity
//	  max_locates: 16384          # stock locate codes, 1..65536
//	shm:
//	  name: nasdaq-totalview      # /dev/shm name; default feed.name; [A-Za-z0-9._-]
//	  mode: 0640                  # octal permission bits; default 0640; never world-writable
//	  group: marketdata           # group owning the file (readers entitled); default the handler's
//	  slots: 16384                # instrument slots in the file, 1..65536; retired slots are not
//	                              #   reused: 2x the day's symbols if sessions change without a restart
//	arbitration:
//	  grace: 200us                # hold-back once every live line passed a missing number
//	  hold: 20ms                  # longest A/B skew waited out before declaring a gap
//	  line_timeout: 1s            # a line silent this long is not waited for
//	  max_pending: 8192           # packets held back at most, 16..1048576
//	  sequence_restart: rebuild   # same session name, numbers back to 1: rebuild | hold
//	recovery:                     # optional; see docs/RECOVERY.md
//	  rerequest:
//	    servers: [10.1.2.3:26400] # MoldUDP64 re-request servers, IPv4 host:port, in order
//	    timeout: 20ms             # first answer awaited; doubled per retry
//	    retries: 3                # resends per server before failing over
//	    max_request_messages: 2000
//	    requests_per_second: 1000
//	    max_rerequest_gap: 50000  # larger gaps go to the snapshot
//	    server_rest: 1s           # all servers failed a range: gaps skip re-request this long, 100ms..10m,
//	    server_rest_max: 30s      #   doubled per failure in a row up to this, 100ms..1h (>= server_rest)
//	    recv_buffer: 4MiB         # each re-request socket's receive buffer, 64KiB..1GiB; caps a request's messages
//	    source_port: any          # answers from the server's address on any port, or only on its own (server)
//	  snapshot:
//	    server: 10.1.2.4:26401    # GLIMPSE over SoupBinTCP host:port
//	    username: FEED01
//	    password_env: GLIMPSE_PW  # or password_file; never in the file, never logged
//	    session: ""               # "" = current
//	    retry: 5s                 # wait after a failed snapshot, 1s..10m, doubled per failure in a row,
//	    retry_max: 2m             #   up to this, 1s..1h (>= retry)
//	    connect_timeout: 5s       # dial and login, 100ms..1m
//	    idle_timeout: 15s         # server silent this long: stalled, 2s..10m
//	    max_duration: 10m         # Login Accepted to End of Snapshot, 1s..24h
//	    max_size: 2GiB            # the snapshot's messages before its end, 1MiB..64GiB
//	  late_join: snapshot         # snapshot | rerequest | off
//	  spill: 32768                # packets held while recovering (>= max_pending)
//	metrics:
//	  listen: 127.0.0.1:9464      # /metrics, /healthz, /readyz host:port; optional
//	stats_interval: 5s            # period of the stats log line (100ms at least)
//	log:
//	  level: info                 # trace | debug | info | warn | error
//	  format: console             # console | json
//	user: feedhandler             # started as root: switch to this account after setup; optional
//
// Config.RxConfig maps the result onto the receive layer's rx.Config.
package config
