package service

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/pending"
)

const ttl = 30 * time.Minute

// setup is what a test may change of the service it runs.
type setup struct {
	limits pending.Limits
	shards int
	o      Options
}

// newTestService returns the service over repo and a memory store, with a
// fake clock.
func newTestService(t *testing.T, repo *fakeRepo, change func(*setup)) (*Dialogues, *fake.Clock) {
	t.Helper()
	clk := fake.NewClock()
	s := setup{
		limits: pending.Limits{TTL: ttl, MaxDialogues: 1000, MaxMessages: 100, MaxBytes: 1 << 20},
		shards: 8,
		o:      Options{MaxTextBytes: 8192, SweepInterval: time.Minute, CommitBatch: 64},
	}
	if change != nil {
		change(&s)
	}
	store, err := pending.NewMemory(pending.MemoryOptions{Limits: s.limits, Shards: s.shards, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.o.Clock = clk.Now
	d, err := New(repo, store, s.o)
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

func msg(customer, dialogue, text string) model.Message {
	return model.Message{CustomerID: customer, DialogueID: dialogue, Language: "EN", Text: text}
}

func mustIngest(t *testing.T, d *Dialogues, m model.Message) int {
	t.Helper()
	n, err := d.Ingest(context.Background(), m)
	if err != nil {
		t.Fatalf("Ingest(%s/%s): %v", m.CustomerID, m.DialogueID, err)
	}
	return n
}

func TestTTL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		idle    time.Duration
		wantErr error // of Consent(true) after the idle time
	}{
		{"just before the TTL", ttl - time.Nanosecond, nil},
		{"at the TTL", ttl, model.ErrNotFound},
		{"after the TTL", ttl + time.Minute, model.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := &fakeRepo{}
			d, clk := newTestService(t, repo, nil)
			mustIngest(t, d, msg("c1", "d1", "hello"))
			clk.Advance(tc.idle)
			out, err := d.Consent(context.Background(), "d1", true, "")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Consent after %v idle: err %v, want %v", tc.idle, err, tc.wantErr)
			}
			wantStored := 1
			if tc.wantErr != nil {
				wantStored = 0
			}
			if out.Stored != wantStored || len(repo.stored("d1")) != wantStored {
				t.Fatalf("stored %d (repo %d), want %d", out.Stored, len(repo.stored("d1")), wantStored)
			}
			if got := d.Stats().PendingDialogues; got != 0 {
				t.Fatalf("pending dialogues %d, want 0", got)
			}
		})
	}
}

func TestSweepReclaimsOnlyExpired(t *testing.T) {
	d, clk := newTestService(t, &fakeRepo{}, nil)
	mustIngest(t, d, msg("c1", "old", "a"))
	clk.Advance(ttl / 2)
	mustIngest(t, d, msg("c1", "new", "b"))
	clk.Advance(ttl / 2)
	d.Sweep(context.Background())
	st := d.Stats()
	if st.PendingDialogues != 1 || st.PendingMessages != 1 || st.EvictedTTL != 1 {
		t.Fatalf("after sweep: %+v; want 1 pending dialogue, 1 message, 1 eviction", st)
	}
}

// TestSweepFreesMemoryAfterAFlood checks that sweeps hand memory back once
// a flood of pending dialogues has expired, whether in one sweep or over
// several, and not for the usual trickle.
func TestSweepFreesMemoryAfterAFlood(t *testing.T) {
	freed := 0
	d, clk := newTestService(t, &fakeRepo{}, func(s *setup) {
		s.limits.MaxBytes = 4 * freeMemoryAfter
		s.o.FreeMemory = func() { freed++ }
	})
	ctx := context.Background()
	text := strings.Repeat("x", 8000)
	n := 0
	flood := func(dialogues int) {
		for range dialogues {
			n++
			for range 100 {
				mustIngest(t, d, msg("c", "flood-"+strconv.Itoa(n), text))
			}
		}
	}
	const perDialogue = 100*(8000+65) + 280 // pendingHeap of one
	want := func(step string, calls int) {
		t.Helper()
		if freed != calls {
			t.Fatalf("%s: FreeMemory called %d times, want %d", step, freed, calls)
		}
	}

	// Just under freeMemoryAfter expires: no call.
	flood(freeMemoryAfter / perDialogue)
	clk.Advance(ttl)
	d.Sweep(ctx)
	want("a flood just under freeMemoryAfter", 0)

	// Just over, expiring in one sweep: one call, and none for a sweep
	// that drops nothing.
	flood(freeMemoryAfter/perDialogue + 1)
	clk.Advance(ttl)
	d.Sweep(ctx)
	want("a flood that expired in one sweep", 1)
	d.Sweep(ctx)
	want("a sweep that dropped nothing", 1)

	// Just over, expiring in two sweeps: one call, at the second.
	flood(freeMemoryAfter/perDialogue/2 + 1)
	clk.Advance(ttl / 2)
	flood(freeMemoryAfter/perDialogue/2 + 1)
	d.Sweep(ctx)
	clk.Advance(ttl / 2)
	d.Sweep(ctx)
	want("half a flood expired", 1)
	clk.Advance(ttl / 2)
	d.Sweep(ctx)
	want("a flood that expired in two sweeps", 2)

	// A large pending set loses freeMemoryAfter but keeps more than half:
	// no call, since the collection would cost much and return little.
	flood(freeMemoryAfter/perDialogue + 1)
	clk.Advance(ttl / 2)
	flood(freeMemoryAfter/perDialogue*2 + 2)
	d.Sweep(ctx)
	clk.Advance(ttl / 2)
	d.Sweep(ctx)
	want("a third of a large pending set expired", 2)
}

func TestExpiredDialogueRestartsFresh(t *testing.T) {
	repo := &fakeRepo{}
	d, clk := newTestService(t, repo, nil)
	mustIngest(t, d, msg("c1", "d1", "forgotten"))
	clk.Advance(ttl)
	// The expired dialogue never reached the database, so anyone may start it.
	if n := mustIngest(t, d, msg("c2", "d1", "fresh")); n != 1 {
		t.Fatalf("pending after restart %d, want 1", n)
	}
	if _, err := d.Consent(context.Background(), "d1", true, ""); err != nil {
		t.Fatal(err)
	}
	if got := repo.stored("d1"); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("stored %q, want [fresh]", got)
	}
}

func TestCaps(t *testing.T) {
	d, _ := newTestService(t, &fakeRepo{}, func(s *setup) { s.limits.MaxDialogues, s.limits.MaxMessages = 3, 2 })
	ctx := context.Background()
	for i := range 3 {
		mustIngest(t, d, msg("c", "d"+strconv.Itoa(i), "x"))
	}
	if _, err := d.Ingest(ctx, msg("c", "d3", "x")); !errors.Is(err, model.ErrFull) {
		t.Fatalf("4th dialogue: err %v, want ErrFull", err)
	}
	// Existing dialogues still accept messages, up to max_messages.
	if n := mustIngest(t, d, msg("c", "d0", "y")); n != 2 {
		t.Fatalf("pending %d, want 2", n)
	}
	if _, err := d.Ingest(ctx, msg("c", "d0", "z")); !errors.Is(err, model.ErrLimit) {
		t.Fatalf("3rd message: err %v, want ErrLimit", err)
	}
	// A decision frees a place.
	if _, err := d.Consent(ctx, "d1", false, ""); err != nil {
		t.Fatal(err)
	}
	mustIngest(t, d, msg("c", "d3", "x"))
	st := d.Stats()
	if st.RejectedFull != 1 || st.RejectedLimit != 1 || st.PendingDialogues != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOwnerCustomer(t *testing.T) {
	repo := &fakeRepo{}
	d, _ := newTestService(t, repo, nil)
	ctx := context.Background()
	mustIngest(t, d, msg("alice", "d1", "hi"))
	if _, err := d.Ingest(ctx, msg("bob", "d1", "hi")); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("pending dialogue of another customer: err %v, want ErrConflict", err)
	}
	if _, err := d.Consent(ctx, "d1", true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ingest(ctx, msg("bob", "d1", "hi")); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("decided dialogue of another customer: err %v, want ErrConflict", err)
	}
	// The owner may start the dialogue anew; it needs its own consent.
	if n := mustIngest(t, d, msg("alice", "d1", "again")); n != 1 {
		t.Fatalf("pending %d, want 1", n)
	}
}

func TestValidation(t *testing.T) {
	d, _ := newTestService(t, &fakeRepo{}, func(s *setup) { s.o.MaxTextBytes = 10 })
	for _, tc := range []struct {
		m      model.Message
		fields []string
	}{
		{model.Message{CustomerID: "", DialogueID: "d", Language: "en", Text: "x"}, []string{"customerId"}},
		{model.Message{CustomerID: "c", DialogueID: "..", Language: "en", Text: "x"}, []string{"dialogId"}},
		{model.Message{CustomerID: "c", DialogueID: "d", Language: "not a tag", Text: "x"}, []string{"language"}},
		{model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: " \n\t"}, []string{"text"}},
		{model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: "01234567890"}, []string{"text"}},
		{model.Message{CustomerID: "c/", DialogueID: "d d", Language: "", Text: ""}, []string{"customerId", "dialogId", "language", "text"}},
	} {
		_, err := d.Ingest(context.Background(), tc.m)
		var v *model.ValidationError
		if !errors.As(err, &v) {
			t.Fatalf("Ingest(%+v): err %v, want a ValidationError", tc.m, err)
		}
		var fields []string
		for _, p := range v.Problems {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("Ingest(%+v): problems with %v, want %v", tc.m, fields, tc.fields)
		}
	}
	if st := d.Stats(); st.PendingDialogues != 0 {
		t.Fatalf("a rejected message was kept: %+v", st)
	}
	// The right of access checks its customer id before any read.
	for _, id := range []string{"", "..", "c/1", strings.Repeat("c", model.MaxIDLength+1)} {
		err := d.CustomerData(context.Background(), id, func(model.CustomerRecord) error { return nil })
		var v *model.ValidationError
		if !errors.As(err, &v) || v.Problems[0].Field != "customerId" {
			t.Errorf("CustomerData(%q): got %v, want a problem with customerId", id, err)
		}
	}
}

func TestConsentStoresCanonicalLanguagesAndTimes(t *testing.T) {
	repo := &fakeRepo{}
	d, clk := newTestService(t, repo, nil)
	start := clk.Now()
	mustIngest(t, d, model.Message{CustomerID: "c", DialogueID: "d", Language: "zh-hant-tw", Text: "一"})
	clk.Advance(time.Nanosecond)
	mustIngest(t, d, model.Message{CustomerID: "c", DialogueID: "d", Language: "EN", Text: "two"})
	if _, err := d.Consent(context.Background(), "d", true, "bot"); err != nil {
		t.Fatal(err)
	}
	want := []model.StoredMessage{
		{ID: 1, Message: model.Message{CustomerID: "c", DialogueID: "d", Language: "zh-Hant-TW", Text: "一", CreatedAt: start}},
		{ID: 2, Message: model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: "two", CreatedAt: start.Add(time.Nanosecond)}},
	}
	if !slices.Equal(repo.messages, want) {
		t.Fatalf("stored %+v, want %+v", repo.messages, want)
	}
	dec := repo.decisions[0]
	if dec.CustomerID != "c" || !dec.Consent || dec.Messages != 2 || dec.KeyName != "bot" || !dec.DecidedAt.Equal(start.Add(time.Nanosecond)) {
		t.Fatalf("ledger entry %+v", dec)
	}
}

func TestConsentRetryAndNotFound(t *testing.T) {
	repo := &fakeRepo{}
	d, _ := newTestService(t, repo, nil)
	ctx := context.Background()
	if _, err := d.Consent(ctx, "never", true, ""); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("consent to a dialogue never seen: %v, want ErrNotFound", err)
	}
	mustIngest(t, d, msg("c", "d", "x"))
	if out, err := d.Consent(ctx, "d", true, ""); err != nil || out.Stored != 1 {
		t.Fatalf("first consent: %+v %v", out, err)
	}
	out, err := d.Consent(ctx, "d", true, "")
	if err != nil || out.Stored != 0 || out.CustomerID != "c" {
		t.Fatalf("retried consent: %+v %v; want stored 0 for customer c", out, err)
	}
	if len(repo.decisions) != 1 {
		t.Fatalf("a retried consent recorded %d decisions, want 1", len(repo.decisions))
	}
	// After a refusal, consent has nothing to store.
	if _, err := d.Consent(ctx, "d", false, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Consent(ctx, "d", true, ""); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("consent after refusal: %v, want ErrNotFound", err)
	}
}

func TestRefusal(t *testing.T) {
	repo := &fakeRepo{}
	d, _ := newTestService(t, repo, nil)
	ctx := context.Background()
	mustIngest(t, d, msg("c", "d", "a"))
	if _, err := d.Consent(ctx, "d", true, ""); err != nil {
		t.Fatal(err)
	}
	mustIngest(t, d, msg("c", "d", "b"))
	mustIngest(t, d, msg("c", "d", "c"))
	out, err := d.Consent(ctx, "d", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if out != (model.Outcome{CustomerID: "c", Dropped: 2, Deleted: 1}) {
		t.Fatalf("refusal outcome %+v", out)
	}
	if got := repo.stored("d"); len(got) != 0 {
		t.Fatalf("stored after withdrawal: %q", got)
	}
	// Idempotent, also for a dialogue never seen.
	for _, id := range []string{"d", "never"} {
		if _, err := d.Consent(ctx, id, false, ""); err != nil {
			t.Fatalf("refusal of %s: %v", id, err)
		}
	}
	last := repo.decisions[len(repo.decisions)-1]
	if last.DialogueID != "never" || last.CustomerID != "" || last.Consent {
		t.Fatalf("ledger entry for a dialogue never seen: %+v", last)
	}
}

func TestFailedWriteLosesNothing(t *testing.T) {
	fail := true
	repo := &fakeRepo{failSave: func([]model.Consent) bool { return fail }}
	d, clk := newTestService(t, repo, nil)
	ctx := context.Background()
	mustIngest(t, d, msg("c", "d", "one"))
	clk.Advance(ttl / 2)
	mustIngest(t, d, msg("c", "d", "two"))
	if _, err := d.Consent(ctx, "d", true, ""); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("consent with a failing database: %v, want ErrUnavailable", err)
	}
	if st := d.Stats(); st.PendingDialogues != 1 || st.PendingMessages != 2 {
		t.Fatalf("after a failed write: %+v, want the dialogue pending", st)
	}
	// The deadline is the one the dialogue had: still measured from "two".
	clk.Advance(ttl/2 - time.Second)
	fail = false
	out, err := d.Consent(ctx, "d", true, "")
	if err != nil || out.Stored != 2 {
		t.Fatalf("retry: %+v %v", out, err)
	}
	if got := repo.stored("d"); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("stored %q", got)
	}
}

func TestGroupCommitIsolatesAFailingDialogue(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	repo := &fakeRepo{
		failSave: func(cs []model.Consent) bool {
			for _, c := range cs {
				if c.Decision.DialogueID == "bad" {
					return true
				}
			}
			return false
		},
	}
	// Hold the first write until every other consent is queued behind it.
	repo.beforeSave = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	d, _ := newTestService(t, repo, nil)
	ctx := context.Background()
	ids := []string{"first", "a", "bad", "b", "c"}
	for _, id := range ids {
		mustIngest(t, d, msg("cust", id, "text of "+id))
	}
	errs := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	consent := func(id string) {
		_, err := d.Consent(ctx, id, true, "")
		mu.Lock()
		errs[id] = err
		mu.Unlock()
	}
	wg.Go(func() { consent("first") })
	<-entered
	for _, id := range ids[1:] {
		wg.Go(func() { consent(id) })
	}
	for d.commit.queued() < len(ids)-1 {
		time.Sleep(time.Millisecond) // waiting for goroutines to queue, not for a result
	}
	close(release)
	wg.Wait()
	for _, id := range ids {
		if want := id != "bad"; (errs[id] == nil) != want {
			t.Errorf("consent %s: err %v", id, errs[id])
		}
		if id != "bad" && len(repo.stored(id)) != 1 {
			t.Errorf("dialogue %s not stored", id)
		}
	}
	if got := d.Stats().PendingDialogues; got != 1 {
		t.Fatalf("pending %d, want 1 (the failed one)", got)
	}
	// first alone; then a, bad, b, c together (fails); then each alone.
	if repo.saveCalls != 6 {
		t.Fatalf("SaveConsents called %d times, want 6", repo.saveCalls)
	}
}

func TestErasure(t *testing.T) {
	repo := &fakeRepo{}
	d, _ := newTestService(t, repo, nil)
	ctx := context.Background()
	mustIngest(t, d, msg("alice", "stored", "a1"))
	if _, err := d.Consent(ctx, "stored", true, ""); err != nil {
		t.Fatal(err)
	}
	mustIngest(t, d, msg("alice", "pending", "a2"))
	mustIngest(t, d, msg("alice", "pending", "a3"))
	mustIngest(t, d, msg("bob", "other", "b1"))
	out, err := d.Erase(ctx, "alice", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if out != (model.ErasureOutcome{Dropped: 2, Deleted: 1}) {
		t.Fatalf("erasure outcome %+v", out)
	}
	if _, err := d.Consent(ctx, "pending", true, ""); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("consent of an erased pending dialogue: %v, want ErrNotFound", err)
	}
	if st := d.Stats(); st.PendingDialogues != 1 || st.EvictedErasure != 1 {
		t.Fatalf("stats %+v", st)
	}
	if len(repo.erasures) != 1 || repo.erasures[0].KeyName != "admin" || repo.erasures[0].Messages != 1 {
		t.Fatalf("erasure records %+v", repo.erasures)
	}
}

// TestConsentRacesIngestAndEviction hammers one dialogue with messages, a
// consent and TTL sweeps at once, many times: whatever the interleaving, the
// consent stores a prefix of the dialogue's acknowledged messages and every
// other acknowledged message is still pending, never lost or split.
func TestConsentRacesIngestAndEviction(t *testing.T) {
	for round := range 200 {
		repo := &fakeRepo{}
		d, clk := newTestService(t, repo, func(s *setup) { s.shards = 1 })
		ctx := context.Background()
		id := "d" + strconv.Itoa(round)
		mustIngest(t, d, msg("c", id, "0"))
		var acked []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 1; i < 20; i++ {
				text := strconv.Itoa(i)
				if _, err := d.Ingest(ctx, msg("c", id, text)); err == nil {
					mu.Lock()
					acked = append(acked, text)
					mu.Unlock()
				}
			}
		})
		var out model.Outcome
		var cerr error
		wg.Go(func() { out, cerr = d.Consent(ctx, id, true, "") })
		wg.Go(func() { d.Sweep(ctx) })
		wg.Wait()
		if cerr != nil {
			t.Fatalf("round %d: consent: %v", round, cerr)
		}
		stored := repo.stored(id)
		all := append([]string{"0"}, acked...)
		if len(stored) != out.Stored || !slices.Equal(stored, all[:len(stored)]) {
			t.Fatalf("round %d: stored %q (reported %d), not a prefix of %q", round, stored, out.Stored, all)
		}
		if got, want := d.Stats().PendingMessages, int64(len(all)-len(stored)); got != want {
			t.Fatalf("round %d: %d pending, want %d", round, got, want)
		}
		// And an expired dialogue is dropped whole.
		clk.Advance(ttl)
		d.Sweep(ctx)
		if st := d.Stats(); st.PendingMessages != 0 || st.PendingDialogues != 0 {
			t.Fatalf("round %d: after expiry %+v", round, st)
		}
	}
}

func TestNewRejectsOptionsOutOfRange(t *testing.T) {
	store, err := pending.NewMemory(pending.MemoryOptions{Limits: pending.Limits{TTL: ttl, MaxDialogues: 1, MaxMessages: 1, MaxBytes: 1}, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(&fakeRepo{}, store, Options{RetentionMaxAge: time.Hour})
	for _, name := range []string{"MaxTextBytes", "SweepInterval", "CommitBatch", "RetentionInterval", "RetentionBatch"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("New with zero options: %v, want it to name %s", err, name)
		}
	}
	d, err := New(&fakeRepo{}, store, Options{MaxTextBytes: 1, SweepInterval: time.Minute, CommitBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if d.o.Clock == nil || d.o.Logger == nil || d.o.ObserveWrite == nil || len(d.o.CursorSecret) == 0 {
		t.Fatalf("New left a default unset: %+v", d.o)
	}
}
