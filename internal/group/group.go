// Package group gathers the calls that arrive while a batch is being
// written into the next batch, so that a burst of calls costs one write
// rather than one each: the service's consents (one transaction, one
// durable commit) and the Redis store's messages (one script).
//
// There is no goroutine of its own: the first caller to find a Group idle
// leads and writes a batch of what is waiting; when it is done, it hands
// leadership to the oldest caller left waiting, whose batch holds every
// call that arrived meanwhile. A lone call is written at once.
//
// A background write (a batch of the retention purge) may take its turn
// as a leader too, but gives way to calls: it goes when no call is waiting,
// or once it has waited behind yieldAfter batches of them in a row. So a
// call waits for one background write at most, however long the
// background work, and a steady stream of calls never stops it.
package group

import (
	"context"
	"sync"
)

// Group batches calls carrying values of type T. Create it with New.
type Group[T any] struct {
	max        int
	yieldAfter int

	mu     sync.Mutex
	queue  []*waiter[T]
	leader bool // a caller is writing a batch
	// background is the background write waiting for its turn, if any,
	// and passed the number of batches written meanwhile.
	background chan struct{}
	passed     int
}

type waiter[T any] struct {
	v    T
	lead bool
	wake chan struct{} // receives once: the batch is written, or lead is set
}

// New returns a Group whose batches hold at most max calls and whose
// background writes wait behind at most yieldAfter batches in a row.
func New[T any](max, yieldAfter int) *Group[T] {
	return &Group[T]{max: max, yieldAfter: yieldAfter}
}

// Do has v written in a batch, and returns once write has returned for it:
// write is called on a batch of values, v's among them, by this caller when
// it leads, or by another caller with its own write. So write sets in each
// value what its caller is to learn, and must not depend on the caller.
func (g *Group[T]) Do(v T, write func(batch []T)) {
	w := &waiter[T]{v: v, wake: make(chan struct{}, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.leader {
		g.mu.Unlock()
		<-w.wake
		if !w.lead {
			return
		}
		g.mu.Lock()
	}
	g.leader = true
	n := min(len(g.queue), g.max)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	values := make([]T, n)
	for i, b := range batch {
		values[i] = b.v
	}
	write(values)
	for _, b := range batch {
		if b != w {
			b.wake <- struct{}{}
		}
	}
	g.handOff(true)
}

// InTurn runs write as a background write, in its turn. It returns false,
// not having run it, when ctx ends first. One background write at a time:
// the caller makes sure of it.
func (g *Group[T]) InTurn(ctx context.Context, write func()) bool {
	g.mu.Lock()
	if g.leader {
		turn := make(chan struct{}, 1)
		g.background, g.passed = turn, 0
		g.mu.Unlock()
		select {
		case <-turn:
		case <-ctx.Done():
			g.mu.Lock()
			if g.background == turn {
				g.background = nil
				g.mu.Unlock()
				return false
			}
			g.mu.Unlock()
			g.handOff(false) // the turn came meanwhile: pass it on
			return false
		}
	} else {
		g.leader = true
		g.mu.Unlock()
	}
	write()
	g.handOff(false)
	return true
}

// Waiting returns how many calls wait for a batch, and whether a background
// write waits for its turn.
func (g *Group[T]) Waiting() (calls int, background bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue), g.background != nil
}

// handOff passes leadership on, when a leader is done: to the background
// write if it waits and no call does, or it has waited long enough; else
// to the oldest waiting call; else nobody. batch says whether the leader
// wrote a batch of calls.
func (g *Group[T]) handOff(batch bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if batch && g.background != nil {
		g.passed++
	}
	switch {
	case g.background != nil && (len(g.queue) == 0 || g.passed >= g.yieldAfter):
		g.background <- struct{}{}
		g.background = nil
	case len(g.queue) > 0:
		next := g.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	default:
		g.leader = false
	}
}
