package repository

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/internal/testserver"
	"github.com/data-api/data-api/journal"
	"github.com/data-api/data-api/keyring"
	"github.com/data-api/data-api/model"
)

// restoreBackend is what the restore tests need of a backend.
type restoreBackend struct {
	// options returns the options of a new, empty database with a deletion
	// journal.
	options func(t *testing.T) Options
	// backup backs the database of o, open as db, up as it is now, and
	// returns a function that destroys the live database and returns the
	// options and the restore of the backup in its place.
	backup func(t *testing.T, db *DB, o Options) (lose func() (Options, RestoreOptions))
	// files, when set, returns the directory of the database's files, for
	// a search for what a deletion must leave nowhere.
	files func(o Options) string
}

// journalClock is the clock of the journal and the backups: an hour before
// the test data, so that the journal begins before the decisions it
// records.
func journalClock() func() time.Time {
	c := fake.NewClock()
	c.Advance(t0.Sub(c.Now()) - time.Hour)
	return c.Now
}

func sqliteRestoreBackend() restoreBackend {
	return restoreBackend{
		options: func(t *testing.T) Options {
			dir := t.TempDir()
			return Options{
				Driver: "sqlite", DSN: filepath.Join(dir, "data", "data.db"),
				MasterKeys: []MasterKey{testKey}, ActiveKey: testKey.ID,
				JournalDir: filepath.Join(dir, "journal"), JournalKeep: 30 * 24 * time.Hour,
				Clock: journalClock(),
			}
		},
		backup: func(t *testing.T, db *DB, o Options) func() (Options, RestoreOptions) {
			path := filepath.Join(t.TempDir(), "backup.db")
			if _, err := db.Backup(t.Context(), path); err != nil {
				t.Fatalf("Backup: %v", err)
			}
			return func() (Options, RestoreOptions) {
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(filepath.Dir(o.DSN)); err != nil {
					t.Fatal(err)
				}
				return o, RestoreOptions{From: path}
			}
		},
		files: func(o Options) string { return filepath.Dir(o.DSN) },
	}
}

func postgresRestoreBackend() restoreBackend {
	return restoreBackend{
		options: func(t *testing.T) Options {
			_, dsn := postgresSchema(t)
			return Options{
				Driver: "postgres", DSN: dsn, MasterKeys: []MasterKey{testKey}, ActiveKey: testKey.ID,
				JournalDir: filepath.Join(t.TempDir(), "journal"), JournalKeep: 30 * 24 * time.Hour,
				Clock: journalClock(),
			}
		},
		// The operator's own backup, as a copy of every table in a schema of
		// its own; the restore is of the copy, in place.
		backup: func(t *testing.T, db *DB, o Options) func() (Options, RestoreOptions) {
			schema := searchPath(t, o.DSN)
			copySchema := schema + "_backup"
			base := testserver.Postgres(t)
			statements := []string{"CREATE SCHEMA " + copySchema}
			for _, table := range []string{"sealed_messages", "dialogue_keys", "consents", "erasures", "write_probes", "backups", "journal_state"} {
				statements = append(statements,
					fmt.Sprintf("CREATE TABLE %s.%s (LIKE %s.%s INCLUDING ALL)", copySchema, table, schema, table),
					fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", copySchema, table, schema, table))
			}
			admin(t, base, statements...)
			t.Cleanup(func() { admin(t, base, "DROP SCHEMA "+copySchema+" CASCADE") })
			return func() (Options, RestoreOptions) {
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				o.DSN = withParam(t, base, "search_path", copySchema)
				return o, RestoreOptions{}
			}
		},
	}
}

func TestSQLiteRestore(t *testing.T) {
	b := sqliteRestoreBackend()
	t.Run("ReappliesDeletions", func(t *testing.T) { testRestoreReappliesDeletions(t, b) })
	t.Run("Refuses", testRestoreRefuses)
	t.Run("NeedsTheMasterKeys", testRestoreNeedsTheMasterKeys)
	t.Run("Interrupted", testRestoreInterrupted)
	t.Run("OpenReappliesWhatTheDatabaseLacks", testOpenReappliesWhatTheDatabaseLacks)
	t.Run("OpenFollowsItsJournal", testOpenFollowsItsJournal)
	t.Run("FailedJournalFailsTheDeletion", testFailedJournalFailsTheDeletion)
	t.Run("BackupWhileConsenting", testBackupWhileConsenting)
}

func TestPostgresRestore(t *testing.T) {
	testserver.Postgres(t)
	testRestoreReappliesDeletions(t, postgresRestoreBackend())
}

// restoreScene is the data of the restore tests: dialogues consented
// before the backup, of which one is withdrawn, a customer's two erased
// and one purged for its age after it.
type restoreScene struct {
	texts map[string]string
	// deleted are the sealed texts and wrapped keys of what is deleted
	// after the backup, read before.
	deleted map[string][]byte
}

func setScene(t *testing.T, db *DB) restoreScene {
	t.Helper()
	c := canaries("kept", "withdrawn", "erased-1", "erased-2", "purged", "later")
	old := msg("c3", "d-purged", "en", c["purged"], 0)
	old.CreatedAt = t0.Add(-2 * time.Hour)
	save(t, db,
		consent(msg("c1", "d-kept", "en", c["kept"], 1)),
		consent(msg("c1", "d-withdrawn", "en", c["withdrawn"], 2), msg("c1", "d-withdrawn", "en", c["withdrawn"]+" again", 3)),
		consent(msg("c2", "d-erased-1", "en", c["erased-1"], 4)),
		consent(msg("c2", "d-erased-2", "de", c["erased-2"], 5)),
		consent(old),
	)
	s := restoreScene{texts: c, deleted: map[string][]byte{}}
	for _, d := range []string{"d-withdrawn", "d-erased-1", "d-erased-2", "d-purged"} {
		k, ok := keyRow(t, db, d)
		if !ok {
			t.Fatalf("no key row for %s", d)
		}
		s.deleted[d+" key"] = k.Wrapped
		for i, sealed := range sealedOf(t, db, d) {
			s.deleted[fmt.Sprintf("%s text %d", d, i)] = sealed
		}
	}
	return s
}

// lostAfterBackup sets the scene on a database of b, backs it up, deletes
// after the backup, and loses the database: it returns the options to open
// it again (the database gone), the scene and the restore's options.
func lostAfterBackup(t *testing.T, b restoreBackend) (Options, restoreScene, RestoreOptions) {
	t.Helper()
	o := b.options(t)
	db := openWith(t, o)
	s := setScene(t, db)
	lose := b.backup(t, db, o)
	deleteAfterBackup(t, db, s)
	o, r := lose()
	return o, s, r
}

// deleteAfterBackup withdraws, erases and purges, and stores a dialogue
// the restore loses.
func deleteAfterBackup(t *testing.T, db *DB, s restoreScene) {
	t.Helper()
	ctx := t.Context()
	if n, err := db.Withdraw(ctx, model.Decision{DialogueID: "d-withdrawn", CustomerID: "c1", DecidedAt: t0.Add(time.Minute), KeyName: "bot"}); n != 2 || err != nil {
		t.Fatalf("Withdraw: got %d, %v", n, err)
	}
	if n, err := db.EraseCustomer(ctx, model.Erasure{CustomerID: "c2", ErasedAt: t0.Add(2 * time.Minute), KeyName: "dpo"}); n != 2 || err != nil {
		t.Fatalf("EraseCustomer: got %d, %v", n, err)
	}
	if n, err := db.DeleteCreatedBefore(ctx, t0.Add(-time.Hour), 100); n != 1 || err != nil {
		t.Fatalf("DeleteCreatedBefore: got %d, %v", n, err)
	}
	save(t, db, consent(msg("c4", "d-later", "en", s.texts["later"], 6)))
}

// checkRestored checks that the restored database serves what was kept,
// holds the records of the deletions re-applied, and, where the files are
// searched, nothing that yields a deleted text.
func checkRestored(t *testing.T, db *DB, s restoreScene, dir string) {
	t.Helper()
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{s.texts["kept"]}) {
		t.Errorf("restored texts: got %q, want only the kept one (the one consented after the backup is lost with it)", got)
	}
	if got := count(t, db, "SELECT COUNT(*) FROM dialogue_keys"); got != 1 {
		t.Errorf("%d dialogue keys, want the kept dialogue's alone", got)
	}
	d, err := db.LatestDecision(t.Context(), "d-withdrawn")
	if err != nil || d.Consent || !d.DecidedAt.Equal(t0.Add(time.Minute)) || d.KeyName != "bot" || d.Messages != 2 {
		t.Errorf("the withdrawal's ledger entry: got %+v, %v", d, err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM erasures WHERE customer_id = 'c2' AND key_name = 'dpo' AND messages = 2"); n != 1 {
		t.Errorf("%d erasure records of c2, want 1", n)
	}
	if dir != "" {
		if found := findInDir(t, dir, s.deleted); len(found) > 0 {
			t.Errorf("after the restore, sealed texts or wrapped keys of deleted dialogues are in the files: %q", found)
		}
		if found := findInDir(t, dir, needles(s.texts)); len(found) > 0 {
			t.Errorf("after the restore, texts in the files: %q", found)
		}
	}
}

func testRestoreReappliesDeletions(t *testing.T, b restoreBackend) {
	o, s, r := lostAfterBackup(t, b)

	logs := &fake.Log{}
	o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	got, err := Restore(t.Context(), o, r)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got.Withdrawals != 1 || got.Erasures != 1 || got.Deleted != 4 || got.RetentionDeleted != 1 || !got.RetentionBefore.Equal(t0.Add(-time.Hour)) || len(got.Accepted) != 0 {
		t.Errorf("Restore: got %+v, want 1 withdrawal, 1 erasure, 4 messages deleted, 1 purged before %v", got, t0.Add(-time.Hour))
	}
	for _, secret := range []string{"c1", "c2", "d-withdrawn", s.texts["kept"]} {
		if strings.Contains(logs.String(), `"`+secret+`"`) {
			t.Errorf("the restore's log holds %q", secret)
		}
	}

	db := openWith(t, o)
	if r := db.reapplied; r.Withdrawals+r.Erasures != 0 {
		t.Errorf("the service's start after the restore re-applied %+v, want nothing", r)
	}
	if owed, err := db.RetentionOwed(t.Context()); err != nil || !owed.IsZero() {
		t.Errorf("the service's start after the restore owes a retention purge before %v (%v), want none", owed, err)
	}
	dir := ""
	if b.files != nil {
		dir = b.files(o)
		// A control: the backup itself still holds them, so the search
		// does find them where they are.
		if found := findInDir(t, filepath.Dir(r.From), s.deleted); len(found) != len(s.deleted) {
			t.Fatalf("the backup holds %d of the %d sealed texts and keys: the search reads nothing", len(found), len(s.deleted))
		}
	}
	checkRestored(t, db, s, dir)
}

// testRestoreRefuses: a journal that is missing, older than the backup,
// another database's or pruned past the backup makes the restore refuse,
// changing nothing, unless told to accept the loss, which it then logs as
// an error and does.
func testRestoreRefuses(t *testing.T) {
	b := sqliteRestoreBackend()
	for _, tc := range []struct {
		name string
		// spoil runs before the backup (before) and after the deletions
		// (after); either may be nil.
		before, after func(t *testing.T, o Options, stash string)
		want          string
	}{
		{"missing", nil, func(t *testing.T, o Options, _ string) {
			if err := os.RemoveAll(o.JournalDir); err != nil {
				t.Fatal(err)
			}
		}, "the deletion journal is missing"},
		{"older than the backup", func(t *testing.T, o Options, stash string) {
			if err := os.CopyFS(stash, os.DirFS(o.JournalDir)); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, o Options, stash string) {
			if err := os.RemoveAll(o.JournalDir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(stash, o.JournalDir); err != nil {
				t.Fatal(err)
			}
		}, "holds no record of backup"},
		{"another database's", nil, func(t *testing.T, o Options, _ string) {
			if err := os.RemoveAll(o.JournalDir); err != nil {
				t.Fatal(err)
			}
			other := b.options(t)
			other.JournalDir = o.JournalDir
			save(t, openWith(t, other), consent(msg("x", "d-x", "en", "x", 1)))
		}, "recorded its deletions in journal"},
		{"pruned past the backup", nil, func(t *testing.T, o Options, _ string) {
			old := time.Now().Add(-48 * time.Hour)
			segs, _ := filepath.Glob(filepath.Join(o.JournalDir, "*.jnl"))
			for _, s := range segs {
				if err := os.Chtimes(s, old, old); err != nil {
					t.Fatal(err)
				}
			}
			// Another process opens the journal, keeping a day: it deletes
			// every segment.
			ring, err := keyring.New(map[string][]byte{testKey.ID: testKey.Key}, testKey.ID)
			if err != nil {
				t.Fatal(err)
			}
			j, err := journal.Open(journal.Options{Dir: o.JournalDir, Ring: ring, Keep: 24 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
		}, "is whole only from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := b.options(t)
			stash := filepath.Join(t.TempDir(), "stash")
			db := openWith(t, o)
			s := setScene(t, db)
			if tc.before != nil {
				tc.before(t, o, stash)
			}
			lose := b.backup(t, db, o)
			deleteAfterBackup(t, db, s)
			o, r := lose()
			if tc.after != nil {
				tc.after(t, o, stash)
			}

			_, err := Restore(t.Context(), o, r)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--accept-lost-deletions") {
				t.Fatalf("Restore: got %v, want a refusal saying %q and naming --accept-lost-deletions", err, tc.want)
			}
			if _, err := os.Stat(o.DSN); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a refused restore left a database in place: %v", err)
			}

			logs := &fake.Log{}
			o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
			r.AcceptLostDeletions = true
			got, err := Restore(t.Context(), o, r)
			if err != nil {
				t.Fatalf("Restore accepting the loss: %v", err)
			}
			if len(got.Accepted) == 0 || !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("accepting the loss: got %q accepted, log %s; want the problem logged as an error", got.Accepted, logs)
			}
			db = openWith(t, o)
			// What accepting the loss means: the journal lacked the
			// withdrawal, and the withdrawn text is back.
			if restored := texts(all(t, db, model.Filter{CustomerID: "c1"})); !slices.Contains(restored, s.texts["withdrawn"]) {
				t.Errorf("accepting the loss of the journal: got %q, want the withdrawn text back", restored)
			}
		})
	}
}

// testRestoreNeedsTheMasterKeys: a backup whose dialogue keys the ring
// cannot unwrap is refused before anything changes, naming the master key;
// so is a restore in place where there is no database.
func testRestoreNeedsTheMasterKeys(t *testing.T) {
	b := sqliteRestoreBackend()
	o := b.options(t)
	db := openWith(t, o)
	setScene(t, db)
	o, r := b.backup(t, db, o)()
	o.MasterKeys, o.ActiveKey = []MasterKey{testKey2}, testKey2.ID
	if _, err := Restore(t.Context(), o, r); err == nil || !strings.Contains(err.Error(), `master key "k1"`) {
		t.Errorf("Restore without k1: got %v, want a refusal naming k1", err)
	}
	if _, err := os.Stat(o.DSN); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused restore left a database in place: %v", err)
	}
	// In place, with nothing there: refused, and nothing created.
	o.MasterKeys, o.ActiveKey = []MasterKey{testKey}, testKey.ID
	if _, err := Restore(t.Context(), o, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "no database to restore in place") {
		t.Errorf("Restore in place of no database: got %v", err)
	}
	if _, err := os.Stat(o.DSN); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a restore in place of no database made one: %v", err)
	}
}

// testRestoreInterrupted: a restore that fails half-way leaves its flag,
// which the service refuses to start on; run again, it takes up where it
// stopped and applies nothing twice.
func testRestoreInterrupted(t *testing.T) {
	b := sqliteRestoreBackend()
	o, s, r := lostAfterBackup(t, b)
	// The re-application of the erasure fails: the withdrawal, before it,
	// is applied.
	crash := "CREATE TRIGGER crash BEFORE DELETE ON sealed_messages WHEN old.customer_id = 'c2' BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
	if err := rawExec(t, r.From, crash); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(t.Context(), o, r); err == nil || !strings.Contains(err.Error(), "simulated crash") {
		t.Fatalf("Restore with a crash: got %v", err)
	}
	if _, err := Open(t.Context(), o); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Fatalf("Open of a restore that has not finished: got %v, want a refusal", err)
	}
	other := r
	other.From = filepath.Join(t.TempDir(), "other.db")
	if err := copyFile(r.From, other.From); err != nil {
		t.Fatal(err)
	}
	if err := rawExec(t, other.From, "UPDATE backups SET id = 'another'"); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(t.Context(), o, other); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Errorf("Restore of another backup over an unfinished one: got %v, want a refusal", err)
	}
	if err := rawExec(t, o.DSN, "DROP TRIGGER crash"); err != nil {
		t.Fatal(err)
	}
	got, err := Restore(t.Context(), o, r)
	if err != nil {
		t.Fatalf("Restore again: %v", err)
	}
	if got.Withdrawals != 0 || got.Erasures != 1 {
		t.Errorf("the second run re-applied %d withdrawals and %d erasures, want 0 and 1", got.Withdrawals, got.Erasures)
	}
	db := openWith(t, o)
	if n := count(t, db, "SELECT COUNT(*) FROM consents WHERE dialogue_id = 'd-withdrawn' AND consent = false"); n != 1 {
		t.Errorf("%d withdrawals of d-withdrawn in the ledger, want 1", n)
	}
	checkRestored(t, db, s, filepath.Dir(o.DSN))

	// A database in place is never replaced.
	if _, err := Restore(t.Context(), o, r); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("Restore over a live database: got %v, want a refusal", err)
	}
}

// rawExec runs a statement on the SQLite file at path, around the
// repository.
func rawExec(t *testing.T, path, statement string) error {
	t.Helper()
	g, err := openPool(sqliteDialector("file:"+path), 1, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	return errors.Join(g.Exec(statement).Error, closePool(g))
}

// testOpenReappliesWhatTheDatabaseLacks: the withdrawals and erasures of a
// backup copied in place by hand, and a withdrawal journaled whose commit
// failed, are re-applied by Open before it returns; the retention cutoff
// is reported for the service to purge.
func testOpenReappliesWhatTheDatabaseLacks(t *testing.T) {
	b := sqliteRestoreBackend()
	o, s, r := lostAfterBackup(t, b)
	if err := os.MkdirAll(filepath.Dir(o.DSN), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(r.From, o.DSN); err != nil {
		t.Fatal(err)
	}
	logs := &fake.Log{}
	o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	db := openWith(t, o)
	if db.reapplied.Withdrawals != 1 || db.reapplied.Erasures != 1 {
		t.Errorf("Open of a backup copied in place re-applied %+v", db.reapplied)
	}
	if !strings.Contains(logs.String(), "re-applied deletions of the deletion journal that the database lacked") {
		t.Errorf("the re-application is not logged: %s", logs)
	}
	// The retention cutoff is left to the service, which purges it in the
	// background as it serves: Open reports it, and the message stays
	// until then.
	owed, err := db.RetentionOwed(t.Context())
	if err != nil || !owed.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("RetentionOwed: got %v, %v; want the journaled cutoff %v", owed, err, t0.Add(-time.Hour))
	}
	if got := texts(all(t, db, model.Filter{CustomerID: "c3"})); !slices.Equal(got, []string{s.texts["purged"]}) {
		t.Fatalf("Open purged by retention: %q left of customer c3", got)
	}
	if n, err := db.DeleteCreatedBefore(t.Context(), owed, 100); n != 1 || err != nil {
		t.Fatalf("DeleteCreatedBefore the owed cutoff: got %d, %v", n, err)
	}
	if owed, err := db.RetentionOwed(t.Context()); err != nil || !owed.IsZero() {
		t.Errorf("RetentionOwed once purged: got %v, %v; want none", owed, err)
	}
	checkRestored(t, db, s, "")

	// A withdrawal journaled whose commit fails: the ledger refuses it.
	save(t, db, consent(msg("c5", "d-failed", "en", "withdrawn, failed", 7)))
	refuse := "CREATE TRIGGER refuse BEFORE INSERT ON consents WHEN new.consent = 0 BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"
	if err := db.writer.Exec(refuse).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := db.Withdraw(t.Context(), model.Decision{DialogueID: "d-failed", CustomerID: "c5", DecidedAt: t0.Add(time.Hour), KeyName: "bot"}); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("Withdraw with the ledger refusing: got %v", err)
	}
	if got := texts(all(t, db, model.Filter{CustomerID: "c5"})); len(got) != 1 {
		t.Fatalf("the failed withdrawal deleted: %q left", got)
	}
	if err := db.writer.Exec("DROP TRIGGER refuse").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openWith(t, o)
	if got := texts(all(t, db, model.Filter{CustomerID: "c5"})); len(got) != 0 || db.reapplied.Withdrawals != 1 {
		t.Errorf("after reopening: %q left, %d withdrawals re-applied; want none left, 1", got, db.reapplied.Withdrawals)
	}
}

// testOpenFollowsItsJournal: a database refuses a journal directory that
// is empty or holds another journal, and a configuration without one.
func testOpenFollowsItsJournal(t *testing.T) {
	o := sqliteRestoreBackend().options(t)
	db := openWith(t, o)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(o.JournalDir, moved); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"missing", o.JournalDir, "is not in"},
		{"another", "", "holds journal"},
		{"none configured", "-", "none is configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := o
			switch tc.dir {
			case "":
				other := sqliteRestoreBackend().options(t)
				openWith(t, other)
				o.JournalDir = other.JournalDir
			case "-":
				o.JournalDir = ""
			}
			if _, err := Open(t.Context(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	o.JournalDir = moved
	openWith(t, o)
}

// testFailedJournalFailsTheDeletion: a withdrawal or erasure that cannot be
// journaled fails as unavailable and deletes nothing.
func testFailedJournalFailsTheDeletion(t *testing.T) {
	o := sqliteRestoreBackend().options(t)
	db := openWith(t, o)
	save(t, db, consent(msg("c1", "d1", "en", "kept", 1)))
	// The journal's segment closed, and its directory a file: no segment
	// can be started.
	if err := db.journal.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(o.JournalDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.JournalDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := db.Withdraw(ctx, model.Decision{DialogueID: "d1", CustomerID: "c1", DecidedAt: t0}); !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("Withdraw without a journal: got %v, want unavailable", err)
	}
	if _, err := db.EraseCustomer(ctx, model.Erasure{CustomerID: "c1", ErasedAt: t0}); !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("EraseCustomer without a journal: got %v, want unavailable", err)
	}
	if got := texts(all(t, db, model.Filter{})); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("left: %q", got)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM consents WHERE consent = false") + count(t, db, "SELECT COUNT(*) FROM erasures"); n != 0 {
		t.Errorf("%d records of failed deletions", n)
	}
}

// testBackupWhileConsenting takes backups while consents are written: each
// copy is one moment's, every ledger entry with all its messages and no
// message without its entry, and records its high-water mark.
func testBackupWhileConsenting(t *testing.T) {
	o := sqliteRestoreBackend().options(t)
	db := openWith(t, o)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				d := fmt.Sprintf("d-%d-%d", w, i)
				var ms []model.Message
				for j := range 1 + i%5 {
					ms = append(ms, msg(fmt.Sprintf("c%d", w), d, "en", strings.Repeat("x", 100), int64(j)))
				}
				if err := db.SaveConsents(context.Background(), []model.Consent{consent(ms...)}); err != nil {
					t.Errorf("SaveConsents: %v", err)
					return
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	dir := t.TempDir()
	for i := range 3 {
		for count(t, db, "SELECT COUNT(*) FROM consents") < 50*(i+1) {
			time.Sleep(time.Millisecond) // consents arrive meanwhile
		}
		path := filepath.Join(dir, fmt.Sprintf("b%d.db", i))
		info, err := db.Backup(t.Context(), path)
		if err != nil {
			t.Fatalf("Backup: %v", err)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 || st.Size() != info.Bytes {
			t.Fatalf("the backup file: %v, %v; want mode 0600 and %d bytes", st.Mode(), err, info.Bytes)
		}
		g, err := openPool(sqliteDialector("file:"+path+"?mode=ro&immutable=1"), 1, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var torn, stored, last int64
		var mark backupRow
		err = errors.Join(
			g.Raw("SELECT COUNT(*) FROM consents c WHERE c.messages <> (SELECT COUNT(*) FROM sealed_messages m WHERE m.dialogue_id = c.dialogue_id)").Scan(&torn).Error,
			g.Raw("SELECT COUNT(*) FROM sealed_messages m WHERE NOT EXISTS (SELECT 1 FROM consents c WHERE c.dialogue_id = m.dialogue_id)").Scan(&stored).Error,
			g.Raw("SELECT COALESCE(MAX(id), 0) FROM consents").Scan(&last).Error,
			g.Raw("SELECT * FROM backups WHERE id = ?", info.ID).Scan(&mark).Error,
			closePool(g))
		if err != nil {
			t.Fatal(err)
		}
		if torn != 0 || stored != 0 {
			t.Errorf("backup %d: %d ledger entries without all their messages, %d messages without their entry", i, torn, stored)
		}
		if last == 0 || mark.LastConsentID != last || mark.TakenAt == 0 || mark.Messages != info.Messages || info.LastConsentID != last {
			t.Errorf("backup %d: its mark %+v, info %+v; want the newest ledger entry %d", i, mark, info, last)
		}
		if _, err := db.Backup(t.Context(), path); err == nil || !strings.Contains(err.Error(), "exists") {
			t.Errorf("a backup over an existing file: got %v", err)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}
}

func TestPostgresBackupRefused(t *testing.T) {
	db := openPostgres(t)
	if _, err := db.Backup(t.Context(), filepath.Join(t.TempDir(), "b.db")); err == nil || !strings.Contains(err.Error(), "pg_basebackup") {
		t.Errorf("Backup of PostgreSQL: got %v", err)
	}
}
