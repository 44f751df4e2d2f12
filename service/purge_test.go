package service

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/model"
)

// newPurgeScene returns a service with retention on (max_age 1 minute,
// batches of 10) and dialogues "first" and "second" pending, whose first
// consent write closes entered and then waits until release is closed.
func newPurgeScene(t *testing.T) (d *Dialogues, clk *fake.Clock, repo *fakeRepo, entered, release chan struct{}) {
	release, entered = make(chan struct{}), make(chan struct{})
	var once sync.Once
	repo = &fakeRepo{}
	repo.beforeSave = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	d, clk = newTestService(t, repo, func(s *setup) {
		s.o.RetentionMaxAge, s.o.RetentionInterval, s.o.RetentionBatch = time.Minute, time.Hour, 10
	})
	for _, id := range []string{"first", "second"} {
		mustIngest(t, d, msg("c", id, "text of "+id))
	}
	return d, clk, repo, entered, release
}

// TestPurgeGivesWayToConsents: a purge batch that finds the writer busy
// waits, and a consent that arrives meanwhile is written before it.
func TestPurgeGivesWayToConsents(t *testing.T) {
	d, clk, repo, entered, release := newPurgeScene(t)
	ctx := context.Background()
	var order []string
	var mu sync.Mutex
	note := func(what string) {
		mu.Lock()
		order = append(order, what)
		mu.Unlock()
	}
	// The writes, in the order the repository sees them.
	repo.failSave = func(cs []model.Consent) bool {
		for _, c := range cs {
			note(c.Decision.DialogueID)
		}
		return false
	}
	repo.onPurge = func() { note("purge") }
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := d.Consent(ctx, "first", true, ""); err != nil {
			t.Error(err)
		}
	})
	<-entered
	clk.Advance(2 * time.Minute) // past max_age, within the TTL
	wg.Go(func() { d.Purge(ctx) })
	fake.WaitUntil(t, "the purge waits for its turn", d.commit.backgroundWaits)
	wg.Go(func() {
		if _, err := d.Consent(ctx, "second", true, ""); err != nil {
			t.Error(err)
		}
	})
	fake.WaitUntil(t, "the second consent queues", func() bool { return d.commit.queued() == 1 })
	close(release)
	wg.Wait()
	if got := fmt.Sprint(order); got != "[first second purge]" {
		t.Fatalf("writes in the order %s, want the waiting consent before the purge", got)
	}
	if got := d.Stats().RetentionDeletedMessages; got != 2 {
		t.Fatalf("the purge deleted %d messages, want both dialogues' (stored before it, both past max_age)", got)
	}
}

// TestPurgeIsNotStarvedByConsents: consents that keep arriving, so that one
// is always waiting, let a waiting purge batch through after yieldAfter of
// their transactions.
func TestPurgeIsNotStarvedByConsents(t *testing.T) {
	repo := &fakeRepo{}
	d, clk := newTestService(t, repo, func(s *setup) {
		s.o.RetentionMaxAge, s.o.RetentionInterval, s.o.RetentionBatch = time.Minute, time.Hour, 10
	})
	ctx := context.Background()
	const dialogues = 3 * yieldAfter
	for i := range dialogues {
		mustIngest(t, d, msg("c", fmt.Sprint("d", i), "text"))
	}
	clk.Advance(2 * time.Minute) // past max_age, within the TTL

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		next     int
		purgedAt = -1 // consent transactions begun before the purge ran
	)
	consent := func(i int) {
		wg.Go(func() {
			if _, err := d.Consent(ctx, fmt.Sprint("d", i), true, ""); err != nil {
				t.Error(err)
			}
		})
	}
	// Each consent transaction, as it starts, has the next consent queue
	// behind it, until the purge has run.
	repo.beforeSave = func() {
		mu.Lock()
		done := purgedAt >= 0 || next == dialogues
		i := next
		next++
		mu.Unlock()
		if done {
			return
		}
		consent(i)
		fake.WaitUntil(t, "the next consent queues", func() bool { return d.commit.queued() > 0 })
		if i == 1 { // the first transaction is under way: start the purge
			wg.Go(func() { d.Purge(ctx) })
			fake.WaitUntil(t, "the purge waits for its turn", d.commit.backgroundWaits)
		}
	}
	repo.onPurge = func() {
		mu.Lock()
		if purgedAt < 0 {
			purgedAt = repo.calls()
		}
		mu.Unlock()
	}
	mu.Lock()
	next = 1
	mu.Unlock()
	consent(0)
	wg.Wait()
	if purgedAt != yieldAfter {
		t.Fatalf("the purge ran after %d consent transactions, want %d", purgedAt, yieldAfter)
	}
	if got := d.Stats().RetentionDeletedMessages; got != yieldAfter {
		t.Fatalf("the purge deleted %d messages, want the %d stored before it", got, yieldAfter)
	}
}

// TestPurgeStopsWhileWaitingForItsTurn: a purge whose context ends while it
// waits for its turn returns without writing, and the writer is not left
// to it.
func TestPurgeStopsWhileWaitingForItsTurn(t *testing.T) {
	d, clk, repo, entered, release := newPurgeScene(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := d.Consent(context.Background(), "first", true, ""); err != nil {
			t.Error(err)
		}
	})
	<-entered
	clk.Advance(2 * time.Minute) // past max_age, within the TTL
	ctx, cancel := context.WithCancel(context.Background())
	purged := make(chan struct{})
	go func() { d.Purge(ctx); close(purged) }()
	fake.WaitUntil(t, "the purge waits for its turn", d.commit.backgroundWaits)
	cancel()
	<-purged
	close(release)
	wg.Wait()
	if _, err := d.Consent(context.Background(), "second", true, ""); err != nil {
		t.Fatalf("a consent after the stopped purge: %v", err)
	}
	if got := repo.purged(); len(got) != 0 {
		t.Fatalf("the stopped purge deleted before %v", got)
	}
}

// TestRunFinishesAnOwedPurge: a cutoff owed from before a restart is purged
// by Run, in the background, even with retention off, and only once.
func TestRunFinishesAnOwedPurge(t *testing.T) {
	repo := &fakeRepo{}
	owed := fake.Start.Add(time.Minute)
	d, clk := newTestService(t, repo, func(s *setup) { s.o.RetentionOwed, s.o.RetentionBatch = owed, 1 })
	ctx := context.Background()
	for _, id := range []string{"old", "new"} {
		mustIngest(t, d, msg("c", id, "text of "+id))
		mustIngest(t, d, msg("c", id, "more of "+id))
		if _, err := d.Consent(ctx, id, true, ""); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(runCtx); close(done) }()
	fake.WaitUntil(t, "the owed purge finishes", func() bool { return d.owed.Load() == 0 })
	cancel()
	<-done
	for _, before := range repo.purged() {
		if !before.Equal(owed) {
			t.Errorf("purged before %v, want the owed cutoff %v", before, owed)
		}
	}
	if got := repo.stored("old"); len(got) != 0 {
		t.Errorf("the owed purge left %q", got)
	}
	if got := repo.stored("new"); len(got) != 2 {
		t.Errorf("the owed purge deleted past its cutoff: %q left of 2", got)
	}
	d.Purge(ctx) // retention is off, and nothing is owed any more
	if got := len(repo.purged()); got != 3 {
		t.Errorf("a purge after the owed one ran DeleteCreatedBefore again (%d calls)", got)
	}
}
