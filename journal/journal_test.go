package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/keyring"
)

func newRing(t *testing.T, id string, b byte) *keyring.Ring {
	t.Helper()
	r, err := keyring.New(map[string][]byte{id: bytes.Repeat([]byte{b}, keyring.KeySize)}, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func open(t *testing.T, o Options) *Journal {
	t.Helper()
	j, err := Open(o)
	if errors.Is(err, ErrNotExist) {
		j, err = Create(o)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func read(t *testing.T, dir string, ring *keyring.Ring) Contents {
	t.Helper()
	c, err := Read(dir, ring, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRoundTrip: two writers share a directory, each in segments of its
// own; Read returns every entry of both, oldest first, and no file holds
// an id in the clear.
func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	ring := newRing(t, "k1", 1)
	clock := fake.NewClock()
	a := open(t, Options{Dir: dir, Ring: ring, Keep: 30 * 24 * time.Hour, Clock: clock.Now})
	b := open(t, Options{Dir: dir, Ring: ring, Keep: 30 * 24 * time.Hour, Clock: clock.Now})
	if a.ID() != b.ID() {
		t.Fatalf("two writers of one directory: ids %s and %s", a.ID(), b.ID())
	}
	at := fake.Start.UnixNano()
	want := []Entry{
		{Kind: Withdrawal, At: at + 1, DialogueID: "dialogue-secret", CustomerID: "customer-secret", UpTo: at, Messages: 2, By: "caller-secret-bot"},
		{Kind: Erasure, At: at + 2, CustomerID: "customer-secret-2", UpTo: at + 1, Messages: 3, By: "caller-secret-dpo"},
		{Kind: Retention, At: at + 3, Before: at - 1},
		{Kind: Backup, At: at + 4, BackupID: "backup-secret-1"},
	}
	for i, e := range want {
		w := a
		if i%2 == 1 {
			w = b
		}
		if err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	if err := a.Append(Entry{Kind: Retention, Before: at}); err != nil {
		t.Fatal(err)
	}
	want = append(want, Entry{Kind: Retention, At: clock.Now().UnixNano(), Before: at})

	c := read(t, dir, ring)
	if !slices.Equal(c.Entries, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", c.Entries, want)
	}
	if c.ID != a.ID() || c.Torn != 0 || c.Since != fake.Start.UnixNano() || c.Newest != clock.Now().UnixNano() {
		t.Errorf("got id %s, torn %d, since %d, newest %d; want %s, 0, %d, %d", c.ID, c.Torn, c.Since, c.Newest, a.ID(), fake.Start.UnixNano(), clock.Now().UnixNano())
	}
	if n := len(segments(t, dir)); n != 2 {
		t.Errorf("%d segments, want 2: one per writer", n)
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// Needles long enough that the base64 of sealed entries and wrapped
		// keys does not spell them by chance (a needle as short as "b1" once
		// did, in both segments).
		for _, secret := range []string{"secret", "withdrawal"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds %q in the clear", f.Name(), secret)
			}
		}
		info, _ := f.Info()
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", f.Name(), info.Mode())
		}
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("the directory has mode %v, want 0700", info.Mode())
	}

	// Read with modifiedSince after every write reads no entry, but the
	// headers still.
	c, err := Read(dir, ring, time.Now().Add(time.Hour))
	if err != nil || len(c.Entries) != 0 || c.ID != a.ID() {
		t.Errorf("Read of nothing modified: got %d entries, %v", len(c.Entries), err)
	}
}

// TestMissingAndForeign: no journal, a journal that exists already, a key
// ring that no longer holds the segments' master key, and one that holds
// another key under its id.
func TestMissingAndForeign(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	ring := newRing(t, "k1", 1)
	if _, err := Open(Options{Dir: dir, Ring: ring, Keep: time.Hour}); !errors.Is(err, ErrNotExist) {
		t.Errorf("Open of no journal: got %v, want ErrNotExist", err)
	}
	if _, err := Read(dir, ring, time.Time{}); !errors.Is(err, ErrNotExist) {
		t.Errorf("Read of no journal: got %v, want ErrNotExist", err)
	}
	j := open(t, Options{Dir: dir, Ring: ring, Keep: time.Hour})
	if err := j.Append(Entry{Kind: Erasure, CustomerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(Options{Dir: dir, Ring: ring, Keep: time.Hour}); err == nil {
		t.Error("Create over an existing journal succeeded")
	}
	// A ring without k1, after a rotation: k1's segment is left out.
	c, err := Read(dir, newRing(t, "k2", 2), time.Time{})
	if err != nil || len(c.Entries) != 0 || c.Retired != 1 {
		t.Errorf("Read without the master key: got %d entries, %d retired, %v; want none, 1, nil", len(c.Entries), c.Retired, err)
	}
	if _, err := Read(dir, newRing(t, "k1", 2), time.Time{}); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("Read with another key under the master key's id: got %v, want an error naming k1", err)
	}
}

// TestTornAndCorrupt: a writer that stopped in the middle of a line (or of
// its header) leaves an entry never acknowledged, which Read leaves out;
// a line altered in the middle of a segment fails the read, naming it.
func TestTornAndCorrupt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	ring := newRing(t, "k1", 1)
	j := open(t, Options{Dir: dir, Ring: ring, Keep: time.Hour})
	for i := range 3 {
		if err := j.Append(Entry{Kind: Erasure, CustomerID: "c", At: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	seg := segments(t, dir)[0]
	whole, _ := os.ReadFile(seg)
	appendTo := func(path string, b []byte) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	appendTo(seg, []byte("QUJD"))              // a line cut short
	appendTo(filepath.Join(dir, "x.jnl"), nil) // a segment whose header never made it
	appendTo(filepath.Join(dir, "y.jnl"), []byte(`{"v":1,`))
	c := read(t, dir, ring)
	if len(c.Entries) != 3 || c.Torn != 3 {
		t.Errorf("got %d entries, %d torn; want 3, 3", len(c.Entries), c.Torn)
	}

	lines := bytes.SplitAfter(whole, []byte("\n"))
	lines[2] = []byte("AAAA" + string(lines[2][4:]))
	if err := os.WriteFile(seg, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, ring, time.Time{}); err == nil || !strings.Contains(err.Error(), filepath.Base(seg)) || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("Read of an altered line: got %v, want an error naming the segment and line 3", err)
	}
}

// TestFailedWriteLeavesTheSegment: after a write that fails, the next
// Append goes to a new segment, so that no entry follows a line cut short.
func TestFailedWriteLeavesTheSegment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	ring := newRing(t, "k1", 1)
	j := open(t, Options{Dir: dir, Ring: ring, Keep: time.Hour})
	j.mu.Lock()
	j.seg.f.Close() // the next write fails, as on a disk that went away
	j.mu.Unlock()
	if err := j.Append(Entry{Kind: Erasure, CustomerID: "lost"}); err == nil {
		t.Fatal("Append to a closed file succeeded")
	}
	if err := j.Append(Entry{Kind: Erasure, CustomerID: "kept"}); err != nil {
		t.Fatalf("Append after a failed one: %v", err)
	}
	c := read(t, dir, ring)
	if len(c.Entries) != 1 || c.Entries[0].CustomerID != "kept" || len(segments(t, dir)) != 2 {
		t.Errorf("got %+v in %d segments, want the second entry alone, in a second segment", c.Entries, len(segments(t, dir)))
	}
}

// TestRotateAndPrune: a segment is replaced once a day old; segments last
// written more than Keep ago are deleted, and Since then says from when on
// the journal is whole.
func TestRotateAndPrune(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	ring := newRing(t, "k1", 1)
	clock := fake.NewClock()
	keep := 10 * 24 * time.Hour
	o := Options{Dir: dir, Ring: ring, Keep: keep, Clock: clock.Now}

	// An old writer, gone: its segment was last written 11 days ago.
	old := open(t, o)
	if err := old.Append(Entry{Kind: Erasure, CustomerID: "c-old"}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	oldSeg := segments(t, dir)[0]
	lastWrite := clock.Now().Add(time.Hour)
	if err := os.Chtimes(oldSeg, lastWrite, lastWrite); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * 24 * time.Hour)

	j := open(t, o) // deletes it at once
	if _, err := os.Stat(oldSeg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a segment past keep survives Open: %v", err)
	}
	c := read(t, dir, ring)
	if c.Since != lastWrite.UnixNano() || len(c.Entries) != 0 {
		t.Errorf("after the prune: since %v, %d entries; want since %v, none", time.Unix(0, c.Since).UTC(), len(c.Entries), lastWrite)
	}

	j.maintain() // not a day old yet
	if n := len(segments(t, dir)); n != 1 {
		t.Errorf("%d segments after maintaining a new one, want 1", n)
	}
	clock.Advance(25 * time.Hour)
	j.maintain()
	segs := segments(t, dir)
	if len(segs) != 2 {
		t.Fatalf("%d segments after a day, want 2", len(segs))
	}
	if err := j.Append(Entry{Kind: Erasure, CustomerID: "c-new"}); err != nil {
		t.Fatal(err)
	}
	// The segment replaced is kept for Keep after its last write.
	first := segs[0]
	c = read(t, dir, ring)
	if len(c.Entries) != 1 || c.Since != lastWrite.UnixNano() {
		t.Errorf("after the rotation: %d entries, since %v", len(c.Entries), time.Unix(0, c.Since).UTC())
	}
	expired := clock.Now().Add(-keep - time.Minute)
	if err := os.Chtimes(first, expired, expired); err != nil {
		t.Fatal(err)
	}
	clock.Advance(25 * time.Hour)
	j.maintain()
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced segment past keep survives: %v", err)
	}
	if c = read(t, dir, ring); c.Since != expired.UnixNano() || len(c.Entries) != 1 {
		t.Errorf("after the second prune: since %v, %d entries", time.Unix(0, c.Since).UTC(), len(c.Entries))
	}
}
