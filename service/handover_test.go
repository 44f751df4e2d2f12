package service_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/service"
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
		crash func(t *testing.T, p service.PendingStore, repo service.Repository, h *model.Handover)
	}{
		{"after the take, before the commit", func(*testing.T, service.PendingStore, service.Repository, *model.Handover) {}},
		{"after the commit, before the release", func(t *testing.T, _ service.PendingStore, repo service.Repository, h *model.Handover) {
			c := model.Consent{Decision: model.Decision{DialogueID: h.DialogueID, CustomerID: h.CustomerID, Consent: true, Messages: len(h.Messages)}, Messages: h.Messages}
			if err := repo.SaveConsents(ctx, []model.Consent{c}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := caps{ttl: time.Hour, maxPending: 100, maxMessages: 100}
			pending := openRedis(t, c, takeTimeout)
			d, db, _ := suiteService(t, backend{"redis", func(*testing.T, *service.FakeClock, caps) (service.PendingStore, func(time.Duration)) {
				return pending, nil
			}}, c)
			for _, text := range texts {
				if _, err := d.Ingest(ctx, model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: text}); err != nil {
					t.Fatal(err)
				}
			}
			// The first instance takes the dialogue, gets as far as the step,
			// and dies: it never releases the dialogue.
			h, err := pending.Take(ctx, "d")
			if err != nil || h == nil {
				t.Fatalf("Take: %v, %v", h, err)
			}
			tc.crash(t, pending, db, h)

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
			got := stored(t, d, model.Filter{})
			if len(got) != len(texts) {
				t.Fatalf("stored %q, want each of %q exactly once", got, texts)
			}
			if st := d.Stats(); st.PendingDialogues != 0 || st.PendingMessages != 0 {
				t.Fatalf("still pending: %+v", st)
			}
			// The dead instance's release, should it come, changes nothing.
			if err := pending.Release(ctx, h, true); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisLateReleaseLeavesANewTakeAlone: an instance whose take timed out
// must not release the dialogue another instance has taken since.
func TestRedisLateReleaseLeavesANewTakeAlone(t *testing.T) {
	ctx := context.Background()
	pending := openRedis(t, caps{ttl: time.Hour, maxPending: 100, maxMessages: 100}, 200*time.Millisecond)
	m := model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: "x", CreatedAt: time.Now()}
	if _, err := pending.Append(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	first, err := pending.Take(ctx, "d")
	if err != nil || first == nil {
		t.Fatal(first, err)
	}
	second, err := pending.Take(ctx, "d") // waits for the first take to time out
	if err != nil || second == nil || second.Token == first.Token {
		t.Fatalf("second take: %+v, %v", second, err)
	}
	if err := pending.Release(ctx, first, true); err != nil {
		t.Fatal(err)
	}
	if c, _ := pending.Counts(ctx); c.Dialogues != 1 {
		t.Fatalf("a stale release dropped the dialogue: %+v", c)
	}
	if err := pending.Release(ctx, second, false); err != nil {
		t.Fatal(err)
	}
	if _, err := pending.Append(ctx, m, false); err != nil {
		t.Fatalf("the dialogue is not pending again: %v", err)
	}
}

// TestRedisSweepPassesTakenDialogues: dialogues taken for a decision and past
// their deadline stay while their decision is under way, and a sweep that
// meets a full batch of them still ends.
func TestRedisSweepPassesTakenDialogues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl, n = 200 * time.Millisecond, 600 // more than one sweep batch
	pending := openRedis(t, caps{ttl: ttl, maxPending: n, maxMessages: 1}, time.Minute)
	for i := range n {
		id := "d" + strconv.Itoa(i)
		if _, err := pending.Append(ctx, model.Message{CustomerID: "c", DialogueID: id, Language: "en", Text: "x", CreatedAt: time.Now()}, true); err != nil {
			t.Fatal(err)
		}
		if h, err := pending.Take(ctx, id); err != nil || h == nil {
			t.Fatalf("Take %s: %v, %v", id, h, err)
		}
	}
	time.Sleep(2 * ttl) // every deadline passes while the dialogues are taken
	if err := pending.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if c, err := pending.Counts(ctx); err != nil || c.Dialogues != n || c.Expired != 0 {
		t.Fatalf("after the sweep: %+v, %v; want every taken dialogue kept", c, err)
	}
}
