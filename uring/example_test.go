package uring_test

import (
	"fmt"
	"time"

	"github.com/marketfeed/feedhandler/uring"
)

// A NOP round trip: prepare an entry, submit and wait, read the completion.
func Example() {
	r, err := uring.Setup(uring.Params{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	r.GetSQE().PrepNop(7)
	if _, err := r.Wait(1, time.Second); err != nil {
		fmt.Println(err)
		return
	}
	cqe := r.PeekCQE()
	fmt.Println("user data", cqe.UserData, "result", cqe.Res)
	r.CQAdvance(1)
	// Output: user data 7 result 0
}
