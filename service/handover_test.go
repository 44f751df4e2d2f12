package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/pending"
)

// TestRedisHandOverSurvivesACrash kills (by abandoning) an instance at each
// step of a consent's hand-over from Redis to the database, and checks that
// another instance's retry neither loses nor duplicates the dialogue.
func TestRedisHandOverSurvivesACrash(t *testing.T) {
	const takeTimeout = 300 * time.Millisecond
	ctx := context.Background()
	texts := []string{"one", "two", "three"}
	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, save func(context.Context, []model.Consent) error, taken *pending.Taken)
	}{
		{"after the take, before the commit", func(*testing.T, func(context.Context, []model.Consent) error, *pending.Taken) {}},
		{"after the commit, before the drop", func(t *testing.T, save func(context.Context, []model.Consent) error, tk *pending.Taken) {
			c := model.Consent{Decision: model.Decision{DialogueID: tk.DialogueID, CustomerID: tk.CustomerID, Consent: true, Messages: len(tk.Messages)}, Messages: tk.Messages}
			if err := save(ctx, []model.Consent{c}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Two instances on one database and one Redis.
			var cfg config.Config
			a, _ := newApp(t, func(c *config.Config) {
				withRedis(t)(c)
				c.Redis.TakeTimeout = takeTimeout
				cfg = *c
			})
			dead, err := app.New(ctx, cfg, app.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer dead.Close()
			d := a.Service
			for _, text := range texts {
				ingest(t, d, "c", "d", text)
			}
			// The first instance takes the dialogue, gets as far as the
			// step, and dies: it never ends the take.
			tk, err := dead.Pending.Take(ctx, "d")
			if err != nil || tk == nil {
				t.Fatalf("Take: %v, %v", tk, err)
			}
			tc.crash(t, dead.DB.SaveConsents, tk)

			// Another instance's retry waits for the take to time out,
			// then finishes the hand-over.
			start := time.Now()
			out, err := d.Consent(ctx, "d", true, "")
			if err != nil {
				t.Fatalf("retried consent: %v", err)
			}
			if waited := time.Since(start); waited < takeTimeout/2 {
				t.Fatalf("the retry did not wait for the abandoned take (%v)", waited)
			}
			if out.Stored != len(texts) {
				t.Fatalf("retried consent stored %d, want %d", out.Stored, len(texts))
			}
			if got := stored(t, d, model.Filter{}); len(got) != len(texts) {
				t.Fatalf("stored %q, want each of %q exactly once", got, texts)
			}
			if st := d.Stats(); st.PendingDialogues != 0 || st.PendingMessages != 0 {
				t.Fatalf("still pending: %+v", st)
			}
			// The dead instance's drop, should it come, changes nothing.
			if err := dead.Pending.Drop(ctx, tk); err != nil {
				t.Fatal(err)
			}
		})
	}
}
