package glimpse

import (
	"reflect"
	"sync/atomic"
	"testing"
)

// TestStatsSnapshotWhole: Snapshot copies every counter of Stats (and of
// its soupbintcp.Stats) into the field of the same name, so that a counter
// added to Stats is not left out of what the handler exports
// (handler.RecoveryStats.SnapshotClient, TestEveryCounterExported).
func TestStatsSnapshotWhole(t *testing.T) {
	var st Stats
	want := map[string]uint64{}
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			p := path + f.Name
			if c, ok := v.Field(i).Addr().Interface().(*atomic.Uint64); ok {
				n := uint64(len(want) + 1)
				c.Add(n)
				want[p] = n
				continue
			}
			if v.Field(i).Kind() != reflect.Struct {
				t.Fatalf("Stats.%s: %s, neither a counter nor a struct of them", p, f.Type)
			}
			fill(v.Field(i), p+".")
		}
	}
	fill(reflect.ValueOf(&st).Elem(), "")
	got := map[string]uint64{}
	var read func(v reflect.Value, path string)
	read = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			p := path + v.Type().Field(i).Name
			if v.Field(i).Kind() == reflect.Struct {
				read(v.Field(i), p+".")
				continue
			}
			got[p] = v.Field(i).Uint()
		}
	}
	read(reflect.ValueOf(st.Snapshot()), "")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Snapshot() = %v\nwant (each counter of Stats) %v", got, want)
	}
}
