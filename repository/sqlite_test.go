package repository

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/data-api/data-api/model"
)

func TestSQLitePragmas(t *testing.T) {
	db := openSQLite(t)
	for _, tc := range []struct {
		name string
		pool func() (*sql.DB, error)
		want map[string]string
	}{
		{"writer", db.writer.DB, map[string]string{"journal_mode": "wal", "synchronous": "2", "secure_delete": "1", "busy_timeout": "5000", "query_only": "0", "journal_size_limit": "4194304"}},
		{"reader", db.reader.DB, map[string]string{"journal_mode": "wal", "synchronous": "2", "secure_delete": "1", "busy_timeout": "5000", "query_only": "1", "journal_size_limit": "4194304"}},
		{"exporter", db.exporter.DB, map[string]string{"journal_mode": "wal", "synchronous": "2", "secure_delete": "1", "busy_timeout": "5000", "query_only": "1", "journal_size_limit": "4194304"}},
	} {
		pool, err := tc.pool()
		if err != nil {
			t.Fatal(err)
		}
		// Hold several connections at once so that each is a distinct one.
		var conns []*sql.Conn
		for range 2 {
			conn, err := pool.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
			if tc.name == "writer" {
				break
			}
		}
		for i, conn := range conns {
			for pragma, want := range tc.want {
				var got string
				if err := conn.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
					t.Fatalf("%s %d: PRAGMA %s: %v", tc.name, i, pragma, err)
				}
				if got != want {
					t.Errorf("%s %d: PRAGMA %s = %s, want %s", tc.name, i, pragma, got, want)
				}
			}
			conn.Close()
		}
	}
}

// TestSQLiteProbeWriteAtSizeLimit checks that the write probe fails, with
// the SQLITE_FULL of a full disk, when the database cannot grow by what a
// dialogue needs, and succeeds again once it can.
func TestSQLiteProbeWriteAtSizeLimit(t *testing.T) {
	db := openSQLite(t)
	// max_page_count cannot go below the database's size: this is its size.
	if err := db.writer.Exec("PRAGMA max_page_count = 1").Error; err != nil {
		t.Fatal(err)
	}
	err := db.ProbeWrite(t.Context())
	if !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("ProbeWrite at the size limit: got %v, want ErrUnavailable, database or disk is full", err)
	}
	if err := db.writer.Exec("PRAGMA max_page_count = 1000000").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.ProbeWrite(t.Context()); err != nil {
		t.Errorf("ProbeWrite with room again: %v", err)
	}
}

// TestSQLiteWALShrinksAfterALargeTransaction checks that the write-ahead
// log that a large transaction grew goes back to journal_size_limit once
// checkpointed, rather than keep its high-water mark on disk for good.
func TestSQLiteWALShrinksAfterALargeTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	db := openSQLiteAt(t, path)
	var big []model.Message
	text := strings.Repeat("x", 8000)
	for i := range 1000 { // about 8 MB in one transaction
		big = append(big, msg("c1", "big", "en", text, int64(i)))
	}
	walSize := func() int64 {
		info, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return info.Size()
	}
	save(t, db, consent(big...))
	if got := walSize(); got < 8_000_000 {
		t.Fatalf("after the large transaction the WAL holds %d bytes, want 8 MB or more", got)
	}
	// The large commit checkpoints the log; the next write starts it over,
	// cutting it to the limit.
	save(t, db, consent(msg("c1", "small", "en", "x", 1)))
	if got, limit := walSize(), int64(sqliteJournalSizeLimit); got > limit {
		t.Errorf("after a checkpoint and a small write the WAL holds %d bytes, want at most %d", got, limit)
	}
}

func TestSQLiteQueryPlans(t *testing.T) {
	db := openSQLite(t)
	after := &model.Position{CreatedAt: t0, ID: 7}
	type query struct {
		name string
		sql  string
		args []any
	}
	var queries []query
	for _, f := range filterCombinations("en", "c1", "d1", t0, t0.Add(time.Hour)) {
		for _, a := range []*model.Position{nil, after} {
			sql, args := selectMessages(f, a, 100)
			queries = append(queries, query{fmt.Sprintf("%s %v", sql, args), sql, args})
		}
	}
	queries = append(queries,
		query{"retention", "SELECT id FROM messages WHERE created_at < ? ORDER BY created_at, id LIMIT ?", []any{1, 2}},
		query{"withdrawal", "SELECT id FROM messages WHERE dialogue_id = ?", []any{"d1"}},
		query{"latest decision", "SELECT id FROM consents WHERE dialogue_id = ? ORDER BY id DESC LIMIT 1", []any{"d1"}},
	)
	for _, q := range queries {
		var details []string
		rows, err := db.reader.Raw("EXPLAIN QUERY PLAN "+q.sql, q.args...).Rows()
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			details = append(details, detail)
		}
		rows.Close()
		plan := strings.Join(details, "; ")
		if !strings.Contains(plan, " INDEX ") || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s:\n got plan %q, want an index and no temporary b-tree", q.name, plan)
		}
		if strings.Contains(q.sql, "dialogue_id = ?") && strings.HasPrefix(q.sql, "SELECT id, customer_id") && !strings.Contains(plan, "messages_dialogue_created_id") {
			t.Errorf("%s:\n got plan %q, want the dialogue's index", q.name, plan)
		}
	}
}

// TestSQLiteErasureLeavesNoTrace checks that erased text is in no file of the
// database once EraseCustomer returns, neither in the database file nor in
// the write-ahead log.
func TestSQLiteErasureLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	db := openSQLiteAt(t, filepath.Join(dir, "test.db"))
	canary := "canary-" + time.Now().Format(time.RFC3339Nano) + "-b7e1"
	var msgs []model.Message
	for i := range 50 {
		text := "filler"
		if i == 25 {
			text = canary
		}
		msgs = append(msgs, msg("c1", "d1", "en", text, int64(i)))
	}
	save(t, db, consent(msgs...), consent(msg("c2", "d2", "en", "other", 0)))

	found := func() []string {
		var in []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if bytes.Contains(b, []byte(canary)) {
				in = append(in, filepath.Base(path))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	// Erasing another customer checkpoints the canary into the database
	// file, so that erasing its own also tests secure_delete there.
	if _, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c2", ErasedAt: t0}); err != nil {
		t.Fatalf("EraseCustomer: %v", err)
	}
	if in := found(); len(in) != 1 || in[0] != "test.db" {
		t.Fatalf("before erasure the canary is in %q, want [test.db]", in)
	}
	if _, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c1", ErasedAt: t0}); err != nil {
		t.Fatalf("EraseCustomer: %v", err)
	}
	if in := found(); len(in) > 0 {
		t.Errorf("after erasure the canary is in %q, want nowhere", in)
	}
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	db := openSQLiteAt(t, path)
	save(t, db, consent(msg("c1", "d1", "en", "kept", 1)))
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	db = openSQLiteAt(t, path)
	if got := texts(all(t, db, model.Filter{})); len(got) != 1 || got[0] != "kept" {
		t.Errorf("after reopening got %q, want [kept]", got)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("database file mode: got %v, %v; want -rw-------", info.Mode(), err)
	}
}

func TestSQLiteLogsNoText(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := Open(t.Context(), Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "test.db"), Logger: log})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	const secret, customer, dialogue = "secret-text-4f1d", "cust-9b2e", "dlg-61c0"
	save(t, db, consent(msg(customer, dialogue, "en", secret, 1)))
	if _, err := db.Messages(t.Context(), model.Filter{Language: secret}, nil, 1); err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if _, err := db.Withdraw(context.Background(), model.Decision{DialogueID: dialogue, DecidedAt: t0}); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	if !strings.Contains(buf.String(), "msg=sql") {
		t.Errorf("the debug log traces no statement: %q", buf.String())
	}
	for _, s := range []string{secret, customer, dialogue} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("the debug log holds %q", s)
		}
	}
}

func TestOpenUnknownDriver(t *testing.T) {
	if _, err := Open(t.Context(), Options{Driver: "oracle", DSN: "x"}); err == nil {
		t.Error("Open with an unknown driver succeeded, want an error")
	}
}

// TestSQLiteReaderWaitHonoursContext checks that a read waiting for a
// connection gives up when its context ends.
func TestSQLiteReaderWaitHonoursContext(t *testing.T) {
	db, err := Open(t.Context(), Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "test.db"), MaxReaders: 1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	pool, err := db.reader.DB()
	if err != nil {
		t.Fatal(err)
	}
	held, err := pool.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := db.Messages(ctx, model.Filter{}, nil, 1); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("Messages while the only reader is busy: got %v, want context.DeadlineExceeded", err)
	}
}

// messageRowV1 is messageRow as it was before messages had keys.
type messageRowV1 struct {
	ID         int64  `gorm:"primaryKey;autoIncrement;index:messages_created_id,priority:2;index:messages_language_created_id,priority:3;index:messages_customer_created_id,priority:3;index:messages_customer_language_created_id,priority:4"`
	CustomerID string `gorm:"not null;check:customer_id <> '';index:messages_customer_created_id,priority:1;index:messages_customer_language_created_id,priority:1"`
	DialogueID string `gorm:"not null;check:dialogue_id <> '';index:messages_dialogue"`
	Language   string `gorm:"not null;index:messages_language_created_id,priority:1;index:messages_customer_language_created_id,priority:2"`
	Text       string `gorm:"not null;check:text <> ''"`
	CreatedAt  int64  `gorm:"not null;autoCreateTime:false;index:messages_created_id,priority:1;index:messages_language_created_id,priority:2;index:messages_customer_created_id,priority:2;index:messages_customer_language_created_id,priority:3"`
}

func (messageRowV1) TableName() string { return "messages" }

// TestSQLiteMigratesMessageKeys checks that opening a database made before
// messages had keys keeps its messages and adds the key and its index.
func TestSQLiteMigratesMessageKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	old, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: gormLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.AutoMigrate(&messageRowV1{}, &consentRow{}, &erasureRow{}); err != nil {
		t.Fatal(err)
	}
	if err := old.Create(&messageRowV1{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: "old", CreatedAt: t0.UnixNano()}).Error; err != nil {
		t.Fatal(err)
	}
	if err := closePool(old); err != nil {
		t.Fatal(err)
	}

	db := openSQLiteAt(t, path)
	m := msg("c1", "d2", "en", "new", 1)
	m.Key = "d2/1"
	save(t, db, consent(m))
	save(t, db, consent(m))
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"new", "old"}) {
		t.Errorf("got %q, want [new old]", got)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'messages_msg_key' AND sql LIKE 'CREATE UNIQUE INDEX%'"); got != 1 {
		t.Errorf("got %d unique indexes messages_msg_key, want 1", got)
	}
}
