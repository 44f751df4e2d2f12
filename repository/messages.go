package repository

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/journal"
	"github.com/data-api/data-api/keyring"
	"github.com/data-api/data-api/model"
)

// Messages returns at most limit (at least 1) consented messages matching f,
// newest first: those strictly older than after, in (created_at, id) order.
// Like Export, it leaves their Key empty: nothing reads it back, and reading
// it would cost a sixth of SQLite's export rate.
func (db *DB) Messages(ctx context.Context, f model.Filter, after *model.Position, limit int) ([]model.StoredMessage, error) {
	page, err := db.page(ctx, db.reader, f, after, make([]model.StoredMessage, 0, limit))
	if err != nil {
		return nil, readFailed(ctx, "read messages", err)
	}
	return page, nil
}

// exportPage is the number of rows each query of an export reads, the
// largest page GET /data serves.
const exportPage = model.MaxLimit

// errExportsFull refuses an export while Options.MaxExports run.
var errExportsFull = model.Errorf(model.ErrUnavailable,
	"the most exports that may run at once (database.max_exports) are running; retry after the Retry-After delay")

// Export calls fn for every consented message matching f, newest first,
// and stops at fn's first error, which it returns as is, or when ctx ends.
// At most Options.MaxExports exports run at once, each on a connection of
// the export pool, so that reads, owner look-ups and erasures never wait
// behind them; one more gets an error of kind model.ErrUnavailable at once.
//
// It reads in keyset pages of exportPage rows, each a query of its own, and
// calls fn for a page's rows once the page is read and its connection
// released. So memory stays flat however many rows match, and an export
// whose client stops reading holds neither a connection nor a read
// snapshot: on SQLite a snapshot would block the WAL checkpoint that scrubs
// erased text, on PostgreSQL the VACUUM that prunes it. A message is never
// repeated, and none that is stored when the export starts and not deleted
// before it is reached is skipped; each page is a consistent snapshot of
// its own. Pages also bound what a driver reads to the end of a result when
// an export stops early, and suit PostgreSQL's planner: asked for every
// message of a common language in one query, it sorts them rather than walk
// an index, and sends the first row only once the sort is done; a page
// walks an index (see the query plan tests). Measured, pages cost about a
// fifth of the rate of one query on PostgreSQL (~0.9 against ~1.15 million
// rows/s) and nothing measurable on SQLite (CPU per row 0.91 to 1.18 times
// that of one query, 1.02 on average, in six interleaved runs at 1M rows).
//
// Like Messages, it leaves their Key empty.
func (db *DB) Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error {
	if !db.takeExportSlot() {
		return errExportsFull
	}
	defer db.releaseExportSlot()
	return db.export(ctx, f, fn)
}

func (db *DB) takeExportSlot() bool {
	select {
	case db.exportSlots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (db *DB) releaseExportSlot() { <-db.exportSlots }

// export is Export in an export slot the caller holds.
func (db *DB) export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error {
	var (
		after *model.Position
		buf   = make([]model.StoredMessage, 0, exportPage)
	)
	for {
		page, err := db.page(ctx, db.exporter, f, after, buf[:0])
		if err != nil {
			return readFailed(ctx, "export messages", err)
		}
		for _, m := range page {
			if err := ctx.Err(); err != nil {
				return unavailable(ctx, "export messages", err)
			}
			if err := fn(m); err != nil {
				return err
			}
		}
		if len(page) < cap(buf) {
			return nil
		}
		last := page[len(page)-1]
		after = &model.Position{CreatedAt: last.CreatedAt, ID: last.ID}
	}
}

// page appends to buf, on a connection of pool, the messages matching f that
// come after position after, newest first, as many as buf has room for.
func (db *DB) page(ctx context.Context, pool *gorm.DB, f model.Filter, after *model.Position, buf []model.StoredMessage) ([]model.StoredMessage, error) {
	sql, args := selectMessages(f, after, cap(buf)-len(buf))
	err := db.scan(ctx, pool, sql, args, func(m model.StoredMessage) error {
		buf = append(buf, m)
		return nil
	})
	return buf, err
}

// readFailed wraps the error of a read for op: of kind model.ErrUnavailable
// when the database failed, but not when a stored text or key does not
// open, which no retry mends; the service then answers 500 and logs it.
func readFailed(ctx context.Context, op string, err error) error {
	if errors.Is(err, keyring.ErrOpen) || errors.Is(err, keyring.ErrNotInRing) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return unavailable(ctx, op, err)
}

// selectMessages returns the query for the messages matching f that come
// after position after (from the newest when nil), newest first, at most
// limit of them, and its arguments.
//
// Each query is answered from one index in its order, without a sort (see
// the query plan tests): a range of created_at is part of every index's
// keyset. A filter that names a dialogue is answered from the dialogue's
// index, and its language and customer are checked on the dialogue's rows,
// which are few (at most dialogues.max_messages per consent) and all of one
// customer: the comparisons are written so that no index can serve them
// (a column in an expression), lest a planner without statistics, as
// SQLite's, walk a whole language or customer to find one dialogue.
func selectMessages(f model.Filter, after *model.Position, limit int) (string, []any) {
	var (
		where []string
		args  []any
	)
	eq := func(column, value string) {
		if f.DialogueID != "" && column != "dialogue_id" {
			column += " || ''"
		}
		where = append(where, column+" = ?")
		args = append(args, value)
	}
	if f.DialogueID != "" {
		eq("dialogue_id", f.DialogueID)
	}
	if f.Language != "" {
		eq("language", f.Language)
	}
	if f.CustomerID != "" {
		eq("customer_id", f.CustomerID)
	}
	if !f.Since.IsZero() {
		where = append(where, "created_at >= ?")
		args = append(args, nanos(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, nanos(f.Until))
	}
	if after != nil {
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, after.CreatedAt.UnixNano(), after.ID)
	}
	var b strings.Builder
	b.WriteString("SELECT id, " + namesColumn + ", sealed, created_at FROM sealed_messages")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY created_at DESC, id DESC LIMIT ?")
	args = append(args, limit)
	return b.String(), args
}

// namesColumn reads a row's customer, dialogue and language as one column,
// which splitNames splits: the SQLite driver makes a string and an interface
// value for each text column of each row, and a page spent a third of its
// allocations on these three. None of them holds a space (model.ValidateID,
// and language tags).
const namesColumn = "customer_id || ' ' || dialogue_id || ' ' || language"

// splitNames splits a namesColumn into r, its parts sharing its memory. The
// error names no row: it may be logged.
func splitNames(names string, r *model.StoredMessage) error {
	i, j := strings.IndexByte(names, ' '), strings.LastIndexByte(names, ' ')
	if i < 0 || j <= i {
		return errors.New("a stored message's customer, dialogue and language do not come apart")
	}
	r.CustomerID, r.DialogueID, r.Language = names[:i], names[i+1:j], names[j+1:]
	return nil
}

// Bounds of the times that created_at, in Unix nanoseconds, can hold.
var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

// nanos returns t in Unix nanoseconds, clamped to the range an int64 holds,
// so that a bound far in the past or the future selects what it means.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// sealedRow is a message read, its text still sealed.
type sealedRow struct {
	m      model.StoredMessage
	ns     int64
	sealed []byte
}

// scan runs query, made by selectMessages, on a connection of pool and
// calls fn for each row, its text opened, until fn returns an error or ctx
// ends. Rows are read from the connection one at a time (GORM's Rows hands
// over database/sql's cursor as is).
//
// A row whose dialogue's key is at hand (the row before's, or cached) is
// opened at once. From the first that is not, rows wait, their texts
// sealed, until the end of the result (a page, at most model.MaxLimit+1
// rows), when their keys are read: in one query for all their dialogues
// that the cache lacks, so that a key costs a look-up per dialogue, not per
// row, and on the same connection once the cursor is done, which
// PostgreSQL's protocol requires.
//
// A cached key may be stale: the dialogue was withdrawn and consented
// again through another process, under a new key. GCM then refuses the
// text, and the key is read again before the text counts as not opening.
// A message whose key row is gone (none is, but for one written by a
// consent racing the withdrawal of its dialogue in another process) is
// left out: nothing could read it.
func (db *DB) scan(ctx context.Context, pool *gorm.DB, query string, args []any, fn func(model.StoredMessage) error) error {
	return pool.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		return db.scanOn(ctx, conn, query, args, fn)
	})
}

func (db *DB) scanOn(ctx context.Context, conn *gorm.DB, query string, args []any, fn func(model.StoredMessage) error) error {
	// Given a cancellable context, the SQLite driver steps every row in a
	// goroutine of its own so that it can interrupt it, which halves the
	// export rate. Each row here is one step along an index, so checking
	// ctx between rows stops the query as promptly. PostgreSQL takes ctx
	// (see dialect.interruptQueries).
	qctx := context.WithoutCancel(ctx)
	if db.interruptQueries {
		qctx = ctx
	}
	conn = conn.WithContext(qctx)
	rows, err := conn.Raw(query, args...).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	b := scanBufs.Get().(*scanBuf)
	b.db, b.fn = db, fn
	b.lookup = keyLookup{db: db, pool: conn.Statement.ConnPool, ctx: qctx}
	defer b.release()
	// Scanned into variables of the whole scan: a pointer into a row's own
	// would move each row to the heap.
	var (
		id, ns int64
		names  string
		sealed sql.RawBytes
	)
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rows.Scan(&id, &names, &sealed, &ns); err != nil {
			return err
		}
		r := sealedRow{m: model.StoredMessage{ID: id}, ns: ns}
		if err := splitNames(names, &r.m); err != nil {
			return err
		}
		if len(b.chunk) == 0 {
			if key := b.keyAtHand(r.m.DialogueID); key != nil {
				r.sealed = sealed
				if done, err := b.emit(r, key, false); done || err != nil {
					if err != nil {
						return err
					}
					continue
				}
			}
		}
		n := len(b.arena)
		b.arena = append(b.arena, sealed...)
		r.sealed = b.arena[n:len(b.arena):len(b.arena)]
		b.chunk = append(b.chunk, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := rows.Close(); err != nil {
		return err
	}
	return b.flush(ctx)
}

// scanBuf is the state of one scan, kept for the next: a page would
// otherwise allocate twice its size in buffers that grow.
type scanBuf struct {
	db     *DB
	fn     func(model.StoredMessage) error
	lookup keyLookup
	chunk  []sealedRow // rows waiting for their keys
	arena  []byte      // the sealed texts of chunk
	keys   map[string]chunkKey
	ids    []string // dialogues to look up
	ad     []byte
	text   []byte
	lastID string // the dialogue of the last key used, and the key
	last   *keyring.Key
}

type chunkKey struct {
	key    *keyring.Key
	loaded bool // read from the database, not from the cache
}

var scanBufs = sync.Pool{New: func() any { return &scanBuf{keys: make(map[string]chunkKey)} }}

// maxPooledArena bounds the buffer of sealed texts kept for the next scan:
// one of a page of long texts is let go.
const maxPooledArena = 1 << 20

func (b *scanBuf) release() {
	b.lookup.close()
	clear(b.chunk) // no strings kept alive
	clear(b.keys)
	b.chunk, b.arena, b.ids = b.chunk[:0], b.arena[:0], b.ids[:0]
	if cap(b.arena) > maxPooledArena {
		b.arena = nil
	}
	b.db, b.fn, b.lastID, b.last = nil, nil, "", nil
	scanBufs.Put(b)
}

// keyAtHand returns the key of the row before when it is of the same
// dialogue, or the cached one, or nil.
func (b *scanBuf) keyAtHand(dialogueID string) *keyring.Key {
	if dialogueID == b.lastID && b.last != nil {
		return b.last
	}
	return b.db.keys.get(dialogueID)
}

// emit opens r's text with key and calls fn with the message. It reports
// done false, without error, when a cached key (loaded false) does not
// open the text: it is then dropped, and the row must wait for its key.
func (b *scanBuf) emit(r sealedRow, key *keyring.Key, loaded bool) (done bool, err error) {
	m := r.m
	b.ad = messageAD(b.ad[:0], m.DialogueID, m.CustomerID, m.Language, r.ns)
	text, err := key.Open(b.text[:0], r.sealed, b.ad)
	switch {
	case errors.Is(err, keyring.ErrOpen) && !loaded:
		b.db.keys.drop(m.DialogueID)
		b.lastID, b.last = "", nil
		return false, nil
	case err != nil:
		return false, fmt.Errorf("open a stored text: %w", err)
	}
	b.text, b.lastID, b.last = text, m.DialogueID, key
	m.Text = string(text)
	m.CreatedAt = fromNanos(r.ns)
	return true, b.fn(m)
}

// flush looks up the keys the cache lacks for the rows of the chunk, in one
// query, and opens them in order.
func (b *scanBuf) flush(ctx context.Context) error {
	if len(b.chunk) == 0 {
		return nil
	}
	clear(b.keys)
	b.ids = b.ids[:0]
	for _, r := range b.chunk {
		d := r.m.DialogueID
		if _, seen := b.keys[d]; seen || slices.Contains(b.ids, d) {
			continue
		}
		if k := b.db.keys.get(d); k != nil {
			b.keys[d] = chunkKey{key: k}
		} else {
			b.ids = append(b.ids, d)
		}
	}
	set := func(d string, k *keyring.Key) { b.keys[d] = chunkKey{key: k, loaded: true} }
	if err := b.lookup.load(b.ids, set); err != nil {
		return err
	}
	for _, r := range b.chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		ck, ok := b.keys[r.m.DialogueID]
		if !ok {
			continue // its key row is gone
		}
		done, err := b.emit(r, ck.key, ck.loaded)
		if err == nil && !done { // a stale cached key: read it again
			delete(b.keys, r.m.DialogueID)
			if err := b.lookup.load([]string{r.m.DialogueID}, set); err != nil {
				return err
			}
			if ck, ok = b.keys[r.m.DialogueID]; !ok {
				continue
			}
			_, err = b.emit(r, ck.key, true)
		}
		if err != nil {
			return err
		}
	}
	clear(b.chunk)
	b.chunk, b.arena = b.chunk[:0], b.arena[:0]
	return nil
}

// keyLookup reads dialogue keys on the connection of a scan, through a
// statement of its own: the connection is outside GORM's cache of prepared
// statements, and a stale key makes a second look-up.
type keyLookup struct {
	db   *DB
	pool gorm.ConnPool
	ctx  context.Context
	stmt *sql.Stmt
}

// load reads the key rows of dialogueIDs, unwraps and caches them, and
// calls set with each.
func (l *keyLookup) load(dialogueIDs []string, set func(dialogueID string, k *keyring.Key)) error {
	if len(dialogueIDs) == 0 {
		return nil
	}
	if l.stmt == nil {
		stmt, err := l.pool.PrepareContext(l.ctx, l.db.keysQuery)
		if err != nil {
			return err
		}
		l.stmt = stmt
	}
	ids, err := json.Marshal(dialogueIDs)
	if err != nil {
		return err
	}
	rows, err := l.stmt.QueryContext(l.ctx, string(ids))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			dialogueID, customerID string
			wrapped                sql.RawBytes
		)
		if err := rows.Scan(&dialogueID, &customerID, &wrapped); err != nil {
			return err
		}
		k, err := l.db.unwrap(dialogueID, customerID, wrapped)
		if err != nil {
			return err
		}
		set(dialogueID, k)
	}
	return rows.Err()
}

func (l *keyLookup) close() {
	if l.stmt != nil {
		l.stmt.Close() // an error would be the connection's, which the scan reports
	}
	*l = keyLookup{}
}

// EraseCustomer hard-deletes every stored message of e.CustomerID and the
// keys of its dialogues, records e with Messages set to the number deleted
// in the same transaction, and returns that number. The erasure is
// journaled within the transaction (see deletions.go), and fails if the
// journal does. It then scrubs the database files of the deleted rows; if
// that fails, the deletion stands, EraseCustomer returns the number deleted
// with an error of kind model.ErrUnavailable, and calling it again
// completes the scrub.
func (db *DB) EraseCustomer(ctx context.Context, e model.Erasure) (int, error) {
	var deleted int
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var upTo int64
		if db.journal != nil {
			if err := tx.Raw("SELECT COALESCE(MAX(created_at), 0) FROM sealed_messages WHERE customer_id = ?", e.CustomerID).Scan(&upTo).Error; err != nil {
				return err
			}
		}
		res := tx.Exec("DELETE FROM sealed_messages WHERE customer_id = ?", e.CustomerID)
		if res.Error != nil {
			return res.Error
		}
		deleted = int(res.RowsAffected)
		if err := tx.Exec("DELETE FROM dialogue_keys WHERE customer_id = ?", e.CustomerID).Error; err != nil {
			return err
		}
		if db.journal != nil {
			if err := db.journal.Append(journal.Entry{
				Kind: journal.Erasure, At: e.ErasedAt.UnixNano(), CustomerID: e.CustomerID, UpTo: upTo, Messages: deleted, By: e.KeyName,
			}); err != nil {
				return err
			}
		}
		return tx.Create(&erasureRow{CustomerID: e.CustomerID, ErasedAt: e.ErasedAt.UnixNano(), Messages: deleted, KeyName: e.KeyName}).Error
	})
	if err != nil {
		return 0, unavailable(ctx, "erase customer", err)
	}
	db.keys.dropCustomer(e.CustomerID)
	// The deletion is committed: scrub even if the caller has gone.
	if err := db.scrub(context.WithoutCancel(ctx), db.writer); err != nil {
		return deleted, unavailable(ctx, "erase customer: the deletion is committed but the database files are not yet scrubbed", err)
	}
	return deleted, nil
}

// DeleteCreatedBefore hard-deletes at most limit stored messages created
// before t, oldest first, and the keys of their dialogues left without a
// message, and returns how many messages it deleted. The first batch of a
// cutoff that deletes something journals it within its transaction (see
// deletions.go), and fails if the journal does. On SQLite it then has the
// database files scrubbed in the background (see scrubber) after the
// purge's last batch (one that deletes fewer than limit), and every
// purgeScrubEvery while a long purge runs (see purgeScrub).
func (db *DB) DeleteCreatedBefore(ctx context.Context, t time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, nil
	}
	const oldest = "SELECT id FROM sealed_messages WHERE created_at < ? ORDER BY created_at, id LIMIT ?"
	var (
		deleted   int
		dialogues []string
	)
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Raw("SELECT DISTINCT dialogue_id FROM sealed_messages WHERE id IN ("+oldest+")", t.UnixNano(), limit).
			Scan(&dialogues).Error; err != nil {
			return err
		}
		res := tx.Exec("DELETE FROM sealed_messages WHERE id IN ("+oldest+")", t.UnixNano(), limit)
		if res.Error != nil {
			return res.Error
		}
		deleted = int(res.RowsAffected)
		if db.journal != nil && deleted > 0 && t.UnixNano() > db.retentionJournaled.Load() {
			if err := db.journal.Append(journal.Entry{Kind: journal.Retention, Before: t.UnixNano()}); err != nil {
				return err
			}
		}
		for chunk := range slices.Chunk(dialogues, insertBatch) {
			if err := tx.Exec("DELETE FROM dialogue_keys WHERE dialogue_id IN ? AND NOT EXISTS"+
				" (SELECT 1 FROM sealed_messages m WHERE m.dialogue_id = dialogue_keys.dialogue_id)", chunk).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, unavailable(ctx, "delete old messages", err)
	}
	if deleted > 0 {
		db.retentionJournaled.Store(max(db.retentionJournaled.Load(), t.UnixNano()))
	}
	// Those whose key stays are read again from their row when needed.
	db.keys.drop(dialogues...)
	if db.purgeScrub.due(deleted, limit, db.clock()) {
		db.scrubs.request()
	}
	return deleted, nil
}

// OldestMessage returns the creation time of the oldest stored message, the
// zero time when none is: one step along the index by creation time.
func (db *DB) OldestMessage(ctx context.Context) (time.Time, error) {
	var oldest sql.NullInt64
	if err := db.reader.WithContext(ctx).Raw("SELECT MIN(created_at) FROM sealed_messages").Row().Scan(&oldest); err != nil {
		return time.Time{}, unavailable(ctx, "read the oldest message's time", err)
	}
	if !oldest.Valid {
		return time.Time{}, nil
	}
	return fromNanos(oldest.Int64), nil
}

// purgeScrubEvery is how often a long retention purge has the database
// files scrubbed while it runs.
const purgeScrubEvery = 10 * time.Second

// purgeScrub decides when a retention purge asks for a scrub: after its last
// batch, and every purgeScrubEvery before, not after each batch as a
// withdrawal does. A scrub per batch checkpoints as often as the purge
// writes, holding the writer for it: at 100M messages it halved the purge's
// rate and raised the consents' latency meanwhile (BENCHMARKS.md). The
// messages a purge deletes are past their retention age, and a scrub some
// seconds later suffices for them.
type purgeScrub struct {
	mu      sync.Mutex
	unasked bool      // a batch deleted messages since the last request
	lastAsk time.Time // when the last request was made
}

// due records a batch that deleted deleted of at most limit messages at
// now, and reports whether a scrub is to be asked for.
func (p *purgeScrub) due(deleted, limit int, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unasked = p.unasked || deleted > 0
	if !p.unasked || (deleted == limit && now.Sub(p.lastAsk) < purgeScrubEvery) {
		return false
	}
	p.unasked, p.lastAsk = false, now
	return true
}

// CustomerData calls fn for everything stored about a customer: their
// messages, newest first, as Export gives them; then their consent ledger
// entries and their erasure records, oldest first. It stops at fn's first
// error, which it returns as is, or when ctx ends. It takes an export slot
// and reads as Export does, in pages of exportPage records each read on a
// connection of the export pool and released before fn sees them, so that
// a client that stops reading holds neither a connection nor a snapshot;
// each page is a snapshot of its own. The ledger and the erasures have no
// index by customer: a read walks them once, page after page, in id order.
func (db *DB) CustomerData(ctx context.Context, customerID string, fn func(model.CustomerRecord) error) error {
	if !db.takeExportSlot() {
		return errExportsFull
	}
	defer db.releaseExportSlot()
	var fnErr error
	emit := func(r model.CustomerRecord) error {
		fnErr = fn(r)
		return fnErr
	}
	err := db.export(ctx, model.Filter{CustomerID: customerID}, func(m model.StoredMessage) error {
		return emit(model.CustomerRecord{Message: &m})
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return err
	}
	err = pages(ctx, db.exporter, "SELECT id, dialogue_id, customer_id, consent, decided_at, messages, key_name FROM consents"+
		" WHERE customer_id = ? AND id > ? ORDER BY id LIMIT ?", customerID, func(r consentRow) (int64, error) {
		d := fromConsentRow(r)
		return r.ID, emit(model.CustomerRecord{Decision: &d})
	})
	if err == nil {
		err = pages(ctx, db.exporter, "SELECT id, customer_id, erased_at, messages, key_name FROM erasures"+
			" WHERE customer_id = ? AND id > ? ORDER BY id LIMIT ?", customerID, func(r erasureRow) (int64, error) {
			e := model.Erasure{CustomerID: r.CustomerID, ErasedAt: fromNanos(r.ErasedAt), Messages: r.Messages, KeyName: r.KeyName}
			return r.ID, emit(model.CustomerRecord{Erasure: &e})
		})
	}
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return unavailable(ctx, "read customer data", err)
	}
	return nil
}

// pages calls fn with every row of query, which takes a customer id, the
// id after which to start and a limit, exportPage rows per query on a
// connection of pool, released before fn sees them; fn returns each row's
// id.
func pages[R any](ctx context.Context, pool *gorm.DB, query, customerID string, fn func(R) (int64, error)) error {
	var after int64
	for {
		var rows []R
		if err := pool.WithContext(ctx).Raw(query, customerID, after, exportPage).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			if err := ctx.Err(); err != nil {
				return err
			}
			id, err := fn(r)
			if err != nil {
				return err
			}
			after = id
		}
		if len(rows) < exportPage {
			return nil
		}
	}
}
