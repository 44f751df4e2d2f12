package service

import (
	"context"
	"sync"
	"time"

	"github.com/data-api/data-api/model"
)

// commitTimeout bounds one group-commit transaction. The write runs detached
// from any one caller's context: a client that hangs up must not abort the
// consents of the others in the same transaction.
const commitTimeout = 30 * time.Second

// yieldAfter is how many consent transactions in a row a background write
// waits behind at most before it takes its turn.
const yieldAfter = 8

// committer gathers the consents waiting at the same moment into one
// transaction (group commit), so that a burst of consents costs one durable
// commit rather than one each. There is no goroutine of its own: the first
// caller to find it idle becomes the leader and writes a batch; when it is
// done, it hands leadership to the oldest waiter, whose batch holds every
// consent that arrived meanwhile. A lone consent is written at once.
//
// A background write (a batch of the retention purge) takes its turn as a
// leader too, but gives way to consents: it goes when no consent is waiting,
// or once it has waited behind yieldAfter consent transactions in a row. So
// a consent waits for one purge batch at most, however long the purge, and a
// steady stream of consents never stops the purge.
type committer struct {
	max  int
	repo Repository
	// wrote is told of each write: when it started and how it ended.
	wrote func(op string, start time.Time, err error)

	mu     sync.Mutex
	queue  []*commitReq
	leader bool // a caller is writing a batch
	// background is the background write waiting for its turn, if any,
	// and passed the number of consent transactions written meanwhile.
	background chan struct{}
	passed     int
}

type commitReq struct {
	c    model.Consent
	err  error
	lead bool
	wake chan struct{} // receives once: the result is in, or lead is set
}

// do writes c durably, possibly together with other consents, and returns
// c's own outcome: a batch that fails is retried one consent at a time, so
// one bad dialogue never fails another.
func (cm *committer) do(ctx context.Context, c model.Consent) error {
	r := &commitReq{c: c, wake: make(chan struct{}, 1)}
	cm.mu.Lock()
	cm.queue = append(cm.queue, r)
	if cm.leader {
		cm.mu.Unlock()
		<-r.wake
		if !r.lead {
			return r.err
		}
		cm.mu.Lock()
	}
	cm.leader = true
	n := min(len(cm.queue), cm.max)
	batch := cm.queue[:n:n]
	cm.queue = cm.queue[n:]
	cm.mu.Unlock()

	cm.write(context.WithoutCancel(ctx), batch)
	for _, b := range batch {
		if b != r {
			b.wake <- struct{}{}
		}
	}
	cm.handOff(true)
	return r.err
}

// inTurn runs write as a background write, in its turn (see committer). It
// returns false, not having run it, when ctx ends first. One background
// write at a time: the caller makes sure of it.
func (cm *committer) inTurn(ctx context.Context, write func()) bool {
	cm.mu.Lock()
	if cm.leader {
		turn := make(chan struct{}, 1)
		cm.background, cm.passed = turn, 0
		cm.mu.Unlock()
		select {
		case <-turn:
		case <-ctx.Done():
			cm.mu.Lock()
			if cm.background == turn {
				cm.background = nil
				cm.mu.Unlock()
				return false
			}
			cm.mu.Unlock()
			cm.handOff(false) // the turn came meanwhile: pass it on
			return false
		}
	} else {
		cm.leader = true
		cm.mu.Unlock()
	}
	write()
	cm.handOff(false)
	return true
}

// handOff passes leadership on, when a leader is done: to the background
// write if it waits and no consent does, or it has waited long enough; else
// to the oldest waiting consent; else nobody. consents says whether the
// leader wrote consents.
func (cm *committer) handOff(consents bool) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if consents && cm.background != nil {
		cm.passed++
	}
	switch {
	case cm.background != nil && (len(cm.queue) == 0 || cm.passed >= yieldAfter):
		cm.background <- struct{}{}
		cm.background = nil
	case len(cm.queue) > 0:
		next := cm.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	default:
		cm.leader = false
	}
}

func (cm *committer) write(ctx context.Context, batch []*commitReq) {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	cs := make([]model.Consent, len(batch))
	for i, b := range batch {
		cs[i] = b.c
	}
	err := cm.save(ctx, cs)
	if err == nil || len(batch) == 1 {
		for _, b := range batch {
			b.err = err
		}
		return
	}
	for _, b := range batch {
		b.err = cm.save(ctx, []model.Consent{b.c})
	}
}

func (cm *committer) save(ctx context.Context, cs []model.Consent) error {
	start := time.Now()
	err := cm.repo.SaveConsents(ctx, cs)
	cm.wrote("consent", start, err)
	return err
}
