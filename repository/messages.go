package repository

import (
	"context"
	"math"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/model"
)

// Messages returns at most limit (at least 1) consented messages matching f,
// newest first: those strictly older than after, in (created_at, id) order.
// Like Export, it leaves their Key empty: nothing reads it back, and reading
// it would cost a sixth of SQLite's export rate.
func (db *DB) Messages(ctx context.Context, f model.Filter, after *model.Position, limit int) ([]model.StoredMessage, error) {
	page, err := db.page(ctx, db.reader, f, after, make([]model.StoredMessage, 0, limit))
	if err != nil {
		return nil, unavailable(ctx, "read messages", err)
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
	select {
	case db.exportSlots <- struct{}{}:
		defer func() { <-db.exportSlots }()
	default:
		return errExportsFull
	}
	var (
		after *model.Position
		buf   = make([]model.StoredMessage, 0, exportPage)
	)
	for {
		page, err := db.page(ctx, db.exporter, f, after, buf[:0])
		if err != nil {
			return unavailable(ctx, "export messages", err)
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
	b.WriteString("SELECT id, customer_id, dialogue_id, language, text, created_at FROM messages")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY created_at DESC, id DESC LIMIT ?")
	args = append(args, limit)
	return b.String(), args
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

// scan runs a query made by selectMessages on a connection of pool and calls
// fn for each row until fn returns an error or ctx ends. Rows are read from
// the connection one at a time (GORM's Rows hands over database/sql's cursor
// as is), never gathered in memory.
func (db *DB) scan(ctx context.Context, pool *gorm.DB, sql string, args []any, fn func(model.StoredMessage) error) error {
	return pool.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		// Given a cancellable context, the SQLite driver steps every row in a
		// goroutine of its own so that it can interrupt it, which halves the
		// export rate. Each row here is one step along an index, so checking
		// ctx between rows stops the query as promptly. PostgreSQL takes
		// ctx (see dialect.interruptQueries).
		qctx := context.WithoutCancel(ctx)
		if db.interruptQueries {
			qctx = ctx
		}
		rows, err := conn.WithContext(qctx).Raw(sql, args...).Rows()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var (
				m  model.StoredMessage
				ns int64
			)
			if err := rows.Scan(&m.ID, &m.CustomerID, &m.DialogueID, &m.Language, &m.Text, &ns); err != nil {
				return err
			}
			m.CreatedAt = fromNanos(ns)
			if err := fn(m); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// EraseCustomer hard-deletes every stored message of e.CustomerID, records e
// with Messages set to the number deleted in the same transaction, and
// returns that number. It then scrubs the database files of the deleted
// text; if that fails, the deletion stands, EraseCustomer returns the number
// deleted with an error of kind model.ErrUnavailable, and calling it again
// completes the scrub.
func (db *DB) EraseCustomer(ctx context.Context, e model.Erasure) (int, error) {
	var deleted int
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec("DELETE FROM messages WHERE customer_id = ?", e.CustomerID)
		if res.Error != nil {
			return res.Error
		}
		deleted = int(res.RowsAffected)
		return tx.Create(&erasureRow{CustomerID: e.CustomerID, ErasedAt: e.ErasedAt.UnixNano(), Messages: deleted, KeyName: e.KeyName}).Error
	})
	if err != nil {
		return 0, unavailable(ctx, "erase customer", err)
	}
	// The deletion is committed: scrub even if the caller has gone.
	if err := db.scrub(context.WithoutCancel(ctx), db.writer); err != nil {
		return deleted, unavailable(ctx, "erase customer: the deletion is committed but the database files are not yet scrubbed", err)
	}
	return deleted, nil
}

// DeleteCreatedBefore hard-deletes at most limit stored messages created
// before t, oldest first, and returns how many it deleted.
func (db *DB) DeleteCreatedBefore(ctx context.Context, t time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, nil
	}
	res := db.writer.WithContext(ctx).Exec(
		"DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? ORDER BY created_at, id LIMIT ?)",
		t.UnixNano(), limit)
	if res.Error != nil {
		return 0, unavailable(ctx, "delete old messages", res.Error)
	}
	return int(res.RowsAffected), nil
}
