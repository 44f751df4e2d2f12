package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapFloor is how far the heap may grow past its live size before the
// collector runs, at the least. At the runtime's default (GOGC=100) a
// service whose live heap is small collects very often: serving analysts,
// whose pages are short-lived garbage, its 4 MiB live heap was collected
// about 27 times a second, and a first page took a quarter longer than
// with a floor (BENCHMARKS.md, target 3). Much as the JVM's -Xms, the heap
// may hold up to heapFloor of garbage, and once the live heap is larger the
// runtime's own rule (twice the live heap) applies unchanged, as does
// GOMEMLIMIT.
const heapFloor = 32 << 20

// runtimeHeapMinimum is the heap below which the runtime does not collect
// at GOGC=100; it scales with GOGC.
const runtimeHeapMinimum = 4 << 20

// floorGCPercent is the GOGC that lets a heap of live bytes grow by floor
// bytes, or by its own size when that is more (the runtime's default, 100).
// It is at most what makes the runtime's own minimum heap the floor: past
// that, a small live heap would be let grow by far more than floor.
func floorGCPercent(live, floor uint64) int {
	most := floor * 100 / runtimeHeapMinimum
	switch {
	case live >= floor:
		return 100
	case live == 0:
		return int(most)
	}
	return int(max(min(floor*100/live, most), 100))
}

// gcFloor sets GOGC after every collection from the live heap it left, so
// that the next one comes once the heap has grown by floor at least.
type gcFloor struct {
	floor uint64

	mu      sync.Mutex
	stopped bool
	percent int // as set last
	adjusts int // collections seen
	sample  []metrics.Sample
}

func newGCFloor(floor uint64) *gcFloor {
	return &gcFloor{floor: floor, percent: 100, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// keepHeapFloor keeps a floor of floor bytes from the next collection on
// and returns its stop.
func keepHeapFloor(floor uint64) (stop func()) {
	f := newGCFloor(floor)
	f.arm()
	return f.stop
}

// arm asks for adjust after the next collection: the object is garbage at
// once, so its cleanup runs when a collection has found it so, on the
// runtime's one cleanup goroutine. (It holds a pointer so that it is not
// put in a tiny block beside others, whose cleanups wait for them all.)
func (f *gcFloor) arm() {
	tick := &struct{ f *gcFloor }{f}
	runtime.AddCleanup(tick, func(f *gcFloor) {
		if f.adjust() {
			f.arm()
		}
	}, f)
}

// adjust sets GOGC from the live heap, unless stopped, and reports whether
// it did.
func (f *gcFloor) adjust() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample)
	var live uint64
	if f.sample[0].Value.Kind() == metrics.KindUint64 {
		live = f.sample[0].Value.Uint64()
	}
	if p := floorGCPercent(live, f.floor); p != f.percent {
		f.percent = p
		debug.SetGCPercent(p)
	}
	f.adjusts++
	return true
}

// stop puts GOGC back to the runtime's default.
func (f *gcFloor) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.stopped = true
		debug.SetGCPercent(100)
	}
}
