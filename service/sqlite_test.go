package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/internal/testserver"
	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/service"
)

// These tests run the service as the application builds it, over the real
// SQLite repository.

// newApp returns the application built from the default configuration, as
// cmd/data-api builds it, over a fresh SQLite file, with a fake clock;
// change, when set, adjusts the configuration.
func newApp(t testing.TB, change func(*config.Config)) (*app.App, *fake.Clock) {
	t.Helper()
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(t.TempDir(), "data.db")
	if change != nil {
		change(&cfg)
	}
	clk := fake.NewClock()
	a, err := app.New(t.Context(), cfg, app.Options{Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, clk
}

// withRedis keeps pending dialogues in the test Redis, under a prefix of
// t's own.
func withRedis(t testing.TB) func(*config.Config) {
	url := testserver.Redis(t)
	return func(c *config.Config) {
		c.Dialogues.Store, c.Redis.URL = "redis", url
		c.Redis.Prefix = fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	}
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
	a, clk := newApp(t, func(c *config.Config) { c.Retention.MaxAge, c.Retention.BatchSize = 24*time.Hour, 3 })
	d := a.Service
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
	a, clk := newApp(t, func(c *config.Config) {
		c.Retention.MaxAge, c.Retention.BatchSize, c.Retention.Interval = time.Hour, 10, time.Millisecond
	})
	d := a.Service
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
	a, _ := newApp(t, nil)
	d := a.Service
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

// TestConsentRacesIngest races a consent with new messages of its dialogue,
// on each pending store: the consent stores a prefix of the acknowledged
// messages, and those after it start the dialogue anew.
func TestConsentRacesIngest(t *testing.T) {
	for _, store := range []struct {
		name   string
		config func(t *testing.T) func(*config.Config)
	}{
		{"memory", func(*testing.T) func(*config.Config) { return nil }},
		{"redis", func(t *testing.T) func(*config.Config) { return withRedis(t) }},
	} {
		t.Run(store.name, func(t *testing.T) {
			a, _ := newApp(t, store.config(t))
			d := a.Service
			ctx := context.Background()
			for round := range 20 {
				id := "r" + strconv.Itoa(round)
				ingest(t, d, "c", id, "0")
				var acked []string
				var wg sync.WaitGroup
				wg.Go(func() {
					for i := 1; i < 10; i++ {
						if _, err := d.Ingest(ctx, model.Message{CustomerID: "c", DialogueID: id, Language: "en", Text: strconv.Itoa(i)}); err == nil {
							acked = append(acked, strconv.Itoa(i))
						}
					}
				})
				var out model.Outcome
				var err error
				wg.Go(func() { out, err = d.Consent(ctx, id, true, "") })
				wg.Wait()
				if err != nil {
					t.Fatal(err)
				}
				all := append([]string{"0"}, acked...)
				got := stored(t, d, model.Filter{})
				slices.Reverse(got)
				if len(got) != out.Stored || !slices.Equal(got, all[:len(got)]) {
					t.Fatalf("round %d: stored %q, not a prefix of %q", round, got, all)
				}
				if st := d.Stats(); st.PendingMessages != int64(len(all)-len(got)) {
					t.Fatalf("round %d: %d pending, want %d", round, st.PendingMessages, len(all)-len(got))
				}
				if _, err := d.Consent(ctx, id, false, ""); err != nil { // clean up for the next round
					t.Fatal(err)
				}
			}
		})
	}
}

func TestDialogue(t *testing.T) {
	a, clk := newApp(t, func(c *config.Config) { c.Dialogues.MaxMessages = 5 })
	d := a.Service
	ctx := context.Background()
	for i := range 3 {
		ingest(t, d, "c1", "d1", fmt.Sprint("m", i))
		clk.Advance(time.Millisecond)
	}
	if _, err := d.Consent(ctx, "d1", true, "bot"); err != nil {
		t.Fatal(err)
	}
	got, err := d.Dialogue(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range got.Messages {
		texts = append(texts, m.Text)
	}
	if !slices.Equal(texts, []string{"m0", "m1", "m2"}) || !got.Decision.Consent || got.Decision.CustomerID != "c1" || !got.Decision.DecidedAt.Equal(fake.Start.Add(3*time.Millisecond)) {
		t.Errorf("got %q, %+v", texts, got.Decision)
	}
	for _, id := range []string{"never", "bad id"} {
		if _, err := d.Dialogue(ctx, id); !errors.Is(err, model.ErrNotFound) && !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Dialogue(%q): got %v", id, err)
		}
	}
	// At most model.MaxLimit messages however low dialogues.max_messages:
	// the bound is on the reply, not on what one consent stores.
	var msgs []model.Message
	for i := range model.MaxLimit + 1 {
		msgs = append(msgs, model.Message{CustomerID: "c2", DialogueID: "d2", Language: "en", Text: "x", CreatedAt: fake.Start.Add(time.Duration(i))})
	}
	dec := model.Decision{DialogueID: "d2", CustomerID: "c2", Consent: true, DecidedAt: fake.Start}
	if err := a.DB.SaveConsents(ctx, []model.Consent{{Decision: dec, Messages: msgs[:model.MaxLimit]}}); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Dialogue(ctx, "d2"); err != nil || len(got.Messages) != model.MaxLimit {
		t.Errorf("a dialogue of %d messages: got %d, %v", model.MaxLimit, len(got.Messages), err)
	}
	if err := a.DB.SaveConsents(ctx, []model.Consent{{Decision: dec, Messages: msgs[model.MaxLimit:]}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dialogue(ctx, "d2"); !errors.Is(err, model.ErrTooLarge) {
		t.Errorf("a dialogue of %d messages: got %v, want ErrTooLarge", model.MaxLimit+1, err)
	}
	// Withdrawn: nothing stored.
	if _, err := d.Consent(ctx, "d1", false, "bot"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dialogue(ctx, "d1"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("a withdrawn dialogue: got %v, want ErrNotFound", err)
	}
}

// TestRestartFinishesACutShortPurgeInTheBackground: a database that lacks a
// retention cutoff its deletion journal holds (here a copy put back by hand;
// in production a purge cut short by a restart) is served at once, and the
// service purges the cutoff in the background, even with retention off.
func TestRestartFinishesACutShortPurgeInTheBackground(t *testing.T) {
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(t.TempDir(), "data.db")
	cfg.Retention.MaxAge, cfg.Retention.BatchSize = time.Hour, 1
	clk := fake.NewClock()
	ctx := context.Background()
	start := func(cfg config.Config) *app.App {
		t.Helper()
		a, err := app.New(ctx, cfg, app.Options{Clock: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start(cfg)
	for _, id := range []string{"old", "new"} {
		if id == "new" {
			clk.Advance(2 * time.Hour) // "old" is past max_age, "new" is not
		}
		ingest(t, a.Service, "c", id, id+" a")
		ingest(t, a.Service, "c", id, id+" b")
		if _, err := a.Service.Consent(ctx, id, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	copyOf, err := os.ReadFile(cfg.Database.DSN)
	if err != nil {
		t.Fatal(err)
	}
	a = start(cfg)
	a.Service.Purge(ctx) // journals its cutoff, deletes "old"
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Database.DSN, copyOf, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg.Retention.MaxAge = 0 // retention turned off since
	a = start(cfg)
	defer a.Close()
	d := a.Service
	if got := stored(t, d, model.Filter{}); len(got) != 4 {
		t.Fatalf("start-up purged before serving: %q left, want all 4", got)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(runCtx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.Stats().RetentionDeletedMessages < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // waiting for the background job, not for a result
	}
	cancel()
	<-done
	if got := stored(t, d, model.Filter{}); fmt.Sprint(got) != "[new b new a]" {
		t.Fatalf("after the background purge: %q, want only the new dialogue's", got)
	}
}
