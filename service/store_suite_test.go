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

	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

// caps are the limits of a store under test.
type caps struct {
	ttl                     time.Duration
	maxPending, maxMessages int
	maxBytes                int64 // 0: no cap
}

// A pending-store backend for the suite: the service's own memory, or Redis.
type backend struct {
	name string
	// open returns the store (nil: the service's memory) and a function that
	// lets time pass for the TTL.
	open func(t *testing.T, clk *service.FakeClock, c caps) (service.PendingStore, func(time.Duration))
}

var memoryBackend = backend{"memory", func(t *testing.T, clk *service.FakeClock, _ caps) (service.PendingStore, func(time.Duration)) {
	return nil, clk.Advance
}}

var redisBackend = backend{"redis", func(t *testing.T, _ *service.FakeClock, c caps) (service.PendingStore, func(time.Duration)) {
	return openRedis(t, c, time.Minute), func(d time.Duration) {
		time.Sleep(d) // Redis expires keys by its own clock
	}
}}

// openRedis connects to the Redis named by DATA_API_TEST_REDIS_URL with a
// key prefix of this test's own. Without the variable the test is skipped,
// loudly, unless DATA_API_REQUIRE_SERVERS=1 (CI), where it fails.
func openRedis(t *testing.T, c caps, takeTimeout time.Duration) *repository.RedisPending {
	t.Helper()
	url := os.Getenv("DATA_API_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("DATA_API_REQUIRE_SERVERS") == "1" {
			t.Fatal("DATA_API_TEST_REDIS_URL not set, and DATA_API_REQUIRE_SERVERS=1")
		}
		t.Skip("DATA_API_TEST_REDIS_URL not set: Redis store suite NOT run")
	}
	r, err := repository.OpenRedis(t.Context(), repository.RedisOptions{
		URL: url, Prefix: fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano()),
		TTL: c.ttl, MaxPending: c.maxPending, MaxMessages: c.maxMessages, MaxBytes: c.maxBytes, TakeTimeout: takeTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func suiteService(t *testing.T, b backend, c caps) (*service.Dialogues, *repository.DB, func(time.Duration)) {
	t.Helper()
	db, err := repository.Open(t.Context(), repository.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "data.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := service.NewFakeClock()
	pending, advance := b.open(t, clk, c)
	return service.New(db, service.Options{
		Clock: clk.Now, TTL: c.ttl, SweepInterval: time.Minute, MaxPending: c.maxPending, MaxMessages: c.maxMessages, MaxBytes: c.maxBytes,
		Shards: 8, MaxTextBytes: 8192, CommitBatch: 64, Pending: pending,
	}), db, advance
}

func TestStoreSuite(t *testing.T) {
	for _, b := range []backend{memoryBackend, redisBackend} {
		t.Run(b.name, func(t *testing.T) { runStoreSuite(t, b) })
	}
}

func runStoreSuite(t *testing.T, b backend) {
	ctx := context.Background()
	in := func(customer, dialogue, text string) model.Message {
		return model.Message{CustomerID: customer, DialogueID: dialogue, Language: "EN", Text: text}
	}

	t.Run("FlowAndCounts", func(t *testing.T) {
		d, _, _ := suiteService(t, b, caps{ttl: time.Hour, maxPending: 100, maxMessages: 100})
		for i := range 3 {
			if n, err := d.Ingest(ctx, in("c", "d1", "m"+strconv.Itoa(i))); err != nil || n != i+1 {
				t.Fatalf("Ingest %d: %d, %v", i, n, err)
			}
		}
		if _, err := d.Ingest(ctx, in("c", "d2", "x")); err != nil {
			t.Fatal(err)
		}
		if st := d.Stats(); st.PendingDialogues != 2 || st.PendingMessages != 4 {
			t.Fatalf("stats %+v, want 2 dialogues, 4 messages", st)
		}
		out, err := d.Consent(ctx, "d1", true, "")
		if err != nil || out.Stored != 3 || out.CustomerID != "c" {
			t.Fatalf("Consent: %+v, %v", out, err)
		}
		if got := stored(t, d, model.Filter{}); !slices.Equal(got, []string{"m2", "m1", "m0"}) {
			t.Fatalf("stored %q", got)
		}
		if st := d.Stats(); st.PendingDialogues != 1 || st.PendingMessages != 1 {
			t.Fatalf("stats after consent %+v", st)
		}
		// Closed: the next message starts a new dialogue.
		if n, err := d.Ingest(ctx, in("c", "d1", "again")); err != nil || n != 1 {
			t.Fatalf("after consent: %d, %v", n, err)
		}
		if out, err := d.Consent(ctx, "d1", false, ""); err != nil || out.Dropped != 1 || out.Deleted != 3 {
			t.Fatalf("refusal: %+v, %v", out, err)
		}
	})

	t.Run("OwnerAndCaps", func(t *testing.T) {
		d, _, _ := suiteService(t, b, caps{ttl: time.Hour, maxPending: 2, maxMessages: 2})
		mustIngest := func(m model.Message) {
			t.Helper()
			if _, err := d.Ingest(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		mustIngest(in("alice", "d1", "1"))
		if _, err := d.Ingest(ctx, in("bob", "d1", "x")); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("other customer: %v, want ErrConflict", err)
		}
		mustIngest(in("alice", "d1", "2"))
		if _, err := d.Ingest(ctx, in("alice", "d1", "3")); !errors.Is(err, model.ErrLimit) {
			t.Fatalf("third message: %v, want ErrLimit", err)
		}
		mustIngest(in("alice", "d2", "1"))
		if _, err := d.Ingest(ctx, in("alice", "d3", "1")); !errors.Is(err, model.ErrFull) {
			t.Fatalf("third dialogue: %v, want ErrFull", err)
		}
		if _, err := d.Consent(ctx, "d1", true, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Ingest(ctx, in("bob", "d1", "x")); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("decided dialogue, other customer: %v, want ErrConflict", err)
		}
		mustIngest(in("alice", "d3", "1")) // a place was freed
	})

	t.Run("ByteCap", func(t *testing.T) {
		d, _, _ := suiteService(t, b, caps{ttl: time.Hour, maxPending: 100, maxMessages: 100, maxBytes: 10})
		for _, m := range []model.Message{in("c", "d1", "1234"), in("c", "d1", "5678")} {
			if _, err := d.Ingest(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		// Past the cap both an existing and a new dialogue are refused.
		for _, m := range []model.Message{in("c", "d1", "abc"), in("c", "d2", "abc")} {
			if _, err := d.Ingest(ctx, m); !errors.Is(err, model.ErrFullBytes) || !errors.Is(err, model.ErrFull) {
				t.Fatalf("message past the byte cap to %s: %v, want ErrFullBytes", m.DialogueID, err)
			}
		}
		if _, err := d.Ingest(ctx, in("c", "d2", "ab")); err != nil { // exactly at the cap
			t.Fatalf("message up to the cap: %v", err)
		}
		if st := d.Stats(); st.PendingBytes != 10 || st.PendingDialogues != 2 || st.RejectedBytes != 2 {
			t.Fatalf("stats %+v, want 10 bytes in 2 dialogues and 2 refusals", st)
		}
		// A decision frees its bytes.
		if _, err := d.Consent(ctx, "d1", true, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Ingest(ctx, in("c", "d3", "12345678")); err != nil {
			t.Fatalf("after a consent freed 8 bytes: %v", err)
		}
		if st := d.Stats(); st.PendingBytes != 10 {
			t.Fatalf("pending bytes %d, want 10", st.PendingBytes)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		const ttl = 1500 * time.Millisecond
		d, _, advance := suiteService(t, b, caps{ttl: ttl, maxPending: 100, maxMessages: 100})
		for _, id := range []string{"kept", "expiring"} {
			if _, err := d.Ingest(ctx, in("c", id, "x")); err != nil {
				t.Fatal(err)
			}
		}
		advance(ttl * 2 / 3)
		if _, err := d.Ingest(ctx, in("c", "kept", "y")); err != nil { // slides its deadline
			t.Fatal(err)
		}
		advance(ttl*2/3 + 50*time.Millisecond)
		if _, err := d.Consent(ctx, "expiring", true, ""); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("expired dialogue: %v, want ErrNotFound", err)
		}
		out, err := d.Consent(ctx, "kept", true, "")
		if err != nil || out.Stored != 2 {
			t.Fatalf("refreshed dialogue: %+v, %v", out, err)
		}
		d.Sweep(ctx)
		if st := d.Stats(); st.PendingDialogues != 0 || st.PendingMessages != 0 || st.PendingBytes != 0 || st.EvictedTTL != 1 {
			t.Fatalf("stats %+v, want nothing pending and 1 expired", st)
		}
	})

	t.Run("ErasureDropsPending", func(t *testing.T) {
		d, _, _ := suiteService(t, b, caps{ttl: time.Hour, maxPending: 100, maxMessages: 100})
		for _, m := range []model.Message{in("alice", "a1", "1"), in("alice", "a1", "2"), in("alice", "a2", "1"), in("bob", "b1", "1")} {
			if _, err := d.Ingest(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		out, err := d.Erase(ctx, "alice", "")
		if err != nil || out.Dropped != 3 {
			t.Fatalf("Erase: %+v, %v", out, err)
		}
		if _, err := d.Consent(ctx, "a1", true, ""); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("consent of an erased dialogue: %v", err)
		}
		if st := d.Stats(); st.PendingDialogues != 1 || st.PendingMessages != 1 || st.PendingBytes != 1 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("ConsentRacesIngest", func(t *testing.T) {
		d, _, _ := suiteService(t, b, caps{ttl: time.Hour, maxPending: 1000, maxMessages: 1000})
		for round := range 20 {
			id := "r" + strconv.Itoa(round)
			if _, err := d.Ingest(ctx, in("c", id, "0")); err != nil {
				t.Fatal(err)
			}
			var acked []string
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 1; i < 10; i++ {
					if _, err := d.Ingest(ctx, in("c", id, strconv.Itoa(i))); err == nil {
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
			if _, err := d.Consent(ctx, id, false, ""); err != nil { // clean up for the next round
				t.Fatal(err)
			}
		}
	})
}
