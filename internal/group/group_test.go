package group

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/data-api/data-api/internal/fake"
)

// leading reports whether a caller leads.
func (g *Group[T]) leading() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leader
}

// TestCallsWaitingGoInOneBatch: the calls that arrive while a batch is
// written go in the next batches, at most max each, in arrival order, and
// each caller returns once its own value is written.
func TestCallsWaitingGoInOneBatch(t *testing.T) {
	g := New[*int](3, 0)
	release := make(chan struct{})
	var (
		mu      sync.Mutex
		batches []string
		written = map[int]bool{}
	)
	write := func(batch []*int) {
		if *batch[0] == 0 {
			<-release
		}
		mu.Lock()
		defer mu.Unlock()
		var vs []int
		for _, v := range batch {
			vs = append(vs, *v)
			written[*v] = true
		}
		batches = append(batches, fmt.Sprint(vs))
	}
	var wg sync.WaitGroup
	do := func(v int) {
		wg.Go(func() {
			g.Do(&v, write)
			mu.Lock()
			defer mu.Unlock()
			if !written[v] {
				t.Errorf("Do(%d) returned before its value was written", v)
			}
		})
	}
	do(0)
	fake.WaitUntil(t, "the first call leads", g.leading)
	for v := 1; v <= 5; v++ {
		do(v)
		fake.WaitUntil(t, "the call queues", func() bool { n, _ := g.Waiting(); return n == v })
	}
	close(release)
	wg.Wait()
	if got := fmt.Sprint(batches); got != "[[0] [1 2 3] [4 5]]" {
		t.Fatalf("batches %s, want [[0] [1 2 3] [4 5]]", got)
	}
}

// TestBackgroundGivesWayButIsNotStarved: a background write waits while
// calls wait, goes once none does, and goes after yieldAfter batches even
// when calls keep waiting; one whose context ends while it waits never
// runs, and leaves the group to the calls.
func TestBackgroundGivesWayButIsNotStarved(t *testing.T) {
	g := New[*int](1, 2)
	release := make(chan struct{})
	var (
		mu    sync.Mutex
		order []string
	)
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	write := func(batch []*int) {
		if *batch[0] == 0 {
			<-release
		}
		note(fmt.Sprint(*batch[0]))
	}
	var wg sync.WaitGroup
	do := func(v int) {
		wg.Go(func() { g.Do(&v, write) })
		fake.WaitUntil(t, "the call leads or queues", func() bool {
			if v == 0 {
				return g.leading()
			}
			n, _ := g.Waiting()
			return n == v
		})
	}
	do(0)
	// Cancelled while it waits: never runs.
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan bool)
	go func() { gone <- g.InTurn(ctx, func() { note("cancelled") }) }()
	fake.WaitUntil(t, "the background write waits", func() bool { _, b := g.Waiting(); return b })
	cancel()
	if <-gone {
		t.Fatal("a background write whose context ended ran")
	}
	wg.Go(func() { g.InTurn(context.Background(), func() { note("background") }) })
	fake.WaitUntil(t, "the background write waits", func() bool { _, b := g.Waiting(); return b })
	for v := 1; v <= 4; v++ {
		do(v)
	}
	close(release)
	wg.Wait()
	// 0, being written when it came, and 1 are the two batches it waits
	// behind.
	if got := fmt.Sprint(order); got != "[0 1 background 2 3 4]" {
		t.Fatalf("writes in the order %s, want [0 1 background 2 3 4]", got)
	}
}
