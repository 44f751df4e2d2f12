package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/service"
)

var _ service.Repository = (*DB)(nil)

// t0 is the base time of the test data.
var t0 = time.Date(2026, 11, 26, 21, 36, 4, 123456789, time.UTC)

// openSQLite opens a fresh SQLite database in a temporary directory.
func openSQLite(t testing.TB) *DB {
	t.Helper()
	return openSQLiteAt(t, filepath.Join(t.TempDir(), "data", "test.db"))
}

func openSQLiteAt(t testing.TB, path string) *DB {
	t.Helper()
	return openAt(t, "sqlite", path)
}

// testKey is the master key k1 of the tests' key rings.
var testKey = MasterKey{ID: "k1", Key: []byte("0123456789abcdef0123456789abcdef")}

// openAt opens the database of driver at dsn and closes it when t ends.
// PostgreSQL gets the key ring of testKey; SQLite, as configured by
// default, none: a key generated beside the database.
func openAt(t testing.TB, driver, dsn string) *DB {
	t.Helper()
	o := Options{Driver: driver, DSN: dsn}
	if driver == "postgres" {
		o.MasterKeys, o.ActiveKey = []MasterKey{testKey}, testKey.ID
	}
	return openWith(t, o)
}

// openWith opens the database o names and closes it when t ends.
func openWith(t testing.TB, o Options) *DB {
	t.Helper()
	db, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestSQLite(t *testing.T) {
	runSuite(t, func(t *testing.T) *DB { return openSQLite(t) })
}

// msg returns a message created at t0 plus ns nanoseconds.
func msg(customer, dialogue, lang, text string, ns int64) model.Message {
	return model.Message{CustomerID: customer, DialogueID: dialogue, Language: lang, Text: text, CreatedAt: t0.Add(time.Duration(ns))}
}

// consent returns a consent to the messages of one dialogue.
func consent(msgs ...model.Message) model.Consent {
	return model.Consent{
		Decision: model.Decision{DialogueID: msgs[0].DialogueID, CustomerID: msgs[0].CustomerID, Consent: true, DecidedAt: t0, Messages: len(msgs), KeyName: "bot"},
		Messages: msgs,
	}
}

func save(t testing.TB, db *DB, cs ...model.Consent) {
	t.Helper()
	if err := db.SaveConsents(context.Background(), cs); err != nil {
		t.Fatalf("SaveConsents: %v", err)
	}
}

// all exports every message matching f.
func all(t testing.TB, db *DB, f model.Filter) []model.StoredMessage {
	t.Helper()
	var got []model.StoredMessage
	if err := db.Export(context.Background(), f, func(m model.StoredMessage) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return got
}

func texts(ms []model.StoredMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Text
	}
	return out
}

// count returns the result of a COUNT query.
func count(t testing.TB, db *DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.reader.Raw(sql, args...).Scan(&n).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// newestFirst reports whether ms is in (created_at, id) descending order.
func newestFirst(ms []model.StoredMessage) bool {
	return slices.IsSortedFunc(ms, func(a, b model.StoredMessage) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
}

// filterCombinations returns every combination of the filters: each subset
// of the language, customer and dialogue given, each with no time bound,
// since, until, and both.
func filterCombinations(language, customer, dialogue string, since, until time.Time) []model.Filter {
	var fs []model.Filter
	for set := range 8 {
		f := model.Filter{}
		if set&1 != 0 {
			f.Language = language
		}
		if set&2 != 0 {
			f.CustomerID = customer
		}
		if set&4 != 0 {
			f.DialogueID = dialogue
		}
		for _, b := range [][2]time.Time{{}, {since, time.Time{}}, {time.Time{}, until}, {since, until}} {
			f.Since, f.Until = b[0], b[1]
			fs = append(fs, f)
		}
	}
	return fs
}

// suite is the Repository contract: each test runs on every backend, on a
// fresh database of its own.
var suite = []struct {
	name string
	test func(t *testing.T, db *DB)
}{
	{"RoundTrip", testRoundTrip},
	{"MessageKeys", testMessageKeys},
	{"LargeConsent", testLargeConsent},
	{"ManyConsentsInOneCall", testManyConsentsInOneCall},
	{"TiesOrderedByIDDescending", testTiesOrderedByIDDescending},
	{"Filters", testFilters},
	{"TimeBounds", testTimeBounds},
	{"KeysetPagesEqualOffsetPages", testKeysetPagesEqualOffsetPages},
	{"Withdraw", testWithdraw},
	{"LatestDecisionAndOwner", testLatestDecisionAndOwner},
	{"EraseCustomer", testEraseCustomer},
	{"DeleteCreatedBefore", testDeleteCreatedBefore},
	{"ExportStops", testExportStops},
	{"AllOrNothing", testAllOrNothing},
	{"Ping", testPing},
	{"ProbeWrite", testProbeWrite},
	{"ExportMemoryIsFlat", testExportMemoryIsFlat},
	{"CustomerData", testCustomerData},
	{"ExportSlots", testExportSlots},
	{"ExportsHaveConnectionsOfTheirOwn", testExportsHaveConnectionsOfTheirOwn},
	{"StalledExportHoldsNothing", testStalledExportHoldsNothing},
}

// runSuite runs the suite on databases made by open.
func runSuite(t *testing.T, open func(t *testing.T) *DB) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open(t)) })
	}
}

// testRoundTrip stores a message and a decision and reads them back in UTC.
func testRoundTrip(t *testing.T, db *DB) {
	paris := time.FixedZone("CET", 3600)
	m := msg("c1", "d1", "en-US", "héllo, wörld", 42)
	m.CreatedAt = m.CreatedAt.In(paris)
	c := consent(m)
	c.Decision.DecidedAt = t0.Add(time.Second).In(paris)
	save(t, db, c)

	got := all(t, db, model.Filter{})
	if len(got) != 1 {
		t.Fatalf("got %d messages, want 1", len(got))
	}
	want := msg("c1", "d1", "en-US", "héllo, wörld", 42)
	if got[0].Message != want || got[0].CreatedAt.Location() != time.UTC {
		t.Errorf("got %+v, want %+v in UTC", got[0].Message, want)
	}
	d, err := db.LatestDecision(t.Context(), "d1")
	if err != nil {
		t.Fatalf("LatestDecision: %v", err)
	}
	wantD := model.Decision{DialogueID: "d1", CustomerID: "c1", Consent: true, DecidedAt: t0.Add(time.Second), Messages: 1, KeyName: "bot"}
	if d != wantD {
		t.Errorf("got %+v, want %+v", d, wantD)
	}
}

// testMessageKeys stores a keyed message once however often it is saved.
func testMessageKeys(t *testing.T, db *DB) {
	keyed := func(key, text string, ns int64) model.Message {
		m := msg("c1", "d1", "en", text, ns)
		m.Key = key
		return m
	}
	first := consent(keyed("d1/1", "one", 1), keyed("d1/2", "two", 2), msg("c1", "d1", "en", "unkeyed", 3))
	save(t, db, first)
	// The same consent retried, and one repeating a key within itself.
	save(t, db, first)
	save(t, db, consent(keyed("d1/2", "two again", 4), keyed("d1/3", "three", 5), keyed("d1/3", "three again", 6)))

	if got, want := texts(all(t, db, model.Filter{})), []string{"three", "unkeyed", "unkeyed", "two", "one"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	var keys []string
	if err := db.reader.Raw("SELECT COALESCE(msg_key, '-') FROM sealed_messages ORDER BY created_at DESC, id DESC").Scan(&keys).Error; err != nil {
		t.Fatal(err)
	}
	if want := []string{"d1/3", "-", "-", "d1/2", "d1/1"}; !slices.Equal(keys, want) {
		t.Errorf("got keys %q, want %q", keys, want)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM sealed_messages WHERE msg_key IS NULL"); got != 2 {
		t.Errorf("got %d messages with a NULL key, want 2 (the empty key is stored as NULL)", got)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM consents"); got != 3 {
		t.Errorf("got %d ledger entries, want 3: a retried consent is recorded again", got)
	}
	// A withdrawn keyed message can be stored again by a new consent.
	if _, err := db.Withdraw(t.Context(), model.Decision{DialogueID: "d1", DecidedAt: t0}); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	save(t, db, consent(keyed("d1/1", "one", 1)))
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"one"}) {
		t.Errorf("after withdrawal and a new consent got %q, want [one]", got)
	}
}

// testLargeConsent stores a dialogue of 5,000 messages in one consent.
func testLargeConsent(t *testing.T, db *DB) {
	msgs := make([]model.Message, 5000)
	for i := range msgs {
		msgs[i] = msg("c1", "d1", "en", fmt.Sprintf("m%d", i), int64(i))
	}
	save(t, db, consent(msgs...))
	got := all(t, db, model.Filter{})
	if len(got) != len(msgs) || !newestFirst(got) || got[0].Text != "m4999" {
		t.Errorf("got %d messages, newest %q; want %d, newest m4999, newest first", len(got), got[0].Text, len(msgs))
	}
}

// testManyConsentsInOneCall stores 64 consents in one transaction.
func testManyConsentsInOneCall(t *testing.T, db *DB) {
	var cs []model.Consent
	for d := range 64 {
		var msgs []model.Message
		for i := range 20 {
			msgs = append(msgs, msg("c1", fmt.Sprintf("d%d", d), "en", "x", int64(d*20+i)))
		}
		cs = append(cs, consent(msgs...))
	}
	save(t, db, cs...)
	if got := count(t, db, "SELECT COUNT(*) FROM sealed_messages"); got != 64*20 {
		t.Errorf("got %d messages, want %d", got, 64*20)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM consents WHERE messages = 20"); got != 64 {
		t.Errorf("got %d ledger entries, want 64", got)
	}
}

// testTiesOrderedByIDDescending orders messages of the same nanosecond by id, newest first.
func testTiesOrderedByIDDescending(t *testing.T, db *DB) {
	save(t, db, consent(msg("c1", "d1", "en", "a", 5), msg("c1", "d1", "en", "b", 5), msg("c1", "d1", "en", "c", 5)))
	save(t, db, consent(msg("c2", "d2", "en", "d", 5), msg("c2", "d2", "en", "older", 4)))
	got, err := db.Messages(t.Context(), model.Filter{}, nil, 10)
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if want := []string{"d", "c", "b", "a", "older"}; !slices.Equal(texts(got), want) {
		t.Errorf("got %q, want %q", texts(got), want)
	}
	if !newestFirst(got) {
		t.Errorf("got %+v, want newest first by (createdAt, id)", got)
	}
}

// testFilters answers every combination of filters, in pages and in exports alike.
func testFilters(t *testing.T, db *DB) {
	save(t, db,
		consent(msg("c1", "d1", "en", "c1-en", 1), msg("c1", "d1", "de", "c1-de", 2)),
		consent(msg("c2", "d2", "en", "c2-en", 3), msg("c2", "d2", "fr", "c2-fr", 4)),
		consent(msg("c1", "d3", "en", "c1-d3-en", 5)),
	)
	for _, tc := range []struct {
		f    model.Filter
		want []string
	}{
		{model.Filter{}, []string{"c1-d3-en", "c2-fr", "c2-en", "c1-de", "c1-en"}},
		{model.Filter{Language: "en"}, []string{"c1-d3-en", "c2-en", "c1-en"}},
		{model.Filter{CustomerID: "c1"}, []string{"c1-d3-en", "c1-de", "c1-en"}},
		{model.Filter{Language: "en", CustomerID: "c2"}, []string{"c2-en"}},
		{model.Filter{Language: "fr", CustomerID: "c1"}, []string{}},
		{model.Filter{CustomerID: "nobody"}, []string{}},
		{model.Filter{DialogueID: "d1"}, []string{"c1-de", "c1-en"}},
		{model.Filter{DialogueID: "d1", Language: "en"}, []string{"c1-en"}},
		{model.Filter{DialogueID: "d1", CustomerID: "c1"}, []string{"c1-de", "c1-en"}},
		{model.Filter{DialogueID: "d1", CustomerID: "c2"}, []string{}},
		{model.Filter{DialogueID: "d2", Language: "fr", CustomerID: "c2"}, []string{"c2-fr"}},
		{model.Filter{DialogueID: "d2", Language: "de", CustomerID: "c2"}, []string{}},
		{model.Filter{DialogueID: "nothing"}, []string{}},
		{model.Filter{Since: t0.Add(2), Until: t0.Add(4)}, []string{"c2-en", "c1-de"}},
		{model.Filter{Language: "en", Since: t0.Add(3)}, []string{"c1-d3-en", "c2-en"}},
		{model.Filter{CustomerID: "c1", Until: t0.Add(5)}, []string{"c1-de", "c1-en"}},
		{model.Filter{Language: "en", CustomerID: "c1", Since: t0.Add(1), Until: t0.Add(5)}, []string{"c1-en"}},
		{model.Filter{DialogueID: "d2", Since: t0.Add(4)}, []string{"c2-fr"}},
	} {
		got, err := db.Messages(t.Context(), tc.f, nil, 100)
		if err != nil {
			t.Fatalf("Messages(%+v): %v", tc.f, err)
		}
		if !slices.Equal(texts(got), tc.want) {
			t.Errorf("Messages(%+v): got %q, want %q", tc.f, texts(got), tc.want)
		}
		if exported := texts(all(t, db, tc.f)); !slices.Equal(exported, tc.want) {
			t.Errorf("Export(%+v): got %q, want %q", tc.f, exported, tc.want)
		}
	}
}

// testTimeBounds reads since ≤ createdAt < until to the nanosecond, with
// bounds in any time zone and bounds beyond what createdAt can hold.
func testTimeBounds(t *testing.T, db *DB) {
	save(t, db, consent(msg("c1", "d1", "en", "a", 0), msg("c1", "d1", "en", "b", 1), msg("c1", "d1", "en", "c", 2)))
	tokyo := time.FixedZone("JST", 9*3600)
	for _, tc := range []struct {
		name         string
		since, until time.Time
		want         []string
	}{
		{"since is inclusive", t0.Add(1), time.Time{}, []string{"c", "b"}},
		{"until is exclusive", time.Time{}, t0.Add(2), []string{"b", "a"}},
		{"one nanosecond", t0.Add(1), t0.Add(2), []string{"b"}},
		{"another time zone", t0.Add(1).In(tokyo), t0.Add(2).In(tokyo), []string{"b"}},
		{"empty", t0.Add(3), t0.Add(4), []string{}},
		{"far past and future", time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), []string{"c", "b", "a"}},
		{"until in the far past", time.Time{}, time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), []string{}},
		{"since in the far future", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, []string{}},
	} {
		f := model.Filter{Since: tc.since, Until: tc.until}
		got, err := db.Messages(t.Context(), f, nil, 10)
		if err != nil {
			t.Fatalf("%s: Messages: %v", tc.name, err)
		}
		if !slices.Equal(texts(got), tc.want) {
			t.Errorf("%s: Messages got %q, want %q", tc.name, texts(got), tc.want)
		}
		if exported := texts(all(t, db, f)); !slices.Equal(exported, tc.want) {
			t.Errorf("%s: Export got %q, want %q", tc.name, exported, tc.want)
		}
	}
}

// testKeysetPagesEqualOffsetPages pages by keyset exactly as OFFSET would, ties included.
func testKeysetPagesEqualOffsetPages(t *testing.T, db *DB) {
	var cs []model.Consent
	for d := range 30 {
		var msgs []model.Message
		for i := range 10 {
			// 30 distinct times for 300 messages: many ties.
			msgs = append(msgs, msg(fmt.Sprintf("c%d", d%3), fmt.Sprintf("d%d", d), []string{"en", "de"}[i%2], fmt.Sprintf("%d/%d", d, i), int64((d*7+i*3)%30)))
		}
		cs = append(cs, consent(msgs...))
	}
	save(t, db, cs...)
	for _, f := range []model.Filter{{}, {Language: "de"}, {CustomerID: "c1"}, {Language: "en", CustomerID: "c2"},
		{DialogueID: "d4", Language: "en"}, {Since: t0.Add(5), Until: t0.Add(25)}, {CustomerID: "c0", Since: t0.Add(3)}} {
		whole := all(t, db, f)
		if !newestFirst(whole) {
			t.Fatalf("Export(%+v) is not newest first", f)
		}
		for _, size := range []int{1, 7, 50, 1000} {
			var after *model.Position
			for offset := 0; ; offset += size {
				page, err := db.Messages(t.Context(), f, after, size)
				if err != nil {
					t.Fatalf("Messages: %v", err)
				}
				want := whole[min(offset, len(whole)):min(offset+size, len(whole))]
				if !slices.Equal(page, want) {
					t.Fatalf("filter %+v, size %d, offset %d: got %q, want %q", f, size, offset, texts(page), texts(want))
				}
				if len(page) < size {
					break
				}
				last := page[len(page)-1]
				after = &model.Position{CreatedAt: last.CreatedAt, ID: last.ID}
			}
		}
	}
}

// testWithdraw deletes a dialogue's messages and records the refusal.
func testWithdraw(t *testing.T, db *DB) {
	save(t, db,
		consent(msg("c1", "d1", "en", "a", 1), msg("c1", "d1", "en", "b", 2), msg("c1", "d1", "en", "c", 3)),
		consent(msg("c1", "d2", "en", "keep", 4)),
	)
	deleted, err := db.Withdraw(t.Context(), model.Decision{DialogueID: "d1", CustomerID: "c1", DecidedAt: t0, Messages: 2, KeyName: "bot"})
	if err != nil || deleted != 3 {
		t.Fatalf("Withdraw: got %d, %v; want 3, nil", deleted, err)
	}
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("after withdrawal got %q, want [keep]", got)
	}
	d, err := db.LatestDecision(t.Context(), "d1")
	if err != nil || d.Consent || d.Messages != 5 {
		t.Errorf("LatestDecision: got %+v, %v; want a refusal governing 5 messages", d, err)
	}
	deleted, err = db.Withdraw(t.Context(), model.Decision{DialogueID: "never-seen", DecidedAt: t0})
	if err != nil || deleted != 0 {
		t.Errorf("Withdraw of an unknown dialogue: got %d, %v; want 0, nil", deleted, err)
	}
}

// testLatestDecisionAndOwner reads the newest decision, and the owner a refusal without customer leaves.
func testLatestDecisionAndOwner(t *testing.T, db *DB) {
	if _, err := db.LatestDecision(t.Context(), "d1"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("LatestDecision of an unknown dialogue: got %v, want ErrNotFound", err)
	}
	if id, ok, err := db.DialogueOwner(t.Context(), "d1"); id != "" || ok || err != nil {
		t.Errorf("DialogueOwner of an unknown dialogue: got %q, %v, %v; want \"\", false, nil", id, ok, err)
	}
	save(t, db, consent(msg("c1", "d1", "en", "a", 1)))
	// A refusal that names no customer leaves the owner as it was.
	if _, err := db.Withdraw(t.Context(), model.Decision{DialogueID: "d1", DecidedAt: t0.Add(time.Hour)}); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	d, err := db.LatestDecision(t.Context(), "d1")
	if err != nil || d.Consent || !d.DecidedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("LatestDecision: got %+v, %v; want the refusal", d, err)
	}
	if id, ok, err := db.DialogueOwner(t.Context(), "d1"); id != "c1" || !ok || err != nil {
		t.Errorf("DialogueOwner: got %q, %v, %v; want c1, true, nil", id, ok, err)
	}
}

// testEraseCustomer deletes a customer's messages, keeps the ledger and records the erasure.
func testEraseCustomer(t *testing.T, db *DB) {
	save(t, db,
		consent(msg("c1", "d1", "en", "a", 1), msg("c1", "d1", "en", "b", 2)),
		consent(msg("c1", "d2", "de", "c", 3)),
		consent(msg("c2", "d3", "en", "other", 4)),
	)
	for _, want := range []int{3, 0} {
		deleted, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c1", ErasedAt: t0, KeyName: "admin"})
		if err != nil || deleted != want {
			t.Fatalf("EraseCustomer: got %d, %v; want %d, nil", deleted, err, want)
		}
	}
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"other"}) {
		t.Errorf("after erasure got %q, want [other]", got)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM erasures WHERE customer_id = ? AND messages = ? AND erased_at = ? AND key_name = ?", "c1", 3, t0.UnixNano(), "admin"); got != 1 {
		t.Errorf("got %d erasure records of 3 messages, want 1", got)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM consents WHERE customer_id = ?", "c1"); got != 2 {
		t.Errorf("got %d consent records, want 2 (they stay)", got)
	}
}

// testDeleteCreatedBefore deletes at most limit messages older than a time,
// oldest first, and OldestMessage follows.
func testDeleteCreatedBefore(t *testing.T, db *DB) {
	var msgs []model.Message
	for i := range 10 {
		msgs = append(msgs, msg("c1", "d1", "en", fmt.Sprint(i), int64(i)))
	}
	oldest := func(want time.Time) {
		t.Helper()
		if got, err := db.OldestMessage(t.Context()); err != nil || !got.Equal(want) {
			t.Errorf("OldestMessage: got %v, %v; want %v", got, err, want)
		}
	}
	oldest(time.Time{})
	save(t, db, consent(msgs...))
	oldest(t0)
	cut := t0.Add(5)
	for _, tc := range []struct{ limit, want int }{{0, 0}, {3, 3}, {100, 2}, {100, 0}} {
		if n, err := db.DeleteCreatedBefore(t.Context(), cut, tc.limit); n != tc.want || err != nil {
			t.Errorf("DeleteCreatedBefore(limit %d): got %d, %v; want %d, nil", tc.limit, n, err, tc.want)
		}
	}
	if got, want := texts(all(t, db, model.Filter{})), []string{"9", "8", "7", "6", "5"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	oldest(cut)
}

// testExportStops stops at fn's first error and when ctx ends.
func testExportStops(t *testing.T, db *DB) {
	var msgs []model.Message
	for i := range 100 {
		msgs = append(msgs, msg("c1", "d1", "en", "x", int64(i)))
	}
	save(t, db, consent(msgs...))

	errStop := errors.New("client gone")
	calls := 0
	err := db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error {
		calls++
		if calls == 10 {
			return errStop
		}
		return nil
	})
	if err != errStop || calls != 10 {
		t.Errorf("fn failing: got %v after %d calls, want %v after 10", err, calls, errStop)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls = 0
	err = db.Export(ctx, model.Filter{}, func(model.StoredMessage) error {
		calls++
		if calls == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, model.ErrUnavailable) || calls != 10 {
		t.Errorf("ctx cancelled: got %v after %d calls, want context.Canceled after 10", err, calls)
	}
}

// testAllOrNothing stores nothing of a batch when one consent fails.
func testAllOrNothing(t *testing.T, db *DB) {
	bad := msg("c2", "d2", "en", "x", 2)
	bad.Text = "" // refused by a CHECK constraint
	err := db.SaveConsents(t.Context(), []model.Consent{consent(msg("c1", "d1", "en", "a", 1)), consent(bad)})
	if !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = db.SaveConsents(ctx, []model.Consent{consent(msg("c1", "d1", "en", "a", 1))})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("cancelled: got %v, want context.Canceled and ErrUnavailable", err)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM sealed_messages"); got != 0 {
		t.Errorf("got %d messages, want 0", got)
	}
	if _, err := db.LatestDecision(t.Context(), "d1"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("LatestDecision: got %v, want ErrNotFound", err)
	}
}

// testPing answers, and honours ctx.
func testPing(t *testing.T, db *DB) {
	if err := db.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := db.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a cancelled context: got %v, want context.Canceled", err)
	}
}

// refuseWrites makes the writer's connection refuse writes as a read-only
// database does (SQLite's query_only, PostgreSQL's read-only transactions,
// as on a standby or for a role set so), or accept them again.
func refuseWrites(t *testing.T, db *DB, refuse bool) {
	t.Helper()
	statement := map[string]map[bool]string{
		"sqlite":   {true: "PRAGMA query_only = 1", false: "PRAGMA query_only = 0"},
		"postgres": {true: "SET default_transaction_read_only = on", false: "SET default_transaction_read_only = off"},
	}[db.writer.Dialector.Name()][refuse]
	if err := db.writer.Exec(statement).Error; err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}

// testProbeWrite commits a write and leaves no data behind; it fails, as a
// consent does, while the database refuses writes.
func testProbeWrite(t *testing.T, db *DB) {
	for range 2 {
		if err := db.ProbeWrite(t.Context()); err != nil {
			t.Fatalf("ProbeWrite: %v", err)
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM write_probes"); n != 0 {
		t.Errorf("write_probes holds %d rows after the probes, want 0", n)
	}
	refuseWrites(t, db, true)
	if err := db.ProbeWrite(t.Context()); !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("ProbeWrite on a read-only database: got %v, want ErrUnavailable", err)
	}
	if err := db.SaveConsents(t.Context(), []model.Consent{consent(msg("c1", "d1", "en", "x", 1))}); !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("SaveConsents on a read-only database: got %v, want ErrUnavailable", err)
	}
	refuseWrites(t, db, false)
	if err := db.ProbeWrite(t.Context()); err != nil {
		t.Errorf("ProbeWrite once writes are accepted again: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := db.ProbeWrite(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ProbeWrite with a cancelled context: got %v, want context.Canceled", err)
	}
}

// testExportMemoryIsFlat exports 100,000 rows with a flat heap.
func testExportMemoryIsFlat(t *testing.T, db *DB) {
	if testing.Short() {
		t.Skip("inserts 100k rows")
	}
	const total, perConsent = 100_000, 10_000
	text := strings.Repeat("x", 100)
	for c := range total / perConsent {
		msgs := make([]model.Message, perConsent)
		for i := range msgs {
			msgs[i] = msg("c1", fmt.Sprint("d", c), "en", text, int64(c*perConsent+i))
		}
		save(t, db, consent(msgs...))
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	var peak uint64
	n := 0
	err := db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error {
		if n++; n%20_000 == 0 {
			peak = max(peak, heap())
		}
		return nil
	})
	if err != nil || n != total {
		t.Fatalf("Export: got %d rows, %v; want %d, nil", n, err, total)
	}
	if growth := int64(peak) - int64(base); growth > 2<<20 {
		t.Errorf("live heap grew by %d bytes while exporting, want under 2 MiB", growth)
	}
}

// testExportSlots refuses at once an export beyond Options.MaxExports, and
// frees a slot when an export ends, however it ends.
func testExportSlots(t *testing.T, db *DB) {
	save(t, db, consent(msg("c1", "d1", "en", "a", 1)))
	started, release := make(chan struct{}), make(chan struct{})
	var running sync.WaitGroup
	for range cap(db.exportSlots) {
		running.Go(func() {
			err := db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error {
				started <- struct{}{}
				<-release
				return nil
			})
			if err != nil {
				t.Errorf("Export: %v", err)
			}
		})
		<-started
	}
	err := db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error { return nil })
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "database.max_exports") {
		t.Errorf("an export beyond the slots: got %v, want ErrUnavailable naming database.max_exports", err)
	}
	// Reads do not wait for the exports.
	if _, err := db.Messages(t.Context(), model.Filter{}, nil, 1); err != nil {
		t.Errorf("Messages while every export slot is taken: %v", err)
	}
	close(release)
	running.Wait()
	errStop := errors.New("stop")
	for range 2 * cap(db.exportSlots) {
		if err := db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error { return errStop }); err != errStop {
			t.Fatalf("Export after the others ended: got %v, want %v", err, errStop)
		}
	}
}

// testStalledExportHoldsNothing checks that an export whose reader stops
// holds back no read, look-up or erasure: its erasure is scrubbed at once.
func testStalledExportHoldsNothing(t *testing.T, db *DB) {
	var msgs []model.Message
	for i := range 3 * exportPage {
		msgs = append(msgs, msg("c1", "d1", "en", "x", int64(i)))
	}
	save(t, db, consent(msgs...), consent(msg("c2", "d2", "en", "erase me", 0)))
	stalled, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		n := 0
		done <- db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error {
			if n++; n == exportPage+1 { // mid-way through the second page
				close(stalled)
				<-release
			}
			return nil
		})
	}()
	<-stalled
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := db.Messages(ctx, model.Filter{}, nil, 1); err != nil {
		t.Errorf("Messages while an export stalls: %v", err)
	}
	if _, _, err := db.DialogueOwner(ctx, "d1"); err != nil {
		t.Errorf("DialogueOwner while an export stalls: %v", err)
	}
	if n, err := db.EraseCustomer(ctx, model.Erasure{CustomerID: "c2", ErasedAt: t0}); n != 1 || err != nil {
		t.Errorf("EraseCustomer while an export stalls: got %d, %v; want 1, nil (scrubbed)", n, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("Export: %v", err)
	}
}

// testExportsHaveConnectionsOfTheirOwn checks that reads and exports use
// separate pools: an export runs while every read connection is taken, and
// a read runs while every export connection is.
func testExportsHaveConnectionsOfTheirOwn(t *testing.T, db *DB) {
	save(t, db, consent(msg("c1", "d1", "en", "a", 1)))
	// hold takes every connection of g's pool until release is called.
	hold := func(g *gorm.DB) (release func()) {
		pool, err := g.DB()
		if err != nil {
			t.Fatal(err)
		}
		var conns []*sql.Conn
		for range pool.Stats().MaxOpenConnections {
			conn, err := pool.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		return func() {
			for _, c := range conns {
				c.Close()
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	release := hold(db.reader)
	err := db.Export(ctx, model.Filter{}, func(model.StoredMessage) error { return nil })
	release()
	if err != nil {
		t.Errorf("Export while every read connection is taken: %v", err)
	}
	release = hold(db.exporter)
	_, err = db.Messages(ctx, model.Filter{}, nil, 1)
	release()
	if err != nil {
		t.Errorf("Messages while every export connection is taken: %v", err)
	}
}

// TestSplitNames: the three names read as one column come apart where
// they were joined, and a value that cannot have been joined so is an
// error, not a message with names out of place.
func TestSplitNames(t *testing.T) {
	var m model.StoredMessage
	if err := splitNames("c-1 d.2:x en-GB", &m); err != nil || m.CustomerID != "c-1" || m.DialogueID != "d.2:x" || m.Language != "en-GB" {
		t.Fatalf("split %q %q %q, %v", m.CustomerID, m.DialogueID, m.Language, err)
	}
	for _, bad := range []string{"", "c", "c d"} {
		if err := splitNames(bad, &m); err == nil {
			t.Errorf("splitNames(%q) = nil, want an error", bad)
		}
	}
}
