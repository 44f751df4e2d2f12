package pending

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
)

// TestRedisLateDropLeavesANewTakeAlone: an instance whose take timed out
// must not drop the dialogue another instance has taken since.
func TestRedisLateDropLeavesANewTakeAlone(t *testing.T) {
	ctx := context.Background()
	s := openRedis(t, limits(nil), 200*time.Millisecond)
	m := model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: "x", CreatedAt: time.Now()}
	if _, err := s.Start(ctx, m); err != nil {
		t.Fatal(err)
	}
	first := take(t, s, "d")
	second := take(t, s, "d") // waits for the first take to time out
	if second == nil || second.token == first.token {
		t.Fatalf("second take: %+v", second)
	}
	if err := s.Drop(ctx, first); err != nil {
		t.Fatal(err)
	}
	if c := counts(t, s); c.Dialogues != 1 {
		t.Fatalf("a stale drop dropped the dialogue: %+v", c)
	}
	if err := s.Restore(ctx, second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, m); err != nil {
		t.Fatalf("the dialogue is not pending again: %v", err)
	}
}

// TestRedisSweepPassesTakenDialogues: dialogues taken for a decision and past
// their deadline stay while their decision is under way, and a sweep that
// meets more of them than a batch still ends.
func TestRedisSweepPassesTakenDialogues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl, n = 200 * time.Millisecond, reclaimBatch + 100
	s := openRedis(t, limits(func(l *Limits) { l.TTL, l.MaxDialogues = ttl, n }), time.Minute)
	for i := range n {
		id := "d" + strconv.Itoa(i)
		if _, err := s.Start(ctx, model.Message{CustomerID: "c", DialogueID: id, Language: "en", Text: "x", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if tk := take(t, s, id); tk == nil {
			t.Fatalf("Take %s found nothing", id)
		}
	}
	time.Sleep(2 * ttl) // every deadline passes while the dialogues are taken
	if err := s.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if c := counts(t, s); c.Dialogues != n || c.Expired != 0 {
		t.Fatalf("after the sweep: %+v; want every taken dialogue kept", c)
	}
}

// TestRedisReclaimsMoreThanABatch: before a cap refuses, the store reclaims
// as many expired dialogues as it takes, batch after batch.
func TestRedisReclaimsMoreThanABatch(t *testing.T) {
	ctx := context.Background()
	const ttl, n = 200 * time.Millisecond, 2*reclaimBatch + 10
	s := openRedis(t, limits(func(l *Limits) { l.TTL, l.MaxDialogues, l.MaxBytes = ttl, n+1, 3*n }), time.Minute)
	for i := range n {
		if _, err := s.Start(ctx, model.Message{CustomerID: "c", DialogueID: "d" + strconv.Itoa(i), Language: "en", Text: "x", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(ttl + 100*time.Millisecond)
	// A message of the whole byte cap (its text and tag) needs every
	// expired dialogue gone.
	whole := model.Message{CustomerID: "c", DialogueID: "new", Language: "en", Text: strings.Repeat("x", 3*n-len("en")), CreatedAt: time.Now()}
	if _, err := s.Start(ctx, whole); err != nil {
		t.Fatalf("a new dialogue with every other one expired: %v", err)
	}
	if c := counts(t, s); c.Dialogues != 1 || c.Bytes != 3*n || c.Expired != n {
		t.Fatalf("counts %+v, want 1 live and %d expired", c, n)
	}
}

// TestRedisDialogueOfAnEarlierHistoryIsDropped: a dialogue started before
// a failover (here, its recorded replication history changed by hand) is
// dropped when taken, counts and all; one started before histories were
// recorded is taken as before.
func TestRedisDialogueOfAnEarlierHistoryIsDropped(t *testing.T) {
	ctx := t.Context()
	s := openRedis(t, limits(nil), time.Minute)
	for _, id := range []string{"across", "legacy"} {
		for range 2 {
			m := model.Message{CustomerID: "c", DialogueID: id, Language: "en", Text: "xy", CreatedAt: time.Now()}
			if _, err := s.Start(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, cmd := range [][]string{{"HSET", s.o.Prefix + "d:across", "h", "0123456789abcdef0123456789abcdef01234567"}, {"HDEL", s.o.Prefix + "d:legacy", "h"}} {
		if err := s.c.Do(ctx, s.c.B().Arbitrary(cmd...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if tk := take(t, s, "across"); tk != nil {
		t.Fatalf("a dialogue of an earlier history was taken: %+v", tk)
	}
	legacy := model.Message{Language: "en", Text: "xy"}
	if c := counts(t, s); c.Dialogues != 1 || c.Messages != 2 || c.Bytes != 2*size(legacy) || c.Lost != 1 {
		t.Fatalf("counts %+v, want only the legacy dialogue, and one lost", c)
	}
	if n, err := s.Start(ctx, model.Message{CustomerID: "c2", DialogueID: "across", Language: "en", Text: "z", CreatedAt: time.Now()}); n != 1 || err != nil {
		t.Fatalf("the dropped dialogue's id starts anew: %d, %v", n, err)
	}
	if tk := take(t, s, "legacy"); tk == nil || len(tk.Messages) != 2 {
		t.Fatalf("the legacy dialogue: %+v", tk)
	}
}

// TestRedisScriptFailingPartWayKeepsTheTotals: Redis keeps what a script
// wrote before it failed. A message that fails in a shared script fails
// alone, and the totals always match the dialogues, so that the gauges and
// the caps stay true. The failures are made by giving keys the wrong type.
func TestRedisScriptFailingPartWayKeepsTheTotals(t *testing.T) {
	ctx := t.Context()
	s := openRedis(t, limits(nil), time.Minute)
	msg := func(id string) model.Message {
		return model.Message{CustomerID: "c", DialogueID: id, Language: "en", Text: "xy", CreatedAt: time.Now()}
	}
	do := func(cmd ...string) {
		t.Helper()
		if err := s.c.Do(ctx, s.c.B().Arbitrary(cmd...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"broken", "fine", "lost"} {
		if _, err := s.Start(ctx, msg(id)); err != nil {
			t.Fatal(err)
		}
	}
	// One script for two messages, the first of which fails part-way.
	do("DEL", s.o.Prefix+"m:broken")
	do("SET", s.o.Prefix+"m:broken", "not a list")
	batch := []*addReq{
		{args: [5]string{"broken", "c", "0", encodeMessage(msg("broken")), itoa(size(msg("broken")))}},
		{args: [5]string{"fine", "c", "0", encodeMessage(msg("fine")), itoa(size(msg("fine")))}},
	}
	s.runAdds(ctx, batch)
	if batch[0].err == nil || !strings.Contains(batch[0].err.Error(), "WRONGTYPE") {
		t.Errorf("the failing message: %d, %v; want its error", batch[0].res, batch[0].err)
	}
	if batch[1].err != nil || batch[1].res != 2 {
		t.Errorf("the other message: %d, %v; want it added as the second", batch[1].res, batch[1].err)
	}
	// A script that fails after it dropped a dialogue: taking one that
	// lived through a failover drops it, then fails on its customer's set.
	do("HSET", s.o.Prefix+"d:lost", "h", "0123456789abcdef0123456789abcdef01234567")
	do("SET", s.o.Prefix+"c:c", "not a set")
	if tk, err := s.Take(ctx, "lost"); err == nil {
		t.Fatalf("Take with the customer's set broken: %+v, want an error", tk)
	}
	do("DEL", s.o.Prefix+"c:c")
	do("SADD", s.o.Prefix+"c:c", "broken", "fine")
	tk := take(t, s, "fine")
	if tk == nil || len(tk.Messages) != 2 {
		t.Fatalf("the dialogue beside the failure: %+v", tk)
	}
	if err := s.Drop(ctx, tk); err != nil {
		t.Fatal(err)
	}
	// Left is "broken", with the two messages it counted: dropping it
	// leaves nothing, if the totals kept up with every script.
	if d, m, err := s.DropCustomer(ctx, "c"); d != 1 || m != 2 || err != nil {
		t.Fatalf("DropCustomer: %d dialogues, %d messages, %v; want 1 and 2", d, m, err)
	}
	wantCounts(t, s, Counts{})
}
