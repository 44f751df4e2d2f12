package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/data-api/data-api/internal/canary"
	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/internal/testserver"
	"github.com/data-api/data-api/keyring"
	"github.com/data-api/data-api/model"
)

// testKey2 is the master key k2, to which the tests rotate.
var testKey2 = MasterKey{ID: "k2", Key: []byte("fedcba9876543210fedcba9876543210")}

// encBackend is what the encryption tests need of a backend beyond an open
// database: where its files are, how to copy it, and a way around the
// repository to its tables.
type encBackend struct {
	// options returns the options of a new, empty database with the key
	// ring of testKey.
	options func(t *testing.T) Options
	// find makes the files of the database of o current and returns, for
	// each needle found in one, "file: needle".
	find func(t *testing.T, o Options, needles map[string][]byte) []string
	// scrubsInPlace says whether deleted rows leave the files at once
	// (SQLite's secure_delete and checkpoint), beyond their text.
	scrubsInPlace bool
	// backup copies the database of o, open as db, as it is now, and
	// returns the options of the copy (same key ring).
	backup func(t *testing.T, db *DB, o Options) Options
	// raw opens the database of o with GORM alone, closed when t ends.
	raw func(t *testing.T, o Options) *gorm.DB
	// crash makes deleting a plaintext message of id above n fail;
	// uncrash undoes it.
	crash   func(n int) []string
	uncrash []string
}

func sqliteBackend() encBackend {
	return encBackend{
		options: func(t *testing.T) Options {
			return Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "data.db"), MasterKeys: []MasterKey{testKey}, ActiveKey: testKey.ID}
		},
		find: func(t *testing.T, o Options, needles map[string][]byte) []string {
			return findInDir(t, filepath.Dir(o.DSN), needles)
		},
		scrubsInPlace: true,
		backup: func(t *testing.T, db *DB, o Options) Options {
			o.DSN = filepath.Join(t.TempDir(), "backup.db")
			if err := db.writer.Exec("VACUUM INTO ?", o.DSN).Error; err != nil {
				t.Fatal(err)
			}
			return o
		},
		raw: func(t *testing.T, o Options) *gorm.DB {
			g, err := gorm.Open(sqlite.Open(o.DSN), &gorm.Config{Logger: gormLogger{slog.New(slog.DiscardHandler)}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closePool(g) })
			return g
		},
		crash: func(n int) []string {
			return []string{fmt.Sprintf("CREATE TRIGGER crash BEFORE DELETE ON messages WHEN old.id > %d BEGIN SELECT RAISE(ABORT, 'simulated crash'); END", n)}
		},
		uncrash: []string{"DROP TRIGGER crash"},
	}
}

func postgresBackend() encBackend {
	return encBackend{
		options: func(t *testing.T) Options {
			_, dsn := postgresSchema(t)
			return Options{Driver: "postgres", DSN: dsn, MasterKeys: []MasterKey{testKey}, ActiveKey: testKey.ID}
		},
		find: func(t *testing.T, _ Options, needles map[string][]byte) []string {
			// The whole server's data directory, its WAL included, once
			// every change has reached the files.
			base := testserver.Postgres(t)
			admin(t, base, "CHECKPOINT")
			var dir string
			g := rawPostgres(t, base)
			if err := g.Raw("SHOW data_directory").Scan(&dir).Error; err != nil {
				t.Fatal(err)
			}
			return findInDir(t, dir, needles)
		},
		backup: func(t *testing.T, _ *DB, o Options) Options {
			// A logical copy in a schema of its own, as a restored backup.
			schema := searchPath(t, o.DSN)
			copySchema := schema + "_backup"
			base := testserver.Postgres(t)
			statements := []string{"CREATE SCHEMA " + copySchema}
			for _, table := range []string{"sealed_messages", "dialogue_keys", "consents", "erasures"} {
				statements = append(statements,
					fmt.Sprintf("CREATE TABLE %s.%s (LIKE %s.%s INCLUDING ALL)", copySchema, table, schema, table),
					fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", copySchema, table, schema, table))
			}
			admin(t, base, statements...)
			t.Cleanup(func() { admin(t, base, "DROP SCHEMA "+copySchema+" CASCADE") })
			o.DSN = withParam(t, base, "search_path", copySchema)
			return o
		},
		raw: func(t *testing.T, o Options) *gorm.DB { return rawPostgres(t, o.DSN) },
		crash: func(n int) []string {
			return []string{
				fmt.Sprintf("CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF OLD.id > %d THEN RAISE EXCEPTION 'simulated crash'; END IF; RETURN OLD; END $$", n),
				"CREATE TRIGGER crash BEFORE DELETE ON messages FOR EACH ROW EXECUTE FUNCTION crash()",
			}
		},
		uncrash: []string{"DROP TRIGGER crash ON messages"},
	}
}

func rawPostgres(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	g, err := gorm.Open(postgresDialector(dsn, nil), &gorm.Config{Logger: gormLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(g) })
	return g
}

// searchPath returns the schema a test DSN made by postgresSchema names.
func searchPath(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Query().Get("search_path") == "" {
		t.Fatalf("no search_path in the test DSN")
	}
	return u.Query().Get("search_path")
}

// findInDir returns "file: needle" for each needle in a file under dir.
func findInDir(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	found, err := canary.Find(dir, needles)
	if err != nil {
		t.Fatalf("read the database files: %v", err)
	}
	return found
}

func TestSQLiteEncryption(t *testing.T) { runEncryptionSuite(t, sqliteBackend()) }

func TestPostgresEncryption(t *testing.T) {
	testserver.Postgres(t)
	runEncryptionSuite(t, postgresBackend())
}

func runEncryptionSuite(t *testing.T, b encBackend) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, encBackend)
	}{
		{"CanariesInNoFile", testCanariesInNoFile},
		{"BackupReadableUntilRotation", testBackupReadableUntilRotation},
		{"RefusesMissingMasterKey", testRefusesMissingMasterKey},
		{"KeysFollowDeletions", testKeysFollowDeletions},
		{"TextBoundToItsRow", testTextBoundToItsRow},
		{"MigratesPlaintext", testMigratesPlaintext},
		{"StaleCacheAcrossInstances", testStaleCacheAcrossInstances},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, b) })
	}
}

// canaries returns texts unique to this run, by name.
func canaries(names ...string) map[string]string {
	tag := rand.Text()[:12]
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = "CANARY-" + n + "-" + tag
	}
	return m
}

func needles(texts map[string]string) map[string][]byte {
	m := make(map[string][]byte, len(texts))
	for n, s := range texts {
		m[n] = []byte(s)
	}
	return m
}

// keyRow returns the key row of a dialogue, read around the repository.
func keyRow(t *testing.T, db *DB, dialogueID string) (dialogueKeyRow, bool) {
	t.Helper()
	var rows []dialogueKeyRow
	if err := db.writer.Raw("SELECT dialogue_id, customer_id, master_key, wrapped FROM dialogue_keys WHERE dialogue_id = ?", dialogueID).
		Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		return dialogueKeyRow{}, false
	}
	return rows[0], true
}

// sealedOf returns the sealed texts of a dialogue, read around the
// repository.
func sealedOf(t *testing.T, db *DB, dialogueID string) [][]byte {
	t.Helper()
	var sealed [][]byte
	if err := db.writer.Raw("SELECT sealed FROM sealed_messages WHERE dialogue_id = ? ORDER BY id", dialogueID).Scan(&sealed).Error; err != nil {
		t.Fatal(err)
	}
	return sealed
}

// testCanariesInNoFile consents canary texts, withdraws one dialogue,
// erases a customer and purges a third dialogue past retention, and finds
// none of the texts in any file of the database, before the deletions or
// after. Where the engine scrubs deleted rows (SQLite), neither the sealed
// texts nor the wrapped keys of what was deleted are left either: with
// the key ring, nothing in the files yields the deleted text.
func testCanariesInNoFile(t *testing.T, b encBackend) {
	o := b.options(t)
	db := openWith(t, o)
	c := canaries("withdrawn", "erased-1", "erased-2", "purged", "kept")
	old := msg("c3", "d-purged", "en", c["purged"], 0)
	old.CreatedAt = t0.Add(-time.Hour)
	keyed := msg("c2", "d-erased-2", "de", c["erased-2"], 3)
	keyed.Key = "d-erased-2/1"
	save(t, db,
		consent(msg("c1", "d-withdrawn", "en", c["withdrawn"], 1), msg("c1", "d-withdrawn", "en", c["withdrawn"]+" again", 2)),
		consent(msg("c2", "d-erased-1", "en", c["erased-1"], 2)),
		consent(keyed),
		consent(old),
		consent(msg("c3", "d-kept", "en", c["kept"], 4)),
	)
	if found := b.find(t, o, needles(c)); len(found) > 0 {
		t.Errorf("after the consents, canaries in the files: %q", found)
	}
	// A control: plaintext written around the encryption is found, so the
	// search does read the files as they are.
	control := "CONTROL-" + rand.Text()[:12]
	if err := db.writer.Exec("INSERT INTO erasures (customer_id, erased_at, messages, key_name) VALUES ('control', 0, 0, ?)", control).Error; err != nil {
		t.Fatal(err)
	}
	if found := b.find(t, o, map[string][]byte{"control": []byte(control)}); len(found) == 0 {
		t.Fatal("the control text written in plaintext is in no file: the search reads nothing")
	}

	// What deletion must leave nowhere: the sealed texts and wrapped keys
	// of the deleted dialogues.
	deleted := map[string][]byte{}
	for _, d := range []string{"d-withdrawn", "d-erased-1", "d-erased-2", "d-purged"} {
		k, ok := keyRow(t, db, d)
		if !ok {
			t.Fatalf("no key row for %s", d)
		}
		deleted[d+" key"] = k.Wrapped
		for i, s := range sealedOf(t, db, d) {
			deleted[fmt.Sprintf("%s text %d", d, i)] = s
		}
	}

	ctx := t.Context()
	if n, err := db.Withdraw(ctx, model.Decision{DialogueID: "d-withdrawn", CustomerID: "c1", DecidedAt: t0}); n != 2 || err != nil {
		t.Fatalf("Withdraw: got %d, %v; want 2, nil", n, err)
	}
	if n, err := db.EraseCustomer(ctx, model.Erasure{CustomerID: "c2", ErasedAt: t0}); n != 2 || err != nil {
		t.Fatalf("EraseCustomer: got %d, %v; want 2, nil", n, err)
	}
	if n, err := db.DeleteCreatedBefore(ctx, t0, 100); n != 1 || err != nil {
		t.Fatalf("DeleteCreatedBefore: got %d, %v; want 1, nil", n, err)
	}
	if err := db.scrubs.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if found := b.find(t, o, needles(c)); len(found) > 0 {
		t.Errorf("after the deletions, canaries in the files: %q", found)
	}
	if b.scrubsInPlace {
		if found := b.find(t, o, deleted); len(found) > 0 {
			t.Errorf("after the deletions, their sealed texts or wrapped keys are in the files: %q", found)
		}
	}
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{c["kept"]}) {
		t.Errorf("left: got %q, want [%s]", got, c["kept"])
	}
	if got := count(t, db, "SELECT COUNT(*) FROM dialogue_keys"); got != 1 {
		t.Errorf("got %d dialogue keys, want 1: the kept dialogue's", got)
	}
}

// testBackupReadableUntilRotation shows why rotation exists: a copy of the
// database taken before an erasure yields the erased text with the key
// ring of the time; once a rotation has rewrapped the live keys and the
// old master key is destroyed, the copy yields nothing, while every live
// dialogue stays readable.
func testBackupReadableUntilRotation(t *testing.T, b encBackend) {
	o := b.options(t)
	db := openWith(t, o)
	save(t, db,
		consent(msg("c1", "d1", "en", "erased text", 1)),
		consent(msg("c2", "d2", "en", "live text", 2), msg("c2", "d2", "en", "live text 2", 3)))
	backup := b.backup(t, db, o)
	if _, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c1", ErasedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if got := texts(all(t, openWith(t, backup), model.Filter{CustomerID: "c1"})); !slices.Equal(got, []string{"erased text"}) {
		t.Fatalf("the backup with the old key ring: got %q, want [erased text]", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Rotate: k2 joins the ring as the active key, the keys are rewrapped.
	rotating := o
	rotating.MasterKeys, rotating.ActiveKey = []MasterKey{testKey, testKey2}, testKey2.ID
	logs := &fake.Log{}
	rotating.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	db = openWith(t, rotating)
	save(t, db, consent(msg("c3", "d3", "en", "new text", 4))) // wrapped by k2 already
	if n, err := db.RotateKeys(t.Context()); n != 1 || err != nil {
		t.Fatalf("RotateKeys: got %d, %v; want 1 (d2's), nil", n, err)
	}
	if n, err := db.RotateKeys(t.Context()); n != 0 || err != nil {
		t.Errorf("RotateKeys again: got %d, %v; want 0, nil", n, err)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM dialogue_keys WHERE master_key <> 'k2'"); got != 0 {
		t.Errorf("%d dialogue keys not wrapped by k2 after the rotation", got)
	}
	if !strings.Contains(logs.String(), "rotated: every dialogue key is wrapped by the active master key") {
		t.Errorf("the rotation logs no end: %s", logs)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// k1 destroyed: the live database reads with k2 alone.
	o.MasterKeys, o.ActiveKey = []MasterKey{testKey2}, testKey2.ID
	db = openWith(t, o)
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"new text", "live text 2", "live text"}) {
		t.Errorf("the live database with k2 alone: got %q", got)
	}

	// The copy yields nothing: it refuses to open without k1, and no key
	// in it unwraps with k2, under its own id or k1's.
	backup.MasterKeys, backup.ActiveKey = o.MasterKeys, o.ActiveKey
	if _, err := Open(t.Context(), backup); err == nil || !strings.Contains(err.Error(), `master key "k1"`) {
		t.Errorf("opening the backup with k2 alone: got %v, want a refusal naming k1", err)
	}
	var rows []dialogueKeyRow
	if err := b.raw(t, backup).Raw("SELECT dialogue_id, customer_id, master_key, wrapped FROM dialogue_keys").Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	onlyK2, _ := keyring.New(map[string][]byte{"k2": testKey2.Key}, "k2")
	k2AsK1, _ := keyring.New(map[string][]byte{"k1": testKey2.Key}, "k1")
	for _, r := range rows {
		ad := keyAD(r.DialogueID, r.CustomerID)
		if _, err := onlyK2.Unwrap(r.Wrapped, ad); err == nil {
			t.Errorf("the backup's key of %s unwraps with k2", r.DialogueID)
		}
		if _, err := k2AsK1.Unwrap(r.Wrapped, ad); err == nil {
			t.Errorf("the backup's key of %s unwraps with k2 named k1", r.DialogueID)
		}
	}
	if len(rows) != 2 {
		t.Errorf("the backup holds %d keys, want 2", len(rows))
	}
}

// testRefusesMissingMasterKey opens a database with key rings that cannot
// unwrap its keys: without the master key that wrapped them, or with
// another key under its id.
func testRefusesMissingMasterKey(t *testing.T, b encBackend) {
	o := b.options(t)
	db := openWith(t, o)
	save(t, db, consent(msg("c1", "d1", "en", "text", 1)))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		keys   []MasterKey
		active string
		want   string
	}{
		"k1 missing":        {[]MasterKey{testKey2}, "k2", `the database holds dialogue keys wrapped by master key "k1", which the key ring (encryption.keys) does not hold`},
		"another key as k1": {[]MasterKey{{ID: "k1", Key: testKey2.Key}}, "k1", `master key "k1" of the key ring does not unwrap the dialogue keys it wrapped`},
	} {
		o := o
		o.MasterKeys, o.ActiveKey = tc.keys, tc.active
		db, err := Open(t.Context(), o)
		if err == nil {
			db.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), string(testKey.Key)) || strings.Contains(err.Error(), string(testKey2.Key))) {
			t.Errorf("%s: the error %q holds a key", name, err)
		}
	}
	// With k2 added as the active key, it opens and says what remains.
	logs := &fake.Log{}
	o.MasterKeys, o.ActiveKey = []MasterKey{testKey, testKey2}, "k2"
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db = openWith(t, o)
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"text"}) {
		t.Errorf("got %q, want [text]", got)
	}
	if !strings.Contains(logs.String(), `"master_keys":["k1"]`) {
		t.Errorf("the log does not say that keys wrapped by k1 remain: %s", logs)
	}
	for _, k := range []MasterKey{testKey, testKey2} {
		if strings.Contains(logs.String(), string(k.Key)) {
			t.Errorf("the log holds master key %s", k.ID)
		}
	}
}

// testKeysFollowDeletions checks the life of dialogue keys: one per
// dialogue, kept when the dialogue is consented again, deleted by its
// withdrawal, by its customer's erasure, and by the retention purge once
// no message of it is left; and the cache of unwrapped keys with them.
func testKeysFollowDeletions(t *testing.T, b encBackend) {
	db := openWith(t, b.options(t))
	ctx := t.Context()
	save(t, db,
		consent(msg("c1", "d1", "en", "d1 a", 1), msg("c1", "d1", "en", "d1 b", 2)),
		consent(msg("c1", "d2", "en", "d2", 3)),
		consent(msg("c2", "d3", "en", "d3 old", 4), msg("c2", "d3", "en", "d3 new", 6)))
	first, ok := keyRow(t, db, "d1")
	if !ok || first.CustomerID != "c1" || first.MasterKey != "k1" {
		t.Fatalf("key row of d1: got %+v, %v", first, ok)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM dialogue_keys"); got != 3 {
		t.Errorf("got %d key rows, want 3", got)
	}
	if db.keys.get("d1") == nil {
		t.Error("the key of a dialogue just consented is not cached")
	}

	// Consented again, in a batch with a new dialogue: the same key.
	save(t, db, consent(msg("c1", "d1", "en", "d1 c", 5)), consent(msg("c1", "d4", "en", "d4", 5)))
	if again, _ := keyRow(t, db, "d1"); !bytes.Equal(again.Wrapped, first.Wrapped) {
		t.Error("consenting to d1 again replaced its key")
	}
	db.keys.drop("d1") // read it from its row
	if got := texts(all(t, db, model.Filter{CustomerID: "c1"})); !slices.Equal(got, []string{"d4", "d1 c", "d2", "d1 b", "d1 a"}) {
		t.Errorf("after consenting again: got %q", got)
	}

	if _, err := db.Withdraw(ctx, model.Decision{DialogueID: "d1", DecidedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, ok := keyRow(t, db, "d1"); ok || db.keys.get("d1") != nil {
		t.Errorf("after the withdrawal: key row %v, cached %v; want neither", ok, db.keys.get("d1") != nil)
	}
	// A new consent after the withdrawal gets a new key.
	save(t, db, consent(msg("c1", "d1", "en", "d1 d", 7)))
	if renewed, _ := keyRow(t, db, "d1"); bytes.Equal(renewed.Wrapped, first.Wrapped) {
		t.Error("after its withdrawal, d1 was consented again under its old key")
	}

	if _, err := db.EraseCustomer(ctx, model.Erasure{CustomerID: "c1", ErasedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM dialogue_keys WHERE customer_id = 'c1'"); got != 0 {
		t.Errorf("after the erasure, %d key rows of c1 are left", got)
	}
	for _, d := range []string{"d1", "d2", "d4"} {
		if k, _ := keyRow(t, db, d); k.Wrapped != nil || db.keys.get(d) != nil {
			t.Errorf("after the erasure, the key of %s is left", d)
		}
	}
	if db.keys.len() != 1 {
		t.Errorf("after the erasure, %d keys cached, want 1 (d3's)", db.keys.len())
	}

	// The purge takes d3's older message, then its newer: its key goes
	// with the last.
	if n, err := db.DeleteCreatedBefore(ctx, t0.Add(5), 10); n != 1 || err != nil {
		t.Fatalf("DeleteCreatedBefore: got %d, %v; want 1, nil", n, err)
	}
	if _, ok := keyRow(t, db, "d3"); !ok {
		t.Error("the purge of one of d3's messages deleted its key")
	}
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"d3 new"}) {
		t.Errorf("after the first purge: got %q, want [d3 new]", got)
	}
	if n, err := db.DeleteCreatedBefore(ctx, t0.Add(7), 10); n != 1 || err != nil {
		t.Fatalf("DeleteCreatedBefore: got %d, %v; want 1, nil", n, err)
	}
	if _, ok := keyRow(t, db, "d3"); ok || db.keys.len() != 0 {
		t.Errorf("after the purge of d3's last message: key row %v, %d keys cached; want none", ok, db.keys.len())
	}
}

// testStaleCacheAcrossInstances has one instance cache a dialogue's key
// while another withdraws the dialogue and stores it again under a new
// key: the first reads the new texts, never the old key's failure, and a
// consent through it seals under the key the row holds, not the cached one.
func testStaleCacheAcrossInstances(t *testing.T, b encBackend) {
	o := b.options(t)
	a, other := openWith(t, o), openWith(t, o)
	save(t, a, consent(msg("c1", "d1", "en", "before", 1)))
	if got := texts(all(t, a, model.Filter{})); !slices.Equal(got, []string{"before"}) || a.keys.get("d1") == nil {
		t.Fatalf("got %q, cached %v; want [before] and the key cached", got, a.keys.get("d1") != nil)
	}
	if _, err := other.Withdraw(t.Context(), model.Decision{DialogueID: "d1", CustomerID: "c1", DecidedAt: t0}); err != nil {
		t.Fatal(err)
	}
	save(t, other, consent(msg("c1", "d1", "en", "after", 2)))
	for range 2 { // as a page and as an export
		page, err := a.Messages(t.Context(), model.Filter{}, nil, 10)
		if err != nil || !slices.Equal(texts(page), []string{"after"}) {
			t.Errorf("Messages through the instance with the stale key: got %q, %v; want [after]", texts(page), err)
		}
		if got := texts(all(t, a, model.Filter{})); !slices.Equal(got, []string{"after"}) {
			t.Errorf("Export through the instance with the stale key: got %q, want [after]", got)
		}
	}
	// Stale again, then a consent through it: sealed under the stored key.
	if _, err := other.Withdraw(t.Context(), model.Decision{DialogueID: "d1", CustomerID: "c1", DecidedAt: t0}); err != nil {
		t.Fatal(err)
	}
	save(t, other, consent(msg("c1", "d1", "en", "again", 3)))
	save(t, a, consent(msg("c1", "d1", "en", "through a", 4)))
	other.keys.drop("d1")
	if got := texts(all(t, other, model.Filter{})); !slices.Equal(got, []string{"through a", "again"}) {
		t.Errorf("after a consent through the stale instance: got %q, want [through a again]", got)
	}
}

// testTextBoundToItsRow moves sealed texts and wrapped keys to other rows:
// they do not open there, and the read fails as a fault, not as a 503 to
// retry, rather than return another row's text.
func testTextBoundToItsRow(t *testing.T, b encBackend) {
	for _, tc := range []struct {
		name, tamper string
	}{
		{"text to another dialogue's row", "UPDATE sealed_messages SET sealed = (SELECT sealed FROM sealed_messages WHERE dialogue_id = 'd2') WHERE dialogue_id = 'd1'"},
		{"text to a row of the same dialogue", "UPDATE sealed_messages SET sealed = (SELECT sealed FROM sealed_messages WHERE created_at = ?) WHERE created_at = ?"},
		{"key to another dialogue", "UPDATE dialogue_keys SET wrapped = (SELECT wrapped FROM dialogue_keys WHERE dialogue_id = 'd2') WHERE dialogue_id = 'd1'"},
		{"message to another customer", "UPDATE sealed_messages SET customer_id = 'c2' WHERE dialogue_id = 'd1'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openWith(t, b.options(t))
			save(t, db,
				consent(msg("c1", "d1", "en", "mine", 1), msg("c1", "d1", "en", "mine too", 2)),
				consent(msg("c2", "d2", "en", "theirs", 3)))
			var args []any
			if strings.Contains(tc.tamper, "?") {
				args = []any{t0.Add(2).UnixNano(), t0.Add(1).UnixNano()}
			}
			if err := db.writer.Exec(tc.tamper, args...).Error; err != nil {
				t.Fatal(err)
			}
			db.keys.drop("d1", "d2")
			_, err := db.Messages(t.Context(), model.Filter{}, nil, 10)
			if !errors.Is(err, keyring.ErrOpen) || errors.Is(err, model.ErrUnavailable) {
				t.Errorf("Messages: got %v, want keyring.ErrOpen and not ErrUnavailable", err)
			}
			err = db.Export(t.Context(), model.Filter{}, func(model.StoredMessage) error { return nil })
			if !errors.Is(err, keyring.ErrOpen) || errors.Is(err, model.ErrUnavailable) {
				t.Errorf("Export: got %v, want keyring.ErrOpen and not ErrUnavailable", err)
			}
		})
	}
}

// plainMessageRow is the messages table of the schema before encryption,
// as the release before it wrote it.
type plainMessageRow struct {
	ID         int64   `gorm:"primaryKey;autoIncrement;index:messages_created_id,priority:2;index:messages_language_created_id,priority:3;index:messages_customer_created_id,priority:3;index:messages_customer_language_created_id,priority:4;index:messages_dialogue_created_id,priority:3"`
	CustomerID string  `gorm:"not null;check:customer_id <> '';index:messages_customer_created_id,priority:1;index:messages_customer_language_created_id,priority:1"`
	DialogueID string  `gorm:"not null;check:dialogue_id <> '';index:messages_dialogue_created_id,priority:1"`
	Language   string  `gorm:"not null;index:messages_language_created_id,priority:1;index:messages_customer_language_created_id,priority:2"`
	Text       string  `gorm:"not null;check:text <> ''"`
	CreatedAt  int64   `gorm:"not null;autoCreateTime:false;index:messages_created_id,priority:1;index:messages_language_created_id,priority:2;index:messages_customer_created_id,priority:2;index:messages_customer_language_created_id,priority:3;index:messages_dialogue_created_id,priority:2"`
	Key        *string `gorm:"column:msg_key;uniqueIndex:messages_msg_key,where:msg_key IS NOT NULL"`
}

func (plainMessageRow) TableName() string { return "messages" }

// plainConsentRow and plainErasureRow are the ledger and the erasures of
// the schema before encryption, without the customer indexes.
type plainConsentRow struct {
	ID         int64  `gorm:"primaryKey;autoIncrement;index:consents_dialogue_id,priority:2"`
	DialogueID string `gorm:"not null;check:dialogue_id <> '';index:consents_dialogue_id,priority:1"`
	CustomerID string `gorm:"not null"`
	Consent    bool   `gorm:"not null"`
	DecidedAt  int64  `gorm:"not null"`
	Messages   int    `gorm:"not null"`
	KeyName    string `gorm:"not null"`
}

func (plainConsentRow) TableName() string { return "consents" }

type plainErasureRow struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	CustomerID string `gorm:"not null"`
	ErasedAt   int64  `gorm:"not null"`
	Messages   int    `gorm:"not null"`
	KeyName    string `gorm:"not null"`
}

func (plainErasureRow) TableName() string { return "erasures" }

// testMigratesPlaintext opens a database written before encryption: its
// messages are sealed in batches, keeping their ids, and a crash between
// two batches leaves a database that the next Open finishes.
func testMigratesPlaintext(t *testing.T, b encBackend) {
	o := b.options(t)
	raw := b.raw(t, o)
	if err := raw.AutoMigrate(&plainMessageRow{}, &plainConsentRow{}, &plainErasureRow{}); err != nil {
		t.Fatal(err)
	}
	const total, perDialogue = 5000, 20 // three batches of plaintextBatch
	c := canaries("plain")
	var want []model.StoredMessage
	var rows []plainMessageRow
	for i := range total {
		m := msg(fmt.Sprint("c", i/perDialogue%7), fmt.Sprint("d", i/perDialogue), []string{"en", "de"}[i%2], fmt.Sprintf("%s %d", c["plain"], i), int64(i))
		r := plainMessageRow{CustomerID: m.CustomerID, DialogueID: m.DialogueID, Language: m.Language, Text: m.Text, CreatedAt: m.CreatedAt.UnixNano()}
		if i%3 == 0 {
			r.Key = nullable(fmt.Sprint("key-", i))
		}
		rows = append(rows, r)
		want = append(want, model.StoredMessage{ID: int64(i + 1), Message: m})
	}
	if err := raw.CreateInBatches(rows, 500).Error; err != nil {
		t.Fatal(err)
	}
	if err := raw.Create(&plainConsentRow{DialogueID: "d0", CustomerID: "c0", Consent: true, DecidedAt: 1, Messages: perDialogue, KeyName: "bot"}).Error; err != nil {
		t.Fatal(err)
	}
	slices.Reverse(want)

	// The second batch fails: the first stays done.
	for _, s := range b.crash(plaintextBatch + plaintextBatch/4) {
		if err := raw.Exec(s).Error; err != nil {
			t.Fatal(err)
		}
	}
	logs := &fake.Log{}
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if db, err := Open(t.Context(), o); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("after %d of %d messages", plaintextBatch, total)) {
		if err == nil {
			db.Close()
		}
		t.Fatalf("Open with a crash in the second batch: got %v, want an error after the first", err)
	}
	var sealed, plain int
	if err := raw.Raw("SELECT (SELECT COUNT(*) FROM sealed_messages), (SELECT COUNT(*) FROM messages)").Row().Scan(&sealed, &plain); err != nil {
		t.Fatal(err)
	}
	if sealed != plaintextBatch || plain != total-plaintextBatch {
		t.Fatalf("after the crash: %d sealed, %d plain; want %d and %d", sealed, plain, plaintextBatch, total-plaintextBatch)
	}
	for _, s := range b.uncrash {
		if err := raw.Exec(s).Error; err != nil {
			t.Fatal(err)
		}
	}

	db := openWith(t, o)
	got := all(t, db, model.Filter{})
	if len(got) != total || !slices.EqualFunc(got, want, func(a, b model.StoredMessage) bool {
		return a.ID == b.ID && a.Message == b.Message
	}) {
		t.Errorf("after the migration: %d messages, want the %d written before, with their ids", len(got), total)
	}
	if db.writer.Migrator().HasTable(plaintextTable) {
		t.Error("the plaintext table is left")
	}
	if got := count(t, db, "SELECT COUNT(*) FROM dialogue_keys"); got != total/perDialogue {
		t.Errorf("got %d dialogue keys, want %d", got, total/perDialogue)
	}
	// Keys and ids go on as they were.
	keyed := msg("c0", "d0", "en", "retried", 0)
	keyed.Key = "key-0"
	save(t, db, consent(keyed), consent(msg("c9", "d-new", "en", "new", int64(total))))
	if got := count(t, db, "SELECT COUNT(*) FROM sealed_messages"); got != total+1 {
		t.Errorf("got %d messages, want %d: a keyed message is stored once", got, total+1)
	}
	if got := count(t, db, "SELECT id FROM sealed_messages WHERE dialogue_id = 'd-new'"); got <= total {
		t.Errorf("the first new message got id %d, want one past the %d migrated", got, total)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM consents WHERE customer_id = 'c0'"); got != 2 {
		t.Errorf("got %d ledger entries of c0, want 2", got)
	}
	for _, want := range []string{"encrypting the plaintext messages", `"messages":5000`, "encrypted every plaintext message"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	if strings.Contains(logs.String(), c["plain"]) {
		t.Error("the log holds a text")
	}
	if b.scrubsInPlace {
		if found := b.find(t, o, needles(c)); len(found) > 0 {
			t.Errorf("after the migration, plaintext in the files: %q", found)
		}
	}
}

// testCustomerData reads everything stored about a customer.
func testCustomerData(t *testing.T, db *DB) {
	ctx := t.Context()
	save(t, db,
		consent(msg("c1", "d1", "en", "a", 1), msg("c1", "d1", "de", "b", 3)),
		consent(msg("c1", "d2", "en", "c", 2)),
		consent(msg("c2", "d3", "en", "other", 4)))
	if _, err := db.Withdraw(ctx, model.Decision{DialogueID: "d2", CustomerID: "c1", DecidedAt: t0.Add(time.Hour), KeyName: "bot"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EraseCustomer(ctx, model.Erasure{CustomerID: "c2", ErasedAt: t0.Add(2 * time.Hour), KeyName: "dpo"}); err != nil {
		t.Fatal(err)
	}
	describe := func(customer string) []string {
		var out []string
		err := db.CustomerData(ctx, customer, func(r model.CustomerRecord) error {
			switch {
			case r.Message != nil:
				out = append(out, "message "+r.Message.DialogueID+" "+r.Message.Language+" "+r.Message.Text)
			case r.Decision != nil:
				out = append(out, fmt.Sprintf("consent %s %v %d", r.Decision.DialogueID, r.Decision.Consent, r.Decision.Messages))
			case r.Erasure != nil:
				out = append(out, fmt.Sprintf("erasure %s %d %s", r.Erasure.CustomerID, r.Erasure.Messages, r.Erasure.ErasedAt.Format(time.RFC3339)))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("CustomerData(%s): %v", customer, err)
		}
		return out
	}
	for customer, want := range map[string][]string{
		"c1":     {"message d1 de b", "message d1 en a", "consent d1 true 2", "consent d2 true 1", "consent d2 false 1"},
		"c2":     {"consent d3 true 1", "erasure c2 1 " + t0.Add(2*time.Hour).Format(time.RFC3339)},
		"nobody": nil,
	} {
		if got := describe(customer); !slices.Equal(got, want) {
			t.Errorf("CustomerData(%s):\n got %q\nwant %q", customer, got, want)
		}
	}
	errStop := errors.New("client gone")
	calls := 0
	err := db.CustomerData(ctx, "c1", func(model.CustomerRecord) error { calls++; return errStop })
	if err != errStop || calls != 1 {
		t.Errorf("fn failing: got %v after %d calls, want %v after 1", err, calls, errStop)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.CustomerData(cctx, "c1", func(model.CustomerRecord) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ctx cancelled: got %v, want context.Canceled", err)
	}
}
