package service_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

// These tests run the service over the real SQLite repository.

func openService(t *testing.T, o service.Options) (*service.Dialogues, *repository.DB, *service.FakeClock) {
	t.Helper()
	db, err := repository.Open(t.Context(), repository.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "data.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := service.NewFakeClock()
	o.Clock = clk.Now
	o.TTL, o.SweepInterval = 30*time.Minute, time.Minute
	o.MaxPending, o.MaxMessages, o.Shards, o.MaxTextBytes, o.CommitBatch = 10000, 1000, 8, 8192, 64
	return service.New(db, o), db, clk
}

func ingest(t *testing.T, d *service.Dialogues, customer, dialogue, text string) {
	t.Helper()
	if _, err := d.Ingest(context.Background(), model.Message{CustomerID: customer, DialogueID: dialogue, Language: "en", Text: text}); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
}

func stored(t *testing.T, d *service.Dialogues, f model.Filter) []string {
	t.Helper()
	var out []string
	if err := d.Export(context.Background(), f, func(m model.StoredMessage) error {
		out = append(out, m.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRetentionDeletesExactlyWhatIsPastMaxAge(t *testing.T) {
	d, _, clk := openService(t, service.Options{RetentionMaxAge: 24 * time.Hour, RetentionBatch: 3, RetentionInterval: time.Hour})
	ctx := context.Background()
	// Ten dialogues of two messages, one dialogue per hour.
	for i := range 10 {
		id := fmt.Sprintf("d%d", i)
		ingest(t, d, "c", id, id+" a")
		ingest(t, d, "c", id, id+" b")
		if _, err := d.Consent(ctx, id, true, ""); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	// d<i> was created at hour i; the clock is at hour 10. At hour 29 + 1ns
	// the cut-off is hour 5 + 1ns: d0..d5 are past max_age, d6..d9 are not.
	clk.Advance(19*time.Hour + time.Nanosecond)
	d.Purge(ctx)
	got := stored(t, d, model.Filter{})
	want := []string{"d9 b", "d9 a", "d8 b", "d8 a", "d7 b", "d7 a", "d6 b", "d6 a"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after purge: %q, want %q", got, want)
	}
	if n := d.Stats().RetentionDeletedMessages; n != 12 {
		t.Fatalf("retention deleted %d, want 12", n)
	}
	// A message exactly max_age old stays: only older ones go.
	clk.Advance(time.Hour - time.Nanosecond) // now = d6's time + 24h
	d.Purge(ctx)
	if got := stored(t, d, model.Filter{}); len(got) != 8 {
		t.Fatalf("a message exactly max_age old was deleted: %q", got)
	}
}

func TestRetentionRunsInTheBackground(t *testing.T) {
	d, _, clk := openService(t, service.Options{RetentionMaxAge: time.Hour, RetentionBatch: 10, RetentionInterval: time.Millisecond})
	ingest(t, d, "c", "old", "old")
	if _, err := d.Consent(context.Background(), "old", true, ""); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.Stats().RetentionDeletedMessages == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // waiting for the background job, not for a result
	}
	cancel()
	<-done
	if n := d.Stats().RetentionDeletedMessages; n != 1 {
		t.Fatalf("background retention deleted %d, want 1", n)
	}
}

// TestErasureRacesConsentAndIngest runs an erasure, a consent of one of the
// customer's dialogues and a new message of another at once, many times.
// Whatever the interleaving, the outcome is one of the legal orders: the
// dialogue is stored and then erased, or dropped and its consent is a 404;
// never half of each.
func TestErasureRacesConsentAndIngest(t *testing.T) {
	d, _, _ := openService(t, service.Options{})
	ctx := context.Background()
	for round := range 100 {
		customer := fmt.Sprintf("cust%d", round)
		dlg, other := customer+"-d", customer+"-other"
		const n = 5
		for i := range n {
			ingest(t, d, customer, dlg, fmt.Sprintf("m%d", i))
		}
		var (
			wg         sync.WaitGroup
			consent    model.Outcome
			consentErr error
			erasure    model.ErasureOutcome
			erasureErr error
			ingestErr  error
		)
		wg.Go(func() { consent, consentErr = d.Consent(ctx, dlg, true, "") })
		wg.Go(func() { erasure, erasureErr = d.Erase(ctx, customer, "") })
		wg.Go(func() {
			_, ingestErr = d.Ingest(ctx, model.Message{CustomerID: customer, DialogueID: other, Language: "en", Text: "new"})
		})
		wg.Wait()
		if erasureErr != nil || ingestErr != nil {
			t.Fatalf("round %d: erase %v, ingest %v", round, erasureErr, ingestErr)
		}
		if left := stored(t, d, model.Filter{CustomerID: customer}); len(left) != 0 {
			t.Fatalf("round %d: %d messages survived the erasure", round, len(left))
		}
		// Did the new message land before the erasure (dropped) or after (pending)?
		refusal, err := d.Consent(ctx, other, false, "")
		if err != nil {
			t.Fatal(err)
		}
		otherDropped := 1 - refusal.Dropped
		switch {
		case consentErr == nil: // consent, then erasure
			if consent.Stored != n || erasure.Deleted != n || erasure.Dropped != otherDropped {
				t.Fatalf("round %d: consent first, yet consent %+v, erasure %+v", round, consent, erasure)
			}
		case errors.Is(consentErr, model.ErrNotFound): // erasure, then consent
			if erasure.Deleted != 0 || erasure.Dropped != n+otherDropped {
				t.Fatalf("round %d: erasure first, yet erasure %+v", round, erasure)
			}
			if _, err := d.Decision(ctx, dlg); !errors.Is(err, model.ErrNotFound) {
				t.Fatalf("round %d: a consent answered 404 but a decision is recorded: %v", round, err)
			}
		default:
			t.Fatalf("round %d: consent: %v", round, consentErr)
		}
		if st := d.Stats(); st.PendingDialogues != 0 || st.PendingMessages != 0 {
			t.Fatalf("round %d: left pending %+v", round, st)
		}
	}
}
