package repository

import (
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

	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/keyring"
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
		query{"retention", "SELECT id FROM sealed_messages WHERE created_at < ? ORDER BY created_at, id LIMIT ?", []any{1, 2}},
		query{"withdrawal", "SELECT id FROM sealed_messages WHERE dialogue_id = ?", []any{"d1"}},
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

// TestSQLiteErasureLeavesNoTrace checks that once EraseCustomer returns,
// neither the sealed texts nor the wrapped key of an erased dialogue is in
// any file of the database, the database file or the write-ahead log: even
// with the key ring, nothing there yields the erased text.
func TestSQLiteErasureLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	db := openSQLiteAt(t, filepath.Join(dir, "test.db"))
	var msgs []model.Message
	for i := range 50 {
		msgs = append(msgs, msg("c1", "d1", "en", fmt.Sprint("filler ", i), int64(i)))
	}
	save(t, db, consent(msgs...), consent(msg("c2", "d2", "en", "other", 0)))
	key, _ := keyRow(t, db, "d1")
	traces := map[string][]byte{"key": key.Wrapped}
	for i, s := range sealedOf(t, db, "d1") {
		traces[fmt.Sprint("text ", i)] = s
	}

	// Erasing another customer checkpoints d1 into the database file, so
	// that erasing its own also tests secure_delete there.
	if _, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c2", ErasedAt: t0}); err != nil {
		t.Fatalf("EraseCustomer: %v", err)
	}
	if in := findInDir(t, dir, traces); len(in) != len(traces) || !strings.HasPrefix(in[0], "test.db:") {
		t.Fatalf("before erasure the traces of d1 are in %q, want each once in test.db", in)
	}
	if _, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c1", ErasedAt: t0}); err != nil {
		t.Fatalf("EraseCustomer: %v", err)
	}
	if in := findInDir(t, dir, traces); len(in) > 0 {
		t.Errorf("after erasure traces of d1 are in %q, want nowhere", in)
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
	var buf fake.Log // the background scrub logs too
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
	if err := db.scrubs.wait(t.Context()); err != nil {
		t.Fatal(err)
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

// plainMessageRowV1 is the plaintext messages table as it was before
// messages had keys.
type plainMessageRowV1 struct {
	ID         int64  `gorm:"primaryKey;autoIncrement;index:messages_created_id,priority:2;index:messages_language_created_id,priority:3;index:messages_customer_created_id,priority:3;index:messages_customer_language_created_id,priority:4"`
	CustomerID string `gorm:"not null;check:customer_id <> '';index:messages_customer_created_id,priority:1;index:messages_customer_language_created_id,priority:1"`
	DialogueID string `gorm:"not null;check:dialogue_id <> '';index:messages_dialogue"`
	Language   string `gorm:"not null;index:messages_language_created_id,priority:1;index:messages_customer_language_created_id,priority:2"`
	Text       string `gorm:"not null;check:text <> ''"`
	CreatedAt  int64  `gorm:"not null;autoCreateTime:false;index:messages_created_id,priority:1;index:messages_language_created_id,priority:2;index:messages_customer_created_id,priority:2;index:messages_customer_language_created_id,priority:3"`
}

func (plainMessageRowV1) TableName() string { return "messages" }

// TestSQLiteMigratesMessagesWithoutKeys checks that opening a database made
// before messages had keys (and before encryption) keeps its messages,
// sealed, and keys them from then on.
func TestSQLiteMigratesMessagesWithoutKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	old, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: gormLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.AutoMigrate(&plainMessageRowV1{}, &plainConsentRow{}, &plainErasureRow{}); err != nil {
		t.Fatal(err)
	}
	if err := old.Create(&plainMessageRowV1{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: "old", CreatedAt: t0.UnixNano()}).Error; err != nil {
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
	if got := count(t, db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'sealed_messages_msg_key' AND sql LIKE 'CREATE UNIQUE INDEX%'"); got != 1 {
		t.Errorf("got %d unique indexes sealed_messages_msg_key, want 1", got)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'messages'"); got != 0 {
		t.Errorf("the plaintext table or %d of its indexes are left", got)
	}
}

// TestSQLiteGeneratesItsKey opens SQLite without a key ring, as the
// default configuration does: a key is generated into a file beside the
// database, readable by its owner only, and used from then on; a key file
// that others may read, that is missing, or that holds another key is
// refused.
func TestSQLiteGeneratesItsKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.db")
	keyFile := path + ".key"
	logs := &fake.Log{}
	o := Options{Driver: "sqlite", DSN: path, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	db := openWith(t, o)
	save(t, db, consent(msg("c1", "d1", "en", "text", 1)))
	info, err := os.Stat(keyFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: got %v, %v; want mode -rw-------", info, err)
	}
	key, _ := os.ReadFile(keyFile)
	if !strings.Contains(logs.String(), `"key_file":"`+keyFile+`"`) || !strings.Contains(logs.String(), "generated one in a key file") {
		t.Errorf("the log does not say where the key was generated: %s", logs)
	}
	if strings.Contains(logs.String(), strings.TrimSpace(string(key))) {
		t.Error("the log holds the key")
	}
	if k, _ := keyRow(t, db, "d1"); k.MasterKey != GeneratedKeyID {
		t.Errorf("the dialogue key is wrapped by %q, want %q", k.MasterKey, GeneratedKeyID)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Opened again, it uses the same key and says nothing new.
	before := strings.Count(logs.String(), "generated one")
	db = openWith(t, o)
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"text"}) {
		t.Errorf("reopened: got %q, want [text]", got)
	}
	if after := strings.Count(logs.String(), "generated one"); after != before {
		t.Error("reopening generated another key")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	refused := func(name, want string) {
		t.Helper()
		db, err := Open(t.Context(), Options{Driver: "sqlite", DSN: path})
		if err == nil {
			db.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error saying %q", name, err, want)
		}
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	refused("key file readable by others", "others may read it; chmod 600 it")

	if err := os.Rename(keyFile, keyFile+".away"); err != nil {
		t.Fatal(err)
	}
	refused("key file missing", "wrapped by the master key of "+keyFile+", which is missing")
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a missing key file needed by the database was generated anew")
	}

	if _, err := keyring.CreateFile(keyFile); err != nil {
		t.Fatal(err)
	}
	refused("another key in the key file", `master key "generated" of the key ring does not unwrap the dialogue keys it wrapped`)

	// Elsewhere, when told.
	o = Options{Driver: "sqlite", DSN: filepath.Join(dir, "other.db"), KeyFile: filepath.Join(dir, "keys", "other.key")}
	db = openWith(t, o)
	save(t, db, consent(msg("c1", "d1", "en", "text", 1)))
	if _, err := os.Stat(o.KeyFile); err != nil {
		t.Errorf("the key file named by KeyFile: %v", err)
	}
}

// TestSQLiteScrubsCoalesce makes many scrub requests while a scrub cannot
// start: they are served by at most two scrubs, not one each.
func TestSQLiteScrubsCoalesce(t *testing.T) {
	db := openSQLite(t)
	pool, err := db.writer.DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Conn(t.Context()) // the one writer connection: no scrub can run
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		db.scrubs.request()
	}
	conn.Close()
	if err := db.scrubs.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	db.scrubs.mu.Lock()
	runs := db.scrubs.runs
	db.scrubs.mu.Unlock()
	if runs < 1 || runs > 2 {
		t.Errorf("100 requests ran %d scrubs, want 1 or 2", runs)
	}
}

// TestSQLitePurgeScrubsAfterItsLastBatch: a retention purge asks for a scrub
// after its last batch, and every purgeScrubEvery while it runs, not after
// each batch; the texts it deleted then leave the files.
func TestSQLitePurgeScrubsAfterItsLastBatch(t *testing.T) {
	clk := fake.NewClock()
	dir := t.TempDir()
	db := openWith(t, Options{Driver: "sqlite", DSN: filepath.Join(dir, "data.db"), Clock: clk.Now})
	// What yields the texts: their sealed copies and their keys.
	deleted := map[string][]byte{}
	for i := range 4 {
		d := fmt.Sprint("d", i)
		save(t, db, consent(msg("c", d, "en", "text of "+d, int64(i))))
		k, _ := keyRow(t, db, d)
		deleted[d+" key"] = k.Wrapped
		deleted[d+" text"] = sealedOf(t, db, d)[0]
	}
	requested := func() uint64 {
		db.scrubs.mu.Lock()
		defer db.scrubs.mu.Unlock()
		return db.scrubs.requested
	}
	before := t0.Add(time.Hour)
	for i, step := range []struct {
		advance time.Duration
		deleted int
		asks    bool
	}{
		{0, 1, true},                    // the first batch: no scrub for purgeScrubEvery before
		{purgeScrubEvery - 1, 1, false}, // a full batch, too soon
		{1, 1, true},                    // a full batch, purgeScrubEvery after the last request
		{0, 1, false},                   // a full batch, too soon
		{0, 0, true},                    // the last batch, empty: the one before is not yet scrubbed
		{purgeScrubEvery, 0, false},     // nothing deleted since
	} {
		clk.Advance(step.advance)
		was := requested()
		n, err := db.DeleteCreatedBefore(t.Context(), before, 1)
		if err != nil || n != step.deleted {
			t.Fatalf("batch %d: deleted %d, %v; want %d", i, n, err, step.deleted)
		}
		if asked := requested() > was; asked != step.asks {
			t.Errorf("batch %d: asked for a scrub: %v, want %v", i, asked, step.asks)
		}
	}
	if err := db.scrubs.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if found := findInDir(t, dir, deleted); len(found) > 0 {
		t.Errorf("after the purge's scrub, sealed texts or wrapped keys of purged dialogues in the files: %q", found)
	}
}

// TestSQLiteScrubRetries withdraws a dialogue while a reader holds a
// snapshot older than the withdrawal: the background checkpoint cannot
// complete, says so, and completes once the reader is done.
func TestSQLiteScrubRetries(t *testing.T) {
	logs := &fake.Log{}
	dir := t.TempDir()
	db := openWith(t, Options{Driver: "sqlite", DSN: filepath.Join(dir, "data.db"), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	save(t, db, consent(msg("c1", "d1", "en", "text", 1)), consent(msg("c1", "d2", "en", "text", 2)))
	key, _ := keyRow(t, db, "d1")

	pool, err := db.reader.DB()
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT COUNT(*) FROM sealed_messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Withdraw(t.Context(), model.Decision{DialogueID: "d1", DecidedAt: t0}); err != nil {
		t.Fatal(err)
	}
	// The first scrub fails while the snapshot is held.
	deadline, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for !strings.Contains(logs.String(), "scrubbing the database files after a deletion failed; retrying") {
		select {
		case <-deadline.Done():
			t.Fatalf("no failed scrub logged: %s", logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.scrubs.wait(deadline); err != nil {
		t.Fatalf("the scrub did not complete once the reader was done: %v", err)
	}
	if in := findInDir(t, dir, map[string][]byte{"key": key.Wrapped}); len(in) > 0 {
		t.Errorf("after the scrub the withdrawn key is in %q", in)
	}
}

func TestKeyCacheIsBounded(t *testing.T) {
	c := newKeyCache()
	k := &keyring.Key{}
	for i := range keyCacheSize + 10 {
		c.put(&cachedKey{dialogueID: fmt.Sprint("d", i), customerID: "c", wrapped: []byte{byte(i)}, key: k})
		if i == keyCacheSize-1 {
			c.get("d0") // d0 is used: d1 is the oldest now
		}
	}
	if c.len() != keyCacheSize {
		t.Errorf("got %d keys cached, want %d", c.len(), keyCacheSize)
	}
	if c.getRow("d0", "c", []byte{0}) == nil || c.get("d1") != nil {
		t.Error("the cache evicted a recently used key before the least recently used one")
	}
	if c.getRow("d0", "c", []byte{1}) != nil || c.getRow("d0", "c2", []byte{0}) != nil {
		t.Error("the cache answers a writer for other wrapped bytes or another customer")
	}
	c.dropCustomer("c")
	if c.len() != 0 {
		t.Errorf("after dropping the customer's keys, %d are cached", c.len())
	}
}
