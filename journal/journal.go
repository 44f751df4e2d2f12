// Package journal keeps the deletion journal: an append-only record, kept
// outside the database, of every deletion of consented data (withdrawals,
// erasures, retention purges) and of every backup taken, so that a
// database restored from a backup can have the deletions made since
// re-applied, and nothing erased comes back.
//
// A journal is a directory: a file JOURNAL that names it (a random id and
// when it was created), and segment files, one or more per process that
// writes (every process appends to segments of its own, so that several
// instances may share the directory, on a network file system too). An
// entry is one line, sealed (AES-256-GCM, package keyring) under a key of
// its segment, itself wrapped in the segment's first line by a master key
// of the ring: the journal holds customer and dialogue ids, which are
// personal data, and is readable only with the key ring. An entry holds
// ids, times and counts, never a text.
//
// Append writes an entry and syncs it to stable storage before it returns.
// A segment is replaced by a new one every day, and segments last written
// longer ago than Options.Keep are deleted, so that the journal holds what
// the oldest backup kept needs and not more; each segment's first line
// records how far the segments deleted before it reached, so that Read can
// tell from when on the journal is whole.
package journal

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/data-api/data-api/keyring"
)

// Kind says what an entry records.
type Kind string

// The kinds of entry.
const (
	// Withdrawal: the stored messages of DialogueID (of CustomerID)
	// created up to UpTo were deleted with the dialogue's key, by a consent
	// decision false at At (the ledger entry's decidedAt, with Messages and
	// By as the ledger entry holds them).
	Withdrawal Kind = "withdrawal"
	// Erasure: the stored messages of CustomerID created up to UpTo were
	// deleted with the keys of their dialogues, by an erasure at At (the
	// erasure record's erasedAt, with Messages and By as it holds them).
	Erasure Kind = "erasure"
	// Retention: the messages created before Before were deleted.
	Retention Kind = "retention"
	// Backup: a backup of the database, BackupID, is about to be taken.
	Backup Kind = "backup"
)

// Entry is one record of the journal. Times are Unix nanoseconds, as the
// database holds them, so that an entry matches its ledger entry exactly.
type Entry struct {
	Kind       Kind   `json:"kind"`
	At         int64  `json:"at"`
	DialogueID string `json:"dialogueId,omitempty"`
	CustomerID string `json:"customerId,omitempty"`
	UpTo       int64  `json:"upTo,omitempty"`
	Before     int64  `json:"before,omitempty"`
	Messages   int    `json:"messages,omitempty"`
	By         string `json:"by,omitempty"`
	BackupID   string `json:"backupId,omitempty"`
}

// ErrNotExist is returned for a directory that holds no journal.
var ErrNotExist = fmt.Errorf("no deletion journal: %w", fs.ErrNotExist)

// idFile names the journal in its directory.
const idFile = "JOURNAL"

// segmentExt ends the name of every segment file.
const segmentExt = ".jnl"

// rotateAfter is the age at which a segment is replaced by a new one, and
// maintainEvery how often a journal checks.
const (
	rotateAfter   = 24 * time.Hour
	maintainEvery = time.Hour
)

// MaxSilence is the longest a Journal goes without writing: it starts a
// segment at least this often, so a journal last written longer before a
// decision of its database was not being written then.
const MaxSilence = rotateAfter + maintainEvery

// Options says where a journal is and how to write it.
type Options struct {
	Dir  string
	Ring *keyring.Ring // seals the entries under its active master key
	// Keep is how long a segment is kept after its last write.
	Keep  time.Duration
	Clock func() time.Time // nil: time.Now
	Log   *slog.Logger     // nil discards
}

// Journal appends entries to a segment of its own in a journal directory.
// It is safe for concurrent use.
type Journal struct {
	o  Options
	id string

	mu  sync.Mutex
	seg *segment // nil after a failed write, until the next Append

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// segment is the file a Journal appends to.
type segment struct {
	name    string
	f       *os.File
	key     *keyring.Key
	created time.Time
}

// idRecord is the content of the JOURNAL file.
type idRecord struct {
	ID      string `json:"id"`
	Created int64  `json:"created"`
}

// header is a segment's first line.
type header struct {
	V       int    `json:"v"`
	Created int64  `json:"created"`
	Key     []byte `json:"key"` // the segment's key, wrapped
	// PrunedBefore: the segments deleted when this one was started were
	// last written before it (Unix ns; 0 if none was).
	PrunedBefore int64 `json:"prunedBefore"`
}

// Create makes a new journal in o.Dir, which must not hold one, and opens
// it.
func Create(o Options) (*Journal, error) {
	o.fill()
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create deletion journal: %w", err)
	}
	rec, err := json.Marshal(idRecord{ID: strings.ToLower(rand.Text()), Created: o.Clock().UnixNano()})
	if err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(o.Dir, idFile), append(rec, '\n')); err != nil {
		return nil, fmt.Errorf("create deletion journal: %w", err)
	}
	return Open(o)
}

// Open opens the journal in o.Dir, or returns an error wrapping
// ErrNotExist. It starts a segment of its own, deletes the segments past
// o.Keep, and then replaces its segment every day until Close.
func Open(o Options) (*Journal, error) {
	o.fill()
	rec, err := readID(o.Dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{o: o, id: rec.ID, stop: make(chan struct{}), done: make(chan struct{})}
	if err := j.rotate(); err != nil {
		return nil, err
	}
	go j.loop()
	return j, nil
}

func (o *Options) fill() {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// ID returns the journal's id, which the database it records names.
func (j *Journal) ID() string { return j.id }

// Append writes e to the journal and syncs it to stable storage. An At of
// zero is set to the current time. After a failed write the segment is
// left, its last line perhaps cut short, and the next Append starts
// another.
func (j *Journal) Append(e Entry) error {
	if e.At == 0 {
		e.At = j.o.Clock().UnixNano()
	}
	plain, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.seg == nil {
		if err := j.startSegment(0); err != nil {
			return err
		}
	}
	s := j.seg
	sealed, err := s.key.Seal(nil, plain, entryAD(s.name))
	clear(plain)
	if err != nil {
		return err
	}
	line := base64.StdEncoding.AppendEncode(nil, sealed)
	line = append(line, '\n')
	if _, err = s.f.Write(line); err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		j.leaveSegment()
		return fmt.Errorf("append to the deletion journal: %w", err)
	}
	return nil
}

// Close stops the journal's maintenance and closes its segment. Closing it
// again does nothing.
func (j *Journal) Close() error {
	j.stopOnce.Do(func() { close(j.stop) })
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.seg == nil {
		return nil
	}
	err := j.seg.f.Close()
	j.seg = nil
	return err
}

func (j *Journal) loop() {
	defer close(j.done)
	t := time.NewTicker(maintainEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			j.maintain()
		}
	}
}

// maintain replaces the segment once it is rotateAfter old, deleting the
// segments past Keep.
func (j *Journal) maintain() {
	j.mu.Lock()
	due := j.seg == nil || j.o.Clock().Sub(j.seg.created) >= rotateAfter
	j.mu.Unlock()
	if !due {
		return
	}
	if err := j.rotate(); err != nil {
		j.o.Log.Warn("replacing the deletion journal's segment failed; retrying in an hour", "err", err)
	}
}

// rotate starts a new segment, whose header records the segments past Keep,
// and then deletes them.
func (j *Journal) rotate() error {
	old, prunedBefore, err := j.pastKeep()
	if err != nil {
		return fmt.Errorf("list the deletion journal: %w", err)
	}
	j.mu.Lock()
	err = j.startSegment(prunedBefore)
	j.mu.Unlock()
	if err != nil {
		return err
	}
	for _, name := range old {
		if err := os.Remove(filepath.Join(j.o.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete an old segment of the deletion journal: %w", err)
		}
	}
	if len(old) > 0 {
		j.o.Log.Info("deleted old segments of the deletion journal", "segments", len(old), "keep", j.o.Keep.String())
		return syncDir(j.o.Dir)
	}
	return nil
}

// pastKeep returns the segments last written more than Keep ago, and the
// latest of their last writes.
func (j *Journal) pastKeep() (names []string, lastWrite int64, err error) {
	entries, err := os.ReadDir(j.o.Dir)
	if err != nil {
		return nil, 0, err
	}
	cutoff := j.o.Clock().Add(-j.o.Keep)
	j.mu.Lock()
	current := ""
	if j.seg != nil {
		current = j.seg.name
	}
	j.mu.Unlock()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), segmentExt) || e.Name() == current {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // another process deleted it meanwhile
		}
		if err != nil {
			return nil, 0, err
		}
		if info.ModTime().Before(cutoff) {
			names = append(names, e.Name())
			lastWrite = max(lastWrite, info.ModTime().UnixNano())
		}
	}
	return names, lastWrite, nil
}

// startSegment replaces the current segment by a new one, its header
// written and synced with its directory entry. j.mu is held.
func (j *Journal) startSegment(prunedBefore int64) error {
	now := j.o.Clock()
	name := now.UTC().Format("20060102T150405.000000000Z") + "-" + strings.ToLower(rand.Text()[:8]) + segmentExt
	key, wrapped, err := j.o.Ring.NewKey(segmentAD(name))
	if err != nil {
		return err
	}
	h, err := json.Marshal(header{V: 1, Created: now.UnixNano(), Key: wrapped, PrunedBefore: prunedBefore})
	if err != nil {
		return err
	}
	path := filepath.Join(j.o.Dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start a segment of the deletion journal: %w", err)
	}
	if _, err = f.Write(append(h, '\n')); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(j.o.Dir)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("start a segment of the deletion journal: %w", err), f.Close())
	}
	if j.seg != nil {
		_ = j.seg.f.Close() // synced after each entry: nothing is left to write
	}
	j.seg = &segment{name: name, f: f, key: key, created: now}
	return nil
}

// leaveSegment drops the current segment after a failed write. j.mu is
// held.
func (j *Journal) leaveSegment() {
	_ = j.seg.f.Close()
	j.seg = nil
}

func segmentAD(name string) []byte { return []byte("data-api journal segment v1\x00" + name) }
func entryAD(name string) []byte   { return []byte("data-api journal entry v1\x00" + name) }

// Contents is what Read found in a journal.
type Contents struct {
	ID string
	// Since: every entry made from then on is held (Unix ns): when the
	// journal was created, or the last write of the newest segment deleted
	// for its age.
	Since int64
	// Newest is the latest time a writer recorded: a segment started or an
	// entry made (Unix ns). Every running service starts a segment at least
	// daily.
	Newest int64
	// Entries are the entries read, by At (then kind), oldest first.
	Entries []Entry
	// Torn counts the segments whose last line is cut short: a writer that
	// stopped in the middle of an append, whose entry was therefore never
	// acknowledged, or one appending now. Those lines are left out.
	Torn int
	// Retired counts the segments left out because their key is wrapped by
	// a master key the ring no longer holds. What they record, a database
	// that the ring can read holds already: every deletion in them was
	// made by a process whose active master key it was, before the
	// rotation that retired the key, and a database that lacks one still
	// holds a dialogue key that the retired master key wraps.
	Retired int
}

// Read reads the journal in dir with ring: the entries of every segment
// last written at or after modifiedSince (all of them when zero), but those
// whose master key the ring no longer holds (see Contents.Retired). It
// returns an error wrapping ErrNotExist when dir holds no journal, and an
// error naming the segment when one holds a line that does not open
// (altered or not of this journal), or whose key the master key of its id
// in the ring does not unwrap.
func Read(dir string, ring *keyring.Ring, modifiedSince time.Time) (Contents, error) {
	rec, err := readID(dir)
	if err != nil {
		return Contents{}, err
	}
	c := Contents{ID: rec.ID, Since: rec.Created, Newest: rec.Created}
	names, err := os.ReadDir(dir)
	if err != nil {
		return Contents{}, fmt.Errorf("read the deletion journal: %w", err)
	}
	for _, e := range names {
		if !strings.HasSuffix(e.Name(), segmentExt) {
			continue
		}
		err := readSegment(dir, e.Name(), ring, modifiedSince, &c)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile, for its age
		}
		if err != nil {
			return Contents{}, fmt.Errorf("deletion journal segment %s: %w", e.Name(), err)
		}
	}
	kinds := map[Kind]int{Backup: 0, Retention: 1, Withdrawal: 2, Erasure: 3}
	slices.SortStableFunc(c.Entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(kinds[a.Kind], kinds[b.Kind]))
	})
	return c, nil
}

// readSegment adds what the segment name holds to c: its header's times,
// and its entries if it was written at or after modifiedSince.
func readSegment(dir, name string, ring *keyring.Ring, modifiedSince time.Time, c *Contents) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	r := bufio.NewReader(f)
	line, err := r.ReadBytes('\n')
	if errors.Is(err, io.EOF) {
		c.Torn++ // its writer stopped while starting it: it holds no entry
		return nil
	}
	if err != nil {
		return err
	}
	var h header
	if err := json.Unmarshal(line, &h); err != nil || h.V != 1 {
		return errors.New("its first line is not a segment header")
	}
	c.Since = max(c.Since, h.PrunedBefore)
	c.Newest = max(c.Newest, h.Created)
	if info.ModTime().Before(modifiedSince) {
		return nil
	}
	key, err := ring.Unwrap(h.Key, segmentAD(name))
	if errors.Is(err, keyring.ErrNotInRing) {
		c.Retired++
		return nil
	}
	if err != nil {
		return fmt.Errorf("its key: %w", err)
	}
	ad := entryAD(name)
	for n := 2; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				c.Torn++
			}
			return nil
		}
		if err != nil {
			return err
		}
		sealed, err := base64.StdEncoding.AppendDecode(nil, bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			return fmt.Errorf("line %d is corrupt", n)
		}
		plain, err := key.Open(nil, sealed, ad)
		if err != nil {
			return fmt.Errorf("line %d does not open: altered, or not of this segment", n)
		}
		var e Entry
		err = json.Unmarshal(plain, &e)
		clear(plain)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		c.Entries = append(c.Entries, e)
		c.Newest = max(c.Newest, e.At)
	}
}

// readID reads the JOURNAL file of dir.
func readID(dir string) (idRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, idFile))
	if errors.Is(err, fs.ErrNotExist) {
		return idRecord{}, fmt.Errorf("%s: %w", dir, ErrNotExist)
	}
	if err != nil {
		return idRecord{}, fmt.Errorf("read the deletion journal: %w", err)
	}
	var rec idRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.ID == "" {
		return idRecord{}, fmt.Errorf("%s: not a deletion journal's %s file", dir, idFile)
	}
	return rec, nil
}

// writeNew writes data to a new file at path, readable by its owner only,
// synced with its directory entry. It fails if path exists.
func writeNew(path string, data []byte) error {
	tmp := path + ".tmp-" + strings.ToLower(rand.Text()[:8])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		// A link, not a rename, so that a file made meanwhile by another
		// process is never replaced; on a file system without hard links
		// (some network shares), a rename once path is seen not to exist.
		if err = os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
			if _, serr := os.Lstat(path); errors.Is(serr, fs.ErrNotExist) {
				if err = os.Rename(tmp, path); err == nil {
					return syncDir(filepath.Dir(path))
				}
			}
		}
	}
	err = errors.Join(err, os.Remove(tmp))
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
