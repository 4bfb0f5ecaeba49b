package rx

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/race"
)

// TestReceiveErrorAllocatesNothing: a line whose every read fails (here
// a pipe, where recvmmsg fails with ENOTSOCK; on a host, an error the
// socket keeps returning) has each failure returned to the receive
// thread, which counts it and retries a millisecond later, all day. The
// error returned allocates nothing after the first: it was built with
// fmt.Errorf for every failure. Its text and errno are as before.
func TestReceiveErrorAllocatesNothing(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	s := newSocketRx(Config{BatchSize: 4, PollTimeout: time.Millisecond}, []lineSocket{{fd: p[0], line: LineB}})
	pkts := make([]Packet, 4)
	read := func() {
		n, err := s.drain(pkts)
		if n != 0 || !errors.Is(err, unix.ENOTSOCK) || err.Error() != "receive line B: recvmmsg: socket operation on non-socket" {
			t.Fatalf("drain: %d, %v; want 0, ENOTSOCK", n, err)
		}
	}
	read()
	if a, exact := race.AllocsPerRun(t, 100, read); exact && a != 0 {
		t.Fatalf("a failed receive allocates %v times", a)
	}
}
