package handler

import (
	"testing"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/config"
)

// TestShardBytesCounted: config's memory bound counts config.ShardBytes a
// shard when sharded; the shard's ring (Start's default RingSize, 65536
// slots) must fit in it with room for its publisher and histograms.
func TestShardBytesCounted(t *testing.T) {
	ring := int64(unsafe.Sizeof(slot{})) * (1 << 16)
	if ring+1<<20 > config.ShardBytes {
		t.Errorf("a shard's ring is %d bytes (%d-byte slots); config.ShardBytes %d leaves less than 1 MiB for the rest of the shard", ring, unsafe.Sizeof(slot{}), int64(config.ShardBytes))
	}
}
