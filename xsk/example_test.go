package xsk_test

import (
	"fmt"

	"github.com/marketfeed/feedhandler/xsk"
)

func ExampleNewUMEM() {
	// 1024 frames of 2048 bytes; sockets opened with this UMEM take
	// disjoint ranges of its frames.
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, Frames: 1024})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer u.Close()
	fmt.Println(u.Frames(), u.FrameSize(), u.Free())
	// Output:
	// 1024 2048 1024
}
