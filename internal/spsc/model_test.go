package spsc

import (
	"math/rand/v2"
	"testing"
)

// TestAgainstModel drives a ring and a plain slice queue with the same random
// operations from one goroutine and requires identical results, including
// the view lengths that wrap-around and the cached indices produce.
func TestAgainstModel(t *testing.T) {
	for _, capacity := range []int{2, 4, 8, 64} {
		rng := rand.New(rand.NewPCG(uint64(capacity), 7))
		r, _ := New[uint32](capacity)
		var model []uint32
		var next uint32
		var full, highWater uint64
		var head uint64 // model of the consumer index, for wrap arithmetic
		for step := range 200_000 {
			switch op := rng.IntN(4); op {
			case 0: // TryPush
				ok := r.TryPush(next)
				if want := len(model) < capacity; ok != want {
					t.Fatalf("cap %d step %d: TryPush = %v with %d queued", capacity, step, ok, len(model))
				}
				if ok {
					model = append(model, next)
					next++
				} else {
					full++
				}
			case 1: // Reserve + Commit k
				n := rng.IntN(capacity+2) + 1
				w := r.Reserve(n)
				tail := head + uint64(len(model))
				toEnd := capacity - int(tail%uint64(capacity))
				want := min(n, capacity-len(model), toEnd)
				if len(w) != want {
					t.Fatalf("cap %d step %d: Reserve(%d) = %d slots, want %d", capacity, step, n, len(w), want)
				}
				if want == 0 {
					full++
					continue
				}
				k := rng.IntN(len(w) + 1)
				for i := range k {
					w[i] = next
					model = append(model, next)
					next++
				}
				r.Commit(k)
			case 2: // TryPop
				if len(model) > 0 {
					highWater = max(highWater, uint64(len(model)))
				}
				v, ok := r.TryPop()
				if ok != (len(model) > 0) || ok && v != model[0] {
					t.Fatalf("cap %d step %d: TryPop = %d,%v model %v", capacity, step, v, ok, model)
				}
				if ok {
					model = model[1:]
					head++
				}
			case 3: // Peek + Release k
				n := rng.IntN(capacity+2) + 1
				if len(model) > 0 {
					highWater = max(highWater, uint64(len(model)))
				}
				v := r.Peek(n)
				toEnd := capacity - int(head%uint64(capacity))
				if want := min(n, len(model), toEnd); len(v) != want {
					t.Fatalf("cap %d step %d: Peek(%d) = %d, want %d", capacity, step, n, len(v), want)
				}
				for i := range v {
					if v[i] != model[i] {
						t.Fatalf("cap %d step %d: Peek[%d] = %d, want %d", capacity, step, i, v[i], model[i])
					}
				}
				k := rng.IntN(len(v) + 1)
				r.Release(k)
				model = model[k:]
				head += uint64(k)
			}
			if r.Len() != len(model) {
				t.Fatalf("cap %d step %d: Len = %d, model %d", capacity, step, r.Len(), len(model))
			}
		}
		st := r.Stats()
		if st.Full != full || st.Pushed != uint64(next) || st.HighWater > highWater {
			t.Fatalf("cap %d: stats %+v, model full %d pushed %d high-water <= %d", capacity, st, full, next, highWater)
		}
	}
}
