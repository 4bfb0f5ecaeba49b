package spsc_test

import (
	"fmt"

	"github.com/marketfeed/feedhandler/internal/spsc"
)

func Example() {
	type work struct {
		Seq uint64
		Len uint16
	}
	r, err := spsc.New[work](8)
	if err != nil {
		panic(err)
	}

	// Producer (receive goroutine): one element, then a batch in place.
	r.TryPush(work{Seq: 1, Len: 36})
	w := r.Reserve(2)
	w[0] = work{Seq: 2, Len: 40}
	w[1] = work{Seq: 3, Len: 23}
	r.Commit(2)
	r.Close()

	// Consumer (book shard).
	for {
		v := r.PeekWait(16, 0)
		if len(v) == 0 && r.Drained() {
			break
		}
		for _, x := range v {
			fmt.Println(x.Seq, x.Len)
		}
		r.Release(len(v))
	}
	st := r.Stats()
	fmt.Println("pushed", st.Pushed, "full", st.Full)
	// Output:
	// 1 36
	// 2 40
	// 3 23
	// pushed 3 full 0
}
