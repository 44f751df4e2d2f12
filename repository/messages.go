package repository

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/keyring"
	"github.com/data-api/data-api/model"
)

// Messages returns at most limit (at least 1) consented messages matching f,
// newest first: those strictly older than after, in (created_at, id) order.
// Like Export, it leaves their Key empty: nothing reads it back, and reading
// it would cost a sixth of SQLite's export rate.
func (db *DB) Messages(ctx context.Context, f model.Filter, after *model.Position, limit int) ([]model.StoredMessage, error) {
	page := make([]model.StoredMessage, 0, limit)
	query, args := selectMessages(f, after, limit)
	err := db.scan(ctx, nil, query, args, func(m model.StoredMessage) error {
		page = append(page, m)
		return nil
	})
	if err != nil {
		return nil, readFailed(ctx, "read messages", err)
	}
	return page, nil
}

// Export calls fn for every consented message matching f, newest first,
// reading from a database cursor one row at a time, so that memory stays
// flat however many rows match. It stops at fn's first error, which it
// returns as is, or when ctx ends.
//
// Like Messages, it leaves their Key empty.
//
// Where the dialect sets exportPage, the cursor is a keyset position: each
// page is a query of its own, which reads a consistent snapshot of its page
// only. A message is still never repeated, and none that is stored when the
// export starts and not deleted before it is reached is skipped.
func (db *DB) Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error {
	var fnErr error
	err := db.export(ctx, nil, f, func(m model.StoredMessage) error {
		fnErr = fn(m)
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return readFailed(ctx, "export messages", err)
	}
	return nil
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

// export is Export on conn (a read connection when nil), returning fn's
// error and the database's alike.
func (db *DB) export(ctx context.Context, conn *gorm.DB, f model.Filter, fn func(model.StoredMessage) error) error {
	var (
		after *model.Position
		n     int
	)
	each := func(m model.StoredMessage) error {
		n++
		after = &model.Position{CreatedAt: m.CreatedAt, ID: m.ID}
		return fn(m)
	}
	for {
		n = 0
		query, args := selectMessages(f, after, db.exportPage)
		if err := db.scan(ctx, conn, query, args, each); err != nil {
			return err
		}
		if db.exportPage == 0 || n < db.exportPage {
			return nil
		}
	}
}

// selectMessages returns the query for the messages matching f that come
// after position after (from the newest when nil), newest first, at most
// limit of them (all when limit is 0), and its arguments.
func selectMessages(f model.Filter, after *model.Position, limit int) (string, []any) {
	var (
		where []string
		args  []any
	)
	if f.Language != "" {
		where = append(where, "language = ?")
		args = append(args, f.Language)
	}
	if f.CustomerID != "" {
		where = append(where, "customer_id = ?")
		args = append(args, f.CustomerID)
	}
	if after != nil {
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, after.CreatedAt.UnixNano(), after.ID)
	}
	var b strings.Builder
	b.WriteString("SELECT id, customer_id, dialogue_id, language, sealed, created_at FROM sealed_messages")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY created_at DESC, id DESC")
	if limit > 0 {
		b.WriteString(" LIMIT ?")
		args = append(args, limit)
	}
	return b.String(), args
}

// sealedRow is a message read, its text still sealed.
type sealedRow struct {
	m      model.StoredMessage
	ns     int64
	sealed []byte
}

// scan runs query, made by selectMessages, on conn (a read connection when
// nil) and calls fn for each row, its text opened, until fn returns an
// error or ctx ends. Rows are read from the connection one at a time
// (GORM's Rows hands over database/sql's cursor as is), never gathered in
// memory but while their keys are looked up.
//
// A row whose dialogue's key is at hand (the row before's, or cached) is
// opened at once. From the first that is not, rows are kept in a chunk
// until their keys are read, in one query for all the chunk's dialogues
// that the cache lacks, so that a key costs a look-up per dialogue, not per
// row. Where the dialect can run that query while the cursor is open
// (SQLite), a chunk ends after keyChunkRows rows; elsewhere at the end of
// the result, which a page or an export page bounds.
//
// A cached key may be stale: the dialogue was withdrawn and consented
// again through another process, under a new key. GCM then refuses the
// text, and the key is read again before the text counts as not opening.
// A message whose key row is gone (none is, but for one written by a
// consent racing the withdrawal of its dialogue in another process) is
// left out: nothing could read it.
func (db *DB) scan(ctx context.Context, conn *gorm.DB, query string, args []any, fn func(model.StoredMessage) error) error {
	if conn == nil {
		return db.reader.WithContext(ctx).Connection(func(conn *gorm.DB) error {
			return db.scan(ctx, conn, query, args, fn)
		})
	}
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
	var sealed sql.RawBytes
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		var r sealedRow
		if err := rows.Scan(&r.m.ID, &r.m.CustomerID, &r.m.DialogueID, &r.m.Language, &sealed, &r.ns); err != nil {
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
		if db.keysWhileReading && len(b.chunk) == keyChunkRows {
			if err := b.flush(ctx); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := rows.Close(); err != nil {
		return err
	}
	return b.flush(ctx)
}

// keyChunkRows is how many rows scan keeps before it looks their keys up,
// where it can while reading: 256 rows of the 20-message dialogues of the
// benchmarks cost one key query of about 13 keys.
const keyChunkRows = 256

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
// a PostgreSQL export page of long texts is let go.
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

// keyLookup reads dialogue keys on the connection of a scan, through one
// statement prepared at its first look-up: an export looks keys up once
// per chunk, and a connection of its own (outside GORM's cache of
// prepared statements) would parse the query every time.
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
// in the same transaction, and returns that number. It then scrubs the
// database files of the deleted rows; if that fails, the deletion stands,
// EraseCustomer returns the number deleted with an error of kind
// model.ErrUnavailable, and calling it again completes the scrub.
func (db *DB) EraseCustomer(ctx context.Context, e model.Erasure) (int, error) {
	var deleted int
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec("DELETE FROM sealed_messages WHERE customer_id = ?", e.CustomerID)
		if res.Error != nil {
			return res.Error
		}
		deleted = int(res.RowsAffected)
		if err := tx.Exec("DELETE FROM dialogue_keys WHERE customer_id = ?", e.CustomerID).Error; err != nil {
			return err
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
// message, and returns how many messages it deleted. On SQLite it then has
// the database files scrubbed in the background (see scrubber).
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
	// Those whose key stays are read again from their row when needed.
	db.keys.drop(dialogues...)
	if deleted > 0 {
		db.scrubs.request()
	}
	return deleted, nil
}

// CustomerData calls fn for everything stored about a customer, as of one
// moment: their messages, newest first, as Export gives them; then their
// consent ledger entries and their erasure records, oldest first. It stops
// at fn's first error, which it returns as is, or when ctx ends.
func (db *DB) CustomerData(ctx context.Context, customerID string, fn func(model.CustomerRecord) error) error {
	var fnErr error
	emit := func(r model.CustomerRecord) error {
		fnErr = fn(r)
		return fnErr
	}
	// One read transaction, so that the three parts agree: on PostgreSQL,
	// repeatable read; on SQLite every read transaction is a snapshot.
	err := db.reader.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := db.export(ctx, tx, model.Filter{CustomerID: customerID}, func(m model.StoredMessage) error {
			return emit(model.CustomerRecord{Message: &m})
		}); err != nil {
			return err
		}
		var consents []consentRow
		if err := tx.Raw("SELECT id, dialogue_id, customer_id, consent, decided_at, messages, key_name FROM consents"+
			" WHERE customer_id = ? ORDER BY id", customerID).Scan(&consents).Error; err != nil {
			return err
		}
		for _, r := range consents {
			d := fromConsentRow(r)
			if err := emit(model.CustomerRecord{Decision: &d}); err != nil {
				return err
			}
		}
		var erasures []erasureRow
		if err := tx.Raw("SELECT id, customer_id, erased_at, messages, key_name FROM erasures"+
			" WHERE customer_id = ? ORDER BY id", customerID).Scan(&erasures).Error; err != nil {
			return err
		}
		for _, r := range erasures {
			e := model.Erasure{CustomerID: r.CustomerID, ErasedAt: fromNanos(r.ErasedAt), Messages: r.Messages, KeyName: r.KeyName}
			if err := emit(model.CustomerRecord{Erasure: &e}); err != nil {
				return err
			}
		}
		return nil
	}, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return readFailed(ctx, "read customer data", err)
	}
	return nil
}
