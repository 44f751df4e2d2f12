package repository

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// insertChunks are the row counts of the INSERT statements that insert
// writes with, largest first, so that a few statements serve batches of any
// size and each is prepared once. GORM's statement cache does not help
// within a transaction: it prepares on the transaction, and database/sql
// prepares such a statement again in every later transaction (measured: 28%
// of a 1,000-row consent's time was SQLite preparing its INSERT).
var insertChunks = []int{64, 8, 1}

// insertTable is an INSERT of rows into one table.
type insertTable struct {
	name    string   // the table
	columns []string // the columns each row gives, in order
	suffix  string   // what follows the VALUES, e.g. an ON CONFLICT clause
}

// The inserts of a consent's transaction.
var (
	// A message whose key is stored already is skipped, so that a consent
	// retried after a crash stores each message once.
	insertMessages = insertTable{"sealed_messages",
		[]string{"customer_id", "dialogue_id", "language", "sealed", "created_at", "msg_key"},
		"ON CONFLICT (msg_key) WHERE msg_key IS NOT NULL DO NOTHING"}
	// A dialogue that has a key keeps it (see storeKeys).
	insertKeys = insertTable{"dialogue_keys",
		[]string{"dialogue_id", "customer_id", "master_key", "wrapped"},
		"ON CONFLICT (dialogue_id) DO NOTHING"}
	insertLedger = insertTable{"consents",
		[]string{"dialogue_id", "customer_id", "consent", "decided_at", "messages", "key_name"}, ""}
)

// writerStmts are the INSERT statements prepared on the writer's one
// connection. The map is written only by newWriterStmts.
type writerStmts struct {
	stmts map[stmtKey]*sql.Stmt
}

// stmtKey names the INSERT of rows rows into a table.
type stmtKey struct {
	table string
	rows  int
}

// newWriterStmts prepares every INSERT on the writer's connection: within a
// transaction, which holds the only connection, none could be prepared on
// the pool. database/sql prepares a statement again on its own should the
// connection be replaced.
func newWriterStmts(ctx context.Context, writer *gorm.DB, dollars bool) (*writerStmts, error) {
	pool, err := writer.DB()
	if err != nil {
		return nil, err
	}
	w := &writerStmts{stmts: make(map[stmtKey]*sql.Stmt)}
	for _, t := range []insertTable{insertMessages, insertKeys, insertLedger} {
		for _, rows := range insertChunks {
			s, err := pool.PrepareContext(ctx, t.statement(rows, dollars))
			if err != nil {
				return nil, errors.Join(err, w.close())
			}
			w.stmts[stmtKey{t.name, rows}] = s
		}
	}
	return w, nil
}

func (w *writerStmts) close() error {
	if w == nil {
		return nil
	}
	var errs []error
	for _, s := range w.stmts {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// insert writes n rows into t within tx, the values of row i given by
// values(i, dst), and returns how many rows it inserted.
func (w *writerStmts) insert(ctx context.Context, tx *gorm.DB, t insertTable, n int, values func(i int, dst []any) []any) (int64, error) {
	stx, err := sqlTx(tx)
	if err != nil {
		return 0, err
	}
	var inserted int64
	args := make([]any, 0, insertChunks[0]*len(t.columns))
	for i := 0; i < n; {
		size := insertChunks[len(insertChunks)-1]
		for _, c := range insertChunks {
			if n-i >= c {
				size = c
				break
			}
		}
		stmt := w.stmts[stmtKey{t.name, size}]
		args = args[:0]
		for j := i; j < i+size; j++ {
			args = values(j, args)
		}
		res, err := stx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		if err != nil {
			return inserted, err
		}
		affected, err := res.RowsAffected()
		if err != nil {
			return inserted, err
		}
		inserted += affected
		i += size
	}
	return inserted, nil
}

// sqlTx is the database/sql transaction of a GORM transaction.
func sqlTx(tx *gorm.DB) (*sql.Tx, error) {
	switch p := tx.Statement.ConnPool.(type) {
	case *sql.Tx:
		return p, nil
	case *gorm.PreparedStmtTX:
		if t, ok := p.Tx.(*sql.Tx); ok {
			return t, nil
		}
	}
	return nil, errors.New("not a database/sql transaction")
}

// statement is the text of t's INSERT of rows rows.
func (t insertTable) statement(rows int, dollars bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + t.name + " (" + strings.Join(t.columns, ", ") + ") VALUES ")
	param := 0
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range t.columns {
			if c > 0 {
				b.WriteString(", ")
			}
			param++
			if dollars {
				b.WriteString("$" + strconv.Itoa(param))
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	if t.suffix != "" {
		b.WriteString(" " + t.suffix)
	}
	return b.String()
}
