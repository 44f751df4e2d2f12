package pending

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/internal/testserver"
	"github.com/data-api/data-api/model"
)

// A backend of the contract suite: it opens an empty store with limits and
// returns its clock and a function that lets time pass for the TTL.
type backend struct {
	name string
	open func(t *testing.T, l Limits) (Store, func() time.Time, func(time.Duration))
}

var backends = []backend{
	{"memory", func(t *testing.T, l Limits) (Store, func() time.Time, func(time.Duration)) {
		clk := fake.NewClock()
		s, err := NewMemory(MemoryOptions{Limits: l, Shards: 8, Clock: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s, clk.Now, clk.Advance
	}},
	{"redis", func(t *testing.T, l Limits) (Store, func() time.Time, func(time.Duration)) {
		// Redis expires keys by its own clock.
		return openRedis(t, l, time.Minute), time.Now, time.Sleep
	}},
	{"sentinel", func(t *testing.T, l Limits) (Store, func() time.Time, func(time.Duration)) {
		// The primary of a Sentinel group.
		master, addrs := testserver.Sentinel(t)
		r, err := OpenRedis(t.Context(), RedisOptions{
			Limits: l, Sentinel: Sentinel{Master: master, Addrs: addrs}, Prefix: testPrefix(t), TakeTimeout: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r, time.Now, time.Sleep
	}},
}

// testPrefix is a Redis key prefix of the test's own.
func testPrefix(t *testing.T) string {
	return fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
}

// openRedis connects to the test Redis with a key prefix of the test's own.
func openRedis(t *testing.T, l Limits, takeTimeout time.Duration) *Redis {
	t.Helper()
	r, err := OpenRedis(t.Context(), RedisOptions{
		Limits: l, URL: testserver.Redis(t), Prefix: testPrefix(t), TakeTimeout: takeTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// limits are roomy but for what a test pins.
func limits(change func(*Limits)) Limits {
	l := Limits{TTL: time.Hour, MaxDialogues: 100, MaxMessages: 100, MaxBytes: 1 << 20}
	if change != nil {
		change(&l)
	}
	return l
}

// suite is the contract every store keeps.
var suite = []struct {
	name string
	test func(t *testing.T, b backend)
}{
	{"AppendNeedsALiveDialogue", testAppendNeedsALiveDialogue},
	{"OwnerIsTheFirstCustomer", testOwnerIsTheFirstCustomer},
	{"MaxMessagesExactly", testMaxMessagesExactly},
	{"MaxDialoguesExactly", testMaxDialoguesExactly},
	{"MaxBytesExactly", testMaxBytesExactly},
	{"TagBytesCount", testTagBytesCount},
	{"ExpiredButUnsweptCountsForNothing", testExpiredButUnsweptCountsForNothing},
	{"TTLSlidesWithEachMessage", testTTLSlidesWithEachMessage},
	{"TakeDropRestore", testTakeDropRestore},
	{"TakenDialogueWaitsAndNeverExpires", testTakenDialogueWaitsAndNeverExpires},
	{"DropCustomer", testDropCustomer},
	{"SweepCountsExpired", testSweepCountsExpired},
	{"SweepFollowsTheSlidingTTL", testSweepFollowsTheSlidingTTL},
	{"ParallelAppendsCountExactly", testParallelAppendsCountExactly},
	{"ParallelAppendsKeepTheCaps", testParallelAppendsKeepTheCaps},
}

func TestStores(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range suite {
				t.Run(tc.name, func(t *testing.T) { tc.test(t, b) })
			}
		})
	}
}

// messages makes messages received at the store's clock.
type messages struct {
	t   *testing.T
	s   Store
	now func() time.Time
}

// lang is the language of the test messages: its bytes count against the
// byte cap with the text's.
const lang = "en"

func (ms messages) msg(customer, dialogue, text string) model.Message {
	return model.Message{CustomerID: customer, DialogueID: dialogue, Language: lang, Text: text, CreatedAt: ms.now()}
}

// add appends or, for a dialogue not live, starts, and requires n messages.
func (ms messages) add(customer, dialogue, text string, n int) {
	ms.t.Helper()
	m := ms.msg(customer, dialogue, text)
	got, err := ms.s.Append(ms.t.Context(), m)
	if errors.Is(err, model.ErrNotFound) {
		got, err = ms.s.Start(ms.t.Context(), m)
	}
	if err != nil || got != n {
		ms.t.Fatalf("add %s/%s %q: %d, %v; want %d", customer, dialogue, text, got, err, n)
	}
}

func (ms messages) refused(kind error, do func(context.Context, model.Message) (int, error), customer, dialogue, text string) {
	ms.t.Helper()
	if n, err := do(ms.t.Context(), ms.msg(customer, dialogue, text)); !errors.Is(err, kind) {
		ms.t.Fatalf("%s/%s %q: %d, %v; want %v", customer, dialogue, text, n, err, kind)
	}
}

func counts(t *testing.T, s Store) Counts {
	t.Helper()
	c, err := s.Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantCounts(t *testing.T, s Store, want Counts) {
	t.Helper()
	if got := counts(t, s); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
}

func take(t *testing.T, s Store, id string) *Taken {
	t.Helper()
	tk, err := s.Take(t.Context(), id)
	if err != nil {
		t.Fatalf("Take %s: %v", id, err)
	}
	return tk
}

func texts(tk *Taken) []string {
	var out []string
	for _, m := range tk.Messages {
		out = append(out, m.Text)
	}
	return out
}

func testAppendNeedsALiveDialogue(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(nil))
	ms := messages{t, s, now}
	ms.refused(model.ErrNotFound, s.Append, "c", "d", "hello")
	wantCounts(t, s, Counts{})
	if n, err := s.Start(t.Context(), ms.msg("c", "d", "hello")); err != nil || n != 1 {
		t.Fatalf("Start: %d, %v", n, err)
	}
	if n, err := s.Append(t.Context(), ms.msg("c", "d", "again")); err != nil || n != 2 {
		t.Fatalf("Append: %d, %v", n, err)
	}
	// Two first messages that race: the second Start appends.
	if n, err := s.Start(t.Context(), ms.msg("c", "d", "late start")); err != nil || n != 3 {
		t.Fatalf("Start of a live dialogue: %d, %v", n, err)
	}
	wantCounts(t, s, Counts{Dialogues: 1, Messages: 3, Bytes: int64(len("hello" + "again" + "late start" + lang + lang + lang))})
	tk := take(t, s, "d")
	if tk.CustomerID != "c" || fmt.Sprint(texts(tk)) != "[hello again late start]" {
		t.Fatalf("taken %+v", tk)
	}
	for i, m := range tk.Messages {
		if m.DialogueID != "d" || m.CustomerID != "c" || m.Language != "en" || m.CreatedAt.IsZero() {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
}

func testOwnerIsTheFirstCustomer(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(nil))
	ms := messages{t, s, now}
	ms.add("alice", "d", "1", 1)
	ms.refused(model.ErrConflict, s.Append, "bob", "d", "x")
	ms.refused(model.ErrConflict, s.Start, "bob", "d", "x")
	ms.add("alice", "d", "2", 2)
	wantCounts(t, s, Counts{Dialogues: 1, Messages: 2, Bytes: int64(2 * (1 + len(lang)))})
}

func testMaxMessagesExactly(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(func(l *Limits) { l.MaxMessages = 3 }))
	ms := messages{t, s, now}
	for i := range 3 {
		ms.add("c", "d", strconv.Itoa(i), i+1)
	}
	ms.refused(model.ErrLimit, s.Append, "c", "d", "x")
	ms.refused(model.ErrLimit, s.Start, "c", "d", "x")
	ms.add("c", "other", "x", 1)
	wantCounts(t, s, Counts{Dialogues: 2, Messages: 4, Bytes: int64(4 * (1 + len(lang)))})
}

func testMaxDialoguesExactly(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(func(l *Limits) { l.MaxDialogues = 2 }))
	ms := messages{t, s, now}
	ms.add("c", "d1", "x", 1)
	ms.add("c", "d2", "x", 1)
	// A full store refuses a new dialogue before anyone asks who owns it.
	ms.refused(model.ErrFull, s.Append, "c", "d3", "x")
	ms.refused(model.ErrFull, s.Start, "c", "d3", "x")
	ms.add("c", "d1", "y", 2) // dialogues already pending still take messages
	// A taken dialogue still counts; a dropped one frees its place.
	tk := take(t, s, "d1")
	ms.refused(model.ErrFull, s.Start, "c", "d3", "x")
	if err := s.Drop(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	ms.add("c", "d3", "x", 1)
	wantCounts(t, s, Counts{Dialogues: 2, Messages: 2, Bytes: int64(2 * (1 + len(lang)))})
}

func testMaxBytesExactly(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(func(l *Limits) { l.MaxBytes = 16 }))
	ms := messages{t, s, now}
	ms.add("c", "d1", "1234", 1) // 4 bytes of text and 2 of tag
	ms.add("c", "d1", "5678", 2)
	// Past the cap, both an existing and a new dialogue are refused.
	ms.refused(ErrFullBytes, s.Append, "c", "d1", "abc")
	ms.refused(ErrFullBytes, s.Append, "c", "d2", "abc")
	ms.refused(ErrFullBytes, s.Start, "c", "d2", "abc")
	ms.add("c", "d2", "ab", 1) // exactly at the cap
	wantCounts(t, s, Counts{Dialogues: 2, Messages: 3, Bytes: 16})
	// A decision frees its bytes.
	if err := s.Drop(t.Context(), take(t, s, "d1")); err != nil {
		t.Fatal(err)
	}
	ms.add("c", "d3", "1234567890", 1)
	wantCounts(t, s, Counts{Dialogues: 2, Messages: 2, Bytes: 16})
}

// testTagBytesCount: the cap counts every byte a message holds, its
// language tag too, so that long tags cannot hold memory the cap ignores.
func testTagBytesCount(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(func(l *Limits) { l.MaxBytes = 64 }))
	m := func(dialogue, text, language string) model.Message {
		return model.Message{CustomerID: "c", DialogueID: dialogue, Language: language, Text: text, CreatedAt: now()}
	}
	long := "en-x-" + strings.Repeat("abcdefgh-", 6) + "abc" // 62 bytes
	if _, err := s.Start(t.Context(), m("d1", "xyz", long)); !errors.Is(err, ErrFullBytes) {
		t.Fatalf("3 bytes of text and 62 of tag under a cap of 64: %v, want %v", err, ErrFullBytes)
	}
	if _, err := s.Start(t.Context(), m("d1", "xy", long)); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Dialogues: 1, Messages: 1, Bytes: 64})
	if _, err := s.Start(t.Context(), m("d2", "", "x")); !errors.Is(err, ErrFullBytes) {
		t.Fatalf("one byte of tag past the cap: %v, want %v", err, ErrFullBytes)
	}
	tk := take(t, s, "d1")
	if got := tk.Messages[0].Language; got != long {
		t.Fatalf("taken language %q, want %q", got, long)
	}
	if err := s.Drop(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{})
}

// testExpiredButUnsweptCountsForNothing: caps count the live dialogues,
// whatever the sweeper has done.
func testExpiredButUnsweptCountsForNothing(t *testing.T, b backend) {
	const ttl = 300 * time.Millisecond
	s, now, advance := b.open(t, limits(func(l *Limits) { l.TTL, l.MaxDialogues, l.MaxBytes = ttl, 2, 12 }))
	ms := messages{t, s, now}
	ms.add("c", "old1", "1234", 1)
	ms.add("c", "old2", "1234", 1)
	advance(ttl + 50*time.Millisecond)
	// Both have expired, none was swept: a new dialogue of the whole byte
	// cap fits, and so does a second one.
	ms.add("c", "new1", "1234", 1)
	ms.add("c", "new2", "5678", 1)
	ms.refused(model.ErrFull, s.Start, "c", "new3", "x")
	c := counts(t, s)
	if c.Dialogues != 2 || c.Messages != 2 || c.Bytes != 12 || c.Expired != 2 {
		t.Fatalf("counts %+v, want 2 live dialogues of 12 bytes and 2 expired", c)
	}
}

// Where time is real (Redis), the dialogues that must stay live keep 450 ms
// of margin or more to their deadline.

func testTTLSlidesWithEachMessage(t *testing.T, b backend) {
	const ttl = 1500 * time.Millisecond
	s, now, advance := b.open(t, limits(func(l *Limits) { l.TTL = ttl }))
	ms := messages{t, s, now}
	ms.add("c", "kept", "1", 1)
	ms.add("c", "expiring", "1", 1)
	advance(1000 * time.Millisecond)
	ms.add("c", "kept", "2", 2)
	advance(1050 * time.Millisecond)
	if tk := take(t, s, "expiring"); tk != nil {
		t.Fatalf("an expired dialogue was taken: %+v", tk)
	}
	ms.refused(model.ErrNotFound, s.Append, "c", "expiring", "late")
	if tk := take(t, s, "kept"); tk == nil || len(tk.Messages) != 2 {
		t.Fatalf("the refreshed dialogue: %+v", tk)
	}
}

func testTakeDropRestore(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(nil))
	ms := messages{t, s, now}
	if tk := take(t, s, "none"); tk != nil {
		t.Fatalf("took a dialogue never seen: %+v", tk)
	}
	ms.add("c", "d", "1", 1)
	ms.add("c", "d", "2", 2)
	tk := take(t, s, "d")
	if err := s.Restore(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	// Pending again as it was.
	ms.add("c", "d", "3", 3)
	tk = take(t, s, "d")
	if fmt.Sprint(texts(tk)) != "[1 2 3]" {
		t.Fatalf("taken after a restore: %q", texts(tk))
	}
	if err := s.Drop(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{})
	// Decided: the next message needs a new start.
	ms.refused(model.ErrNotFound, s.Append, "c", "d", "4")
}

func testTakenDialogueWaitsAndNeverExpires(t *testing.T, b backend) {
	const ttl = 300 * time.Millisecond
	s, now, advance := b.open(t, limits(func(l *Limits) { l.TTL = ttl }))
	ms := messages{t, s, now}
	ms.add("c", "d", "1", 1)
	tk := take(t, s, "d")

	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), ms.msg("c", "d", "2"))
		appended <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if got, err := s.Take(ctx, "d"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second Take of a taken dialogue: %v, %v; want it to wait until ctx ends", got, err)
	}
	advance(ttl + 50*time.Millisecond) // past the deadline while taken
	if c := counts(t, s); c.Dialogues != 1 || c.Expired != 0 {
		t.Fatalf("counts while taken %+v", c)
	}
	if err := s.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := counts(t, s); c.Dialogues != 1 || c.Expired != 0 {
		t.Fatalf("a sweep dropped a taken dialogue: %+v", c)
	}
	select {
	case err := <-appended:
		t.Fatalf("Append to a taken dialogue returned %v without waiting", err)
	default:
	}
	// Restored with its deadline, which has passed: the waiting Append
	// finds it expired.
	if err := s.Restore(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	if err := <-appended; !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("the waiting Append: %v, want ErrNotFound", err)
	}
	if c := counts(t, s); c.Dialogues != 0 || c.Expired != 1 {
		t.Fatalf("counts %+v, want the dialogue expired", c)
	}
}

func testDropCustomer(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(nil))
	ms := messages{t, s, now}
	ms.add("alice", "a1", "1", 1)
	ms.add("alice", "a1", "2", 2)
	ms.add("alice", "a2", "1", 1)
	ms.add("bob", "b1", "1", 1)
	tk := take(t, s, "a2")
	type result struct{ dialogues, messages int }
	done := make(chan result, 1)
	go func() {
		d, m, err := s.DropCustomer(context.Background(), "alice")
		if err != nil {
			t.Error(err)
		}
		done <- result{d, m}
	}()
	// The erasure waits for the decision on a2, which is stored: a2 is
	// then gone already.
	if err := s.Drop(t.Context(), tk); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != (result{1, 2}) {
		t.Fatalf("DropCustomer dropped %+v, want 1 dialogue of 2 messages", got)
	}
	wantCounts(t, s, Counts{Dialogues: 1, Messages: 1, Bytes: int64(1 + len(lang))})
	ms.refused(model.ErrNotFound, s.Append, "alice", "a1", "3")
}

func testSweepCountsExpired(t *testing.T, b backend) {
	const ttl = 1200 * time.Millisecond
	s, now, advance := b.open(t, limits(func(l *Limits) { l.TTL = ttl }))
	ms := messages{t, s, now}
	ms.add("c", "old", "1", 1)
	advance(600 * time.Millisecond)
	ms.add("c", "young", "1", 1)
	advance(650 * time.Millisecond)
	if err := s.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Dialogues: 1, Messages: 1, Bytes: int64(1 + len(lang)), Expired: 1})
}

// testSweepFollowsTheSlidingTTL: past a dialogue's first deadline, a sweep
// leaves it alone when a message moved the deadline, and drops it once the
// moved deadline passes.
func testSweepFollowsTheSlidingTTL(t *testing.T, b backend) {
	const ttl, step = 900 * time.Millisecond, 600 * time.Millisecond
	s, now, advance := b.open(t, limits(func(l *Limits) { l.TTL = ttl }))
	ms := messages{t, s, now}
	ms.add("c", "d", "1", 1)
	advance(step)
	ms.add("c", "d", "2", 2)
	advance(step) // past the first deadline, 300 ms before the second
	if err := s.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Dialogues: 1, Messages: 2, Bytes: int64(2 * (1 + len(lang)))})
	advance(step) // 300 ms past the second
	if err := s.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Expired: 1})
}

func testParallelAppendsCountExactly(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(func(l *Limits) { l.MaxMessages = 1000 }))
	ms := messages{t, s, now}
	const workers, each = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				m := ms.msg("c", "d"+strconv.Itoa(i%4), strconv.Itoa(w))
				_, err := s.Append(context.Background(), m)
				if errors.Is(err, model.ErrNotFound) {
					_, err = s.Start(context.Background(), m)
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	wantCounts(t, s, Counts{Dialogues: 4, Messages: workers * each, Bytes: int64(workers * each * (1 + len(lang)))})
}

// testParallelAppendsKeepTheCaps: many messages at once, far more than the
// caps allow and some from the wrong customer: however they interleave, and
// however a store groups them, the caps hold exactly, each message taken has
// a position of its own, and a dialogue gives its messages back in the order
// of their positions.
func testParallelAppendsKeepTheCaps(t *testing.T, b backend) {
	s, now, _ := b.open(t, limits(func(l *Limits) { l.MaxDialogues, l.MaxMessages = 3, 10 }))
	ms := messages{t, s, now}
	const workers, each, dialogues = 32, 4, 5 // 128 messages for 5 dialogues: 3 fit, 10 messages each
	var (
		mu  sync.Mutex
		pos = map[string]map[int]string{} // dialogue → position → text
		wg  sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				d := strconv.Itoa((w + i) % dialogues)
				customer, add := "c"+d, s.Start
				if w%8 == 7 { // another customer's messages, to a live dialogue only
					customer, add = "intruder", s.Append
				}
				text := fmt.Sprintf("%d-%d", w, i)
				n, err := add(t.Context(), ms.msg(customer, "d"+d, text))
				switch {
				case err == nil:
					mu.Lock()
					if pos["d"+d] == nil {
						pos["d"+d] = map[int]string{}
					}
					if was, ok := pos["d"+d][n]; ok {
						t.Errorf("d%s: position %d given to %q and %q", d, n, was, text)
					}
					pos["d"+d][n] = text
					mu.Unlock()
				case errors.Is(err, model.ErrOtherCustomer), errors.Is(err, model.ErrLimit), errors.Is(err, model.ErrFull),
					errors.Is(err, model.ErrNotFound) && customer == "intruder":
				default:
					t.Errorf("d%s %q: %v", d, text, err)
				}
			}
		})
	}
	wg.Wait()
	if len(pos) != 3 {
		t.Fatalf("%d dialogues took messages, want the cap of 3", len(pos))
	}
	for id, p := range pos {
		if len(p) != 10 {
			t.Errorf("%s took %d messages, want the cap of 10", id, len(p))
		}
		var want []string
		for n := 1; n <= len(p); n++ {
			want = append(want, p[n])
		}
		if got := texts(take(t, s, id)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s gives back %q, want %q (the order of their positions)", id, got, want)
		}
	}
}

func TestNewMemoryRejectsLimitsOutOfRange(t *testing.T) {
	_, err := NewMemory(MemoryOptions{Shards: 3})
	for _, want := range []string{"TTL", "MaxDialogues", "MaxMessages", "MaxBytes", "power of two"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewMemory with zero limits: %v, want it to name %s", err, want)
		}
	}
}
