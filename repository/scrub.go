package repository

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Scrub retries back off from scrubRetryMin to scrubRetryMax while the scrub
// fails (on SQLite: while a long read holds an old snapshot).
const (
	scrubRetryMin = time.Second
	scrubRetryMax = 30 * time.Second
)

// scrubber runs a scrub in a goroutine of its own after deletions, so that a
// withdrawal or a purge does not wait for it, and coalesces the requests:
// at most one is pending, and it is served by one scrub that starts after
// it was made. A burst of withdrawals thus costs one scrub, or two when one
// is running as it starts, rather than one each, while the first deletion
// is scrubbed at once, not after a debounce delay that would leave its text
// in the write-ahead log for nothing. A scrub that fails is retried with
// backoff until it succeeds.
type scrubber struct {
	run  func(context.Context) error
	log  *slog.Logger
	wake chan struct{} // holds the pending request, if any

	mu        sync.Mutex
	requested uint64        // requests made
	served    uint64        // requests served by a completed scrub
	changed   chan struct{} // closed and replaced when served changes
	runs      int           // scrubs run, for tests

	cancel context.CancelFunc
	done   chan struct{}
}

func startScrubber(run func(context.Context) error, log *slog.Logger) *scrubber {
	ctx, cancel := context.WithCancel(context.Background())
	s := &scrubber{
		run:     run,
		log:     log,
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go s.loop(ctx)
	return s
}

// request asks for a scrub after a deletion. It never waits.
func (s *scrubber) request() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.requested++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a request is pending already: its scrub serves this one too
	}
}

func (s *scrubber) loop(ctx context.Context) {
	defer close(s.done)
	var retry time.Duration // after a failure, the wait before the next try
	for {
		var after <-chan time.Time
		if retry > 0 {
			after = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-after:
		}
		s.mu.Lock()
		target := s.requested
		s.runs++
		s.mu.Unlock()
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry = min(max(2*retry, scrubRetryMin), scrubRetryMax)
			s.log.Warn("scrubbing the database files after a deletion failed; retrying", "err", err, "retry_in", retry.String())
			continue
		}
		retry = 0
		s.mu.Lock()
		s.served = target
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// wait returns once every request made before it is served, or when ctx
// ends.
func (s *scrubber) wait(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	target := s.requested
	s.mu.Unlock()
	for {
		s.mu.Lock()
		served, changed := s.served, s.changed
		s.mu.Unlock()
		if served >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// stop ends the goroutine, interrupting a scrub in progress.
func (s *scrubber) stop() {
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
}
