package main

import (
	"context"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/data-api/data-api/internal/fake"
)

func TestFloorGCPercent(t *testing.T) {
	const floor = 32 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 800},             // nothing live: the runtime's minimum heap is the floor
		{1 << 20, 800},       // likewise, not 3,200%, whose minimum heap would be 128 MiB
		{4 << 20, 800},       // 4 MiB may grow by 32
		{16 << 20, 200},      // 16 MiB by 32
		{30 << 20, 106},      // 30 MiB by 31.8
		{floor - 1<<10, 100}, // just under the floor: never below the default
		{32 << 20, 100},      // from the floor on, the runtime's own rule
		{1 << 30, 100},       // a large pending store: unchanged
	} {
		if got := floorGCPercent(c.live, floor); got != c.want {
			t.Errorf("floorGCPercent(%d KiB, 32 MiB) = %d, want %d", c.live>>10, got, c.want)
		}
	}
}

// gogc reads the GOGC the runtime runs with.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func (f *gcFloor) collections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adjusts
}

// collectUntil collects until f has seen n collections, or fails.
func collectUntil(t *testing.T, f *gcFloor, n int) {
	t.Helper()
	for range 1000 {
		if f.collections() >= n {
			return
		}
		runtime.GC()
		runtime.Gosched()
	}
	t.Fatalf("1,000 collections, and the floor saw %d, want %d", f.collections(), n)
}

func TestHeapFloorFollowsEveryCollection(t *testing.T) {
	if gogc() != 100 {
		t.Skip("GOGC is set for this test process")
	}
	// A floor far above this test's live heap, so that it must raise GOGC.
	const floor = 256 << 20
	f := newGCFloor(floor)
	t.Cleanup(f.stop)
	f.arm()
	for n := 1; n <= 3; n++ { // re-armed after each collection
		collectUntil(t, f, n)
		// Read under the floor's lock, so that no later collection's
		// adjust comes between.
		f.mu.Lock()
		set, got := f.percent, gogc()
		f.mu.Unlock()
		if set <= 100 || set > floorGCPercent(0, floor) {
			t.Fatalf("after collection %d the floor set GOGC %d, want it raised, at most %d", n, set, floorGCPercent(0, floor))
		}
		if got != uint64(set) {
			t.Fatalf("after collection %d GOGC = %d, the floor set %d", n, got, set)
		}
	}
	f.stop()
	if got := gogc(); got != 100 {
		t.Errorf("after stop GOGC = %d, want 100", got)
	}
	// Stopped, it sets nothing more.
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 100 {
		t.Errorf("a collection after stop set GOGC = %d, want 100", got)
	}
}

// TestRunKeepsTheOperatorsGOGC: with GOGC in the environment the service
// keeps no floor, and says so; without, it says it keeps one.
func TestRunKeepsTheOperatorsGOGC(t *testing.T) {
	if gogc() != 100 {
		t.Skip("GOGC is set for this test process")
	}
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"GOGC=100"}, "GOGC set: no heap floor"},
		{nil, "heap floor: the collector waits"},
	} {
		addr := freeAddr(t)
		environ := append([]string{
			"DATA_API_SERVER_ADDR=" + addr,
			"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
		}, c.env...)
		logs := &fake.Log{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, nil, environ, logs) }()
		waitReady(t, "http://"+addr, done)
		if c.env != nil {
			// Collections while it serves leave the operator's GOGC alone.
			runtime.GC()
			runtime.GC()
			if got := gogc(); got != 100 {
				t.Errorf("with GOGC=100 set, the service runs at GOGC %d", got)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run returned %v", err)
		}
		if !strings.Contains(logs.String(), c.want) {
			t.Errorf("environment %q: the log lacks %q", c.env, c.want)
		}
	}
}
