package repository

import (
	"context"
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
	page := make([]model.StoredMessage, 0, limit)
	sql, args := selectMessages(f, after, limit)
	err := db.scan(ctx, sql, args, func(m model.StoredMessage) error {
		page = append(page, m)
		return nil
	})
	if err != nil {
		return nil, unavailable(ctx, "read messages", err)
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
	var (
		fnErr error
		after *model.Position
		n     int
	)
	each := func(m model.StoredMessage) error {
		n++
		after = &model.Position{CreatedAt: m.CreatedAt, ID: m.ID}
		fnErr = fn(m)
		return fnErr
	}
	for {
		n = 0
		sql, args := selectMessages(f, after, db.exportPage)
		err := db.scan(ctx, sql, args, each)
		switch {
		case fnErr != nil:
			return fnErr
		case err != nil:
			return unavailable(ctx, "export messages", err)
		case db.exportPage == 0 || n < db.exportPage:
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
	b.WriteString("SELECT id, customer_id, dialogue_id, language, text, created_at FROM messages")
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

// scan runs a query made by selectMessages on a read connection and calls fn
// for each row until fn returns an error or ctx ends. Rows are read from the
// connection one at a time (GORM's Rows hands over database/sql's cursor
// as is), never gathered in memory.
func (db *DB) scan(ctx context.Context, sql string, args []any, fn func(model.StoredMessage) error) error {
	return db.reader.WithContext(ctx).Connection(func(conn *gorm.DB) error {
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
