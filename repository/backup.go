package repository

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/journal"
)

// BackupInfo describes a backup: its id, when it was marked (and the mark
// journaled) and taken, and its high-water mark, what it holds.
type BackupInfo struct {
	ID            string
	MarkedAt      time.Time
	TakenAt       time.Time // zero for a database that only carries the mark
	LastConsentID int64     // the newest ledger entry
	LastDecidedAt time.Time
	LastErasureID int64 // the newest erasure record
	LastErasedAt  time.Time
	Messages      int64
	Bytes         int64 // the size of the file
}

func (r backupRow) info() BackupInfo {
	return BackupInfo{
		ID: r.ID, MarkedAt: fromNanos(r.MarkedAt), TakenAt: optionalTime(r.TakenAt),
		LastConsentID: r.LastConsentID, LastDecidedAt: optionalTime(r.LastDecidedAt),
		LastErasureID: r.LastErasureID, LastErasedAt: optionalTime(r.LastErasedAt),
		Messages: r.Messages,
	}
}

// optionalTime is the UTC time of Unix nanoseconds ns, or the zero time
// for 0.
func optionalTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return fromNanos(ns)
}

// Backup writes a copy of the SQLite database, consistent as of one
// moment, to a new file at path (which must not exist), readable by its
// owner only and synced, while the database serves. First it marks the
// backup: an entry in the deletion journal and a row in the database's
// backups table, so that the copy carries its mark and a restore can tell
// whether a journal holds every deletion made since. Then it copies the
// database with SQLite's online backup from a read connection (see
// backupSQLite) into a temporary file beside path, records in the copy's
// mark when it was taken and its high-water mark, and links the file into
// place. The copy holds texts sealed and dialogue keys wrapped, as the
// database does: it is no use without the key ring. PostgreSQL is backed
// up with its own tools.
func (db *DB) Backup(ctx context.Context, path string) (BackupInfo, error) {
	if db.backupTo == nil {
		return BackupInfo{}, errors.New("data-api backup copies the embedded SQLite database; back PostgreSQL up with its own tools (pg_basebackup and WAL archiving, or your provider's snapshots) and restore it as README, Backups, says")
	}
	path = filepath.Clean(path)
	if _, err := os.Lstat(path); err == nil {
		return BackupInfo{}, fmt.Errorf("%s exists: a backup never replaces a file; name a new one", path)
	}
	mark := backupRow{ID: strings.ToLower(rand.Text()[:16]), MarkedAt: db.clock().UnixNano()}
	if db.journal != nil {
		if err := db.journal.Append(journal.Entry{Kind: journal.Backup, At: mark.MarkedAt, BackupID: mark.ID}); err != nil {
			return BackupInfo{}, err
		}
	}
	if err := db.writer.WithContext(ctx).Create(&mark).Error; err != nil {
		return BackupInfo{}, unavailable(ctx, "mark the backup", err)
	}

	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+strings.ToLower(rand.Text()[:8]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("create the backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return BackupInfo{}, errors.Join(err, os.Remove(tmp))
	}
	info, err := db.copyTo(ctx, tmp, mark)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = moveNew(tmp, path)
	} else {
		err = errors.Join(err, os.Remove(tmp))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("back up to %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return BackupInfo{}, err
	}
	info.Bytes = st.Size()
	return info, nil
}

// copyTo copies the database into the empty file tmp and completes the
// copy's mark with when it was taken and what it holds.
func (db *DB) copyTo(ctx context.Context, tmp string, mark backupRow) (BackupInfo, error) {
	mark.TakenAt = db.clock().UnixNano()
	if err := db.backupTo(ctx, db.reader, tmp); err != nil {
		return BackupInfo{}, fmt.Errorf("copy the database: %w", err)
	}
	// A file of its own, without a write-ahead log: the copy is one file.
	g, err := openPool(sqliteDialector("file:"+uriEscaper.Replace(tmp)+"?_journal_mode=DELETE&_synchronous=FULL"), 1, db.log)
	if err != nil {
		return BackupInfo{}, err
	}
	err = g.WithContext(ctx).Raw("SELECT"+
		" COALESCE((SELECT id FROM consents ORDER BY id DESC LIMIT 1), 0),"+
		" COALESCE((SELECT decided_at FROM consents ORDER BY id DESC LIMIT 1), 0),"+
		" COALESCE((SELECT id FROM erasures ORDER BY id DESC LIMIT 1), 0),"+
		" COALESCE((SELECT erased_at FROM erasures ORDER BY id DESC LIMIT 1), 0),"+
		" (SELECT COUNT(*) FROM sealed_messages)").Row().
		Scan(&mark.LastConsentID, &mark.LastDecidedAt, &mark.LastErasureID, &mark.LastErasedAt, &mark.Messages)
	if err == nil {
		res := g.WithContext(ctx).Model(&backupRow{}).Where("id = ?", mark.ID).Updates(map[string]any{
			"taken_at": mark.TakenAt, "last_consent_id": mark.LastConsentID, "last_decided_at": mark.LastDecidedAt,
			"last_erasure_id": mark.LastErasureID, "last_erased_at": mark.LastErasedAt, "messages": mark.Messages,
		})
		if err = res.Error; err == nil && res.RowsAffected != 1 {
			err = errors.New("the copy lacks its own backup mark")
		}
	}
	if err = errors.Join(err, closePool(g)); err != nil {
		return BackupInfo{}, fmt.Errorf("record the backup's high-water mark: %w", err)
	}
	return mark.info(), nil
}

// RestoreOptions says what Restore restores.
type RestoreOptions struct {
	// From is a backup that Backup wrote, to put in place of the SQLite
	// database, which must not exist (unless it is this restore,
	// interrupted). Empty: the database is in place already (PostgreSQL
	// restored with its own tools, or a SQLite backup copied by hand), and
	// Restore re-applies the journal to it.
	From string
	// AcceptLostDeletions restores even though the journal cannot show that
	// it holds every deletion made since the backup: missing, of another
	// database, begun or pruned after the backup, or stale.
	AcceptLostDeletions bool
	// RetentionMaxAge, when positive, has the messages older than that
	// deleted too, as the retention purge would.
	RetentionMaxAge time.Duration
}

// Restored is what Restore did.
type Restored struct {
	Backup                BackupInfo // the restored database's newest backup mark (zero if it has none)
	Withdrawals, Erasures int        // re-applied from the journal
	Deleted               int        // messages they deleted
	RetentionBefore       time.Time  // messages created before it were deleted (zero if none were)
	RetentionDeleted      int
	Accepted              []string // what the journal could not show, restored anyway
}

// restoreSource is what a database to restore says of itself.
type restoreSource struct {
	journalID  string
	restoring  string
	mark       *backupRow // the newest backup mark
	newest     int64      // the newest decision, Unix ns; 0 if none
	masterKeys []string   // those that wrap its dialogue keys
}

// Restore restores a database from a backup and re-applies every deletion
// recorded in the journal since (see deletions.go), so that nothing deleted
// after the backup was taken comes back.
//
// Before it changes anything it checks that the journal can vouch for the
// time since the backup: that it exists and is the one the backup's
// database recorded its deletions in, that it holds the backup's mark (so
// it is not older than the backup, nor cut short, nor another database's),
// that it reaches back to the backup (no segment since was deleted for its
// age), and that it was being written up to the backup's newest decision.
// It refuses otherwise, saying why, unless AcceptLostDeletions, and then
// logs each problem as an error.
//
// It then flags the database as being restored (Open refuses it until the
// flag is cleared), puts the backup in place (From), re-applies the
// journal, purges past the newest journaled retention cutoff and
// RetentionMaxAge, scrubs the database files of what it deleted, and clears
// the flag. Interrupted, it can be run again as before: it finds its flag
// and takes up where it stopped (each re-applied deletion commits with its
// ledger record, and is not applied twice).
func Restore(ctx context.Context, o Options, r RestoreOptions) (Restored, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ring, err := openRing(ctx, nil, o, log)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: key ring: %w", err)
	}

	var (
		src    restoreSource
		flag   = "in place"
		resume bool // the database in place is this restore's, interrupted
	)
	if r.From != "" {
		if o.Driver != "sqlite" {
			return Restored{}, errors.New("restore --from puts a backup of the embedded SQLite database in place; restore PostgreSQL with its own tools, then run restore without --from")
		}
		if src, err = inspectBackup(ctx, r.From, log); err != nil {
			return Restored{}, err
		}
		flag = "backup " + filepath.Base(r.From)
		if src.mark != nil {
			flag = "backup " + src.mark.ID
		}
		if resume, err = resuming(ctx, o.DSN, flag, log); err != nil {
			return Restored{}, fmt.Errorf("restore: %w", err)
		}
	} else {
		if o.Driver == "sqlite" {
			if _, err := os.Stat(o.DSN); err != nil {
				return Restored{}, fmt.Errorf("restore: no database to restore in place (%w): copy the backup there first, or name it with --from", err)
			}
		}
		if src, err = inspectInPlace(ctx, o, log); err != nil {
			return Restored{}, fmt.Errorf("restore: %w", err)
		}
	}

	for _, id := range src.masterKeys {
		if !ring.Holds(id) {
			return Restored{}, fmt.Errorf("restore: the dialogue keys of the database to restore are wrapped by master key %q, which the key ring (encryption.keys) does not hold: add it; a backup needs the master keys of its time", id)
		}
	}

	var contents journal.Contents
	jerr := errors.New("no deletion journal is configured (journal.dir)")
	if o.JournalDir != "" {
		contents, jerr = journal.Read(o.JournalDir, ring, time.Time{})
	}
	problems := journalProblems(o.JournalDir, src, contents, jerr)
	if len(problems) > 0 && !r.AcceptLostDeletions {
		return Restored{}, fmt.Errorf("restore refused, as it would bring back what was deleted since the backup: %s. "+
			"Find the right journal (journal.dir), or restore anyway with --accept-lost-deletions and erase again by hand what was withdrawn or erased since",
			strings.Join(problems, "; "))
	}
	for _, p := range problems {
		log.ErrorContext(ctx, "restoring although the deletion journal cannot vouch for the time since the backup, as told (--accept-lost-deletions): deletions made since may be brought back", "problem", p)
	}

	if r.From != "" {
		err = putInPlace(ctx, o.DSN, r.From, flag, resume, log)
	} else {
		err = flagInPlace(ctx, o, flag, log)
	}
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}

	db, err := open(ctx, o, &restoring{acceptLost: r.AcceptLostDeletions})
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	out, err := db.finishRestore(ctx, r, contents)
	out.Accepted = problems
	if src.mark != nil {
		out.Backup = src.mark.info()
	}
	if err = errors.Join(err, db.Close()); err != nil {
		return out, fmt.Errorf("restore: %w", err)
	}
	log.InfoContext(ctx, "restored: every deletion the journal holds since the backup is applied, and the database files scrubbed",
		"backup", out.Backup.ID, "withdrawals", out.Withdrawals, "erasures", out.Erasures, "messages_deleted", out.Deleted,
		"retention_deleted", out.RetentionDeleted)
	return out, nil
}

// finishRestore purges what retention deleted, scrubs and clears the
// restore's flag, once Open has re-applied the journal.
func (db *DB) finishRestore(ctx context.Context, r RestoreOptions, c journal.Contents) (Restored, error) {
	rep := db.reapplied
	before := rep.RetentionBefore
	for _, e := range c.Entries {
		if e.Kind == journal.Retention {
			before = max(before, e.Before)
		}
	}
	if r.RetentionMaxAge > 0 {
		before = max(before, db.clock().Add(-r.RetentionMaxAge).UnixNano())
	}
	out := Restored{Withdrawals: rep.Withdrawals, Erasures: rep.Erasures, Deleted: rep.Deleted}
	if before > 0 {
		out.RetentionBefore = fromNanos(before)
		n, err := db.purgeBefore(ctx, before)
		out.RetentionDeleted += n
		if err != nil {
			return out, err
		}
	}
	if err := db.scrubNow(ctx); err != nil {
		return out, err
	}
	if err := setRestoring(ctx, db.writer, ""); err != nil {
		return out, unavailable(ctx, "clear the restore's flag", err)
	}
	return out, nil
}

// journalProblems returns why the journal in dir (c, or the error of
// reading it) cannot vouch for every deletion made since src was backed
// up.
func journalProblems(dir string, src restoreSource, c journal.Contents, err error) []string {
	switch {
	case dir == "":
		return []string{err.Error()}
	case errors.Is(err, journal.ErrNotExist):
		return []string{fmt.Sprintf("the deletion journal is missing: %s holds none", dir)}
	case err != nil:
		return []string{fmt.Sprintf("the deletion journal cannot be read: %v", err)}
	}
	var p []string
	if src.journalID != "" && src.journalID != c.ID {
		p = append(p, fmt.Sprintf("the backup's database recorded its deletions in journal %s, but %s holds journal %s", src.journalID, dir, c.ID))
	}
	from := src.newest
	if m := src.mark; m != nil {
		from = m.MarkedAt
		if !slices.ContainsFunc(c.Entries, func(e journal.Entry) bool { return e.Kind == journal.Backup && e.BackupID == m.ID }) {
			p = append(p, fmt.Sprintf("the deletion journal holds no record of backup %s (marked %s): the journal is older than the backup, or was cut short, or is another database's",
				m.ID, stamp(m.MarkedAt)))
		}
	}
	if from > 0 && c.Since > from {
		p = append(p, fmt.Sprintf("the deletion journal is whole only from %s (it began then, or older segments were deleted, see journal.keep), after the backup (%s)",
			stamp(c.Since), stamp(from)))
	}
	if src.newest > 0 && c.Newest < src.newest-(journal.MaxSilence+reapplySlack).Nanoseconds() {
		p = append(p, fmt.Sprintf("the deletion journal was last written %s, more than a day before the backup's newest decision (%s): it had stopped being written, or is a stale copy",
			stamp(c.Newest), stamp(src.newest)))
	}
	return p
}

func stamp(ns int64) string { return fromNanos(ns).Format(time.RFC3339) }

// inspectBackup reads what the backup file at path says of itself,
// without changing it.
func inspectBackup(ctx context.Context, path string, log *slog.Logger) (restoreSource, error) {
	if _, err := os.Stat(path); err != nil {
		return restoreSource{}, fmt.Errorf("restore: the backup: %w", err)
	}
	g, err := openPool(sqliteDialector("file:"+uriEscaper.Replace(filepath.Clean(path))+"?mode=ro&immutable=1"), 1, log)
	if err != nil {
		return restoreSource{}, fmt.Errorf("restore: open the backup: %w", err)
	}
	var src restoreSource
	if !g.Migrator().HasTable("sealed_messages") && !g.Migrator().HasTable("messages") {
		err = fmt.Errorf("%s is not a backup of a Data API database", path)
	} else {
		src, err = inspect(ctx, g)
	}
	if err = errors.Join(err, closePool(g)); err != nil {
		return restoreSource{}, fmt.Errorf("restore: read the backup: %w", err)
	}
	return src, nil
}

// inspect reads what the database of g says of itself; a database of an
// earlier version may lack the tables of backups and of the journal.
func inspect(ctx context.Context, g *gorm.DB) (restoreSource, error) {
	var src restoreSource
	g = g.WithContext(ctx)
	if g.Migrator().HasTable("journal_state") {
		state, err := readJournalState(ctx, g)
		if err != nil {
			return src, err
		}
		src.journalID, src.restoring = state.JournalID, state.Restoring
	}
	if g.Migrator().HasTable("backups") {
		var marks []backupRow
		if err := g.Raw("SELECT * FROM backups ORDER BY marked_at DESC LIMIT 1").Scan(&marks).Error; err != nil {
			return src, err
		}
		if len(marks) > 0 {
			src.mark = &marks[0]
		}
	}
	if g.Migrator().HasTable("dialogue_keys") {
		if err := g.Raw("SELECT DISTINCT master_key FROM dialogue_keys ORDER BY master_key").Scan(&src.masterKeys).Error; err != nil {
			return src, err
		}
	}
	if g.Migrator().HasTable("consents") {
		var decided, erased int64
		q := "SELECT COALESCE((SELECT decided_at FROM consents ORDER BY id DESC LIMIT 1), 0), 0"
		if g.Migrator().HasTable("erasures") {
			q = "SELECT COALESCE((SELECT decided_at FROM consents ORDER BY id DESC LIMIT 1), 0), COALESCE((SELECT erased_at FROM erasures ORDER BY id DESC LIMIT 1), 0)"
		}
		if err := g.Raw(q).Row().Scan(&decided, &erased); err != nil {
			return src, err
		}
		src.newest = max(decided, erased)
	}
	return src, nil
}

// resuming reports whether the SQLite database at dsn is that of this
// restore (flag), interrupted, to take up; and fails if a database of
// another is there, which restore never replaces.
func resuming(ctx context.Context, dsn, flag string, log *slog.Logger) (bool, error) {
	dsn = filepath.Clean(dsn)
	if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) {
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if _, err := os.Lstat(dsn + suffix); err == nil {
				return false, fmt.Errorf("%s exists without its database: move it away (SQLite would apply it to the restored database)", dsn+suffix)
			}
		}
		return false, nil
	} else if err != nil {
		return false, err
	}
	d, err := newSQLite(dsn)
	if err != nil {
		return false, err
	}
	w, err := openPool(d.writer, 1, log)
	if err != nil {
		return false, err
	}
	src, err := inspect(ctx, w)
	if err = errors.Join(err, closePool(w)); err != nil {
		return false, fmt.Errorf("read %s: %w", dsn, err)
	}
	switch src.restoring {
	case flag:
		log.InfoContext(ctx, "taking up the restore where it stopped", "restoring", flag)
		return true, nil
	case "":
		return false, fmt.Errorf("%s exists: restore never replaces a database; stop the service, move the database and its -wal and -shm files away (they hold what was stored since the backup), and run restore again", dsn)
	default:
		return false, fmt.Errorf("a restore (%s) of %s has not finished: finish it, run as it was, or move the database and its -wal and -shm files away", src.restoring, dsn)
	}
}

// putInPlace copies the backup from to a new SQLite database at dsn,
// flagged, unless this restore is being resumed.
func putInPlace(ctx context.Context, dsn, from, flag string, resume bool, log *slog.Logger) error {
	if resume {
		return nil
	}
	dsn = filepath.Clean(dsn)
	if err := os.MkdirAll(filepath.Dir(dsn), 0o750); err != nil {
		return err
	}
	tmp := dsn + ".restoring"
	for _, p := range []string{tmp, tmp + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := copyFile(from, tmp); err != nil {
		return fmt.Errorf("copy the backup: %w", err)
	}
	d, err := newSQLite(tmp)
	if err != nil {
		return err
	}
	// Without a write-ahead log, so that the file moved into place is
	// whole.
	d.writer = sqliteDialector("file:" + uriEscaper.Replace(tmp) + "?_journal_mode=DELETE&_synchronous=FULL")
	w, err := openPool(d.writer, 1, log)
	if err != nil {
		return err
	}
	err = migrate(ctx, w, d)
	if err == nil {
		err = setRestoring(ctx, w, flag)
	}
	if err = errors.Join(err, closePool(w)); err != nil {
		return fmt.Errorf("flag the restored database: %w", err)
	}
	if err := os.Rename(tmp, dsn); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dsn))
}

// inspectInPlace reads what the database o names says of itself, once
// migrated.
func inspectInPlace(ctx context.Context, o Options, log *slog.Logger) (restoreSource, error) {
	d, err := newDialect(o)
	if err != nil {
		return restoreSource{}, err
	}
	w, err := openPool(d.writer, 1, log)
	if err != nil {
		return restoreSource{}, fmt.Errorf("open database: %w", err)
	}
	err = migrate(ctx, w, d)
	var src restoreSource
	if err == nil {
		src, err = inspect(ctx, w)
	}
	if err = errors.Join(err, closePool(w)); err != nil {
		return restoreSource{}, fmt.Errorf("read the database: %w", err)
	}
	return src, nil
}

// flagInPlace flags the database o names as being restored.
func flagInPlace(ctx context.Context, o Options, flag string, log *slog.Logger) error {
	d, err := newDialect(o)
	if err != nil {
		return err
	}
	w, err := openPool(d.writer, 1, log)
	if err != nil {
		return err
	}
	err = setRestoring(ctx, w, flag)
	return errors.Join(err, closePool(w))
}

// moveNew moves the file at tmp to path, which must not exist: by a link,
// then the removal of tmp, so that a file made at path meanwhile is never
// replaced; on a file system without hard links (some network shares), by
// a rename once it has seen that path does not exist. tmp is gone after it,
// whatever it returns.
func moveNew(tmp, path string) error {
	err := os.Link(tmp, path)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		if _, serr := os.Lstat(path); errors.Is(serr, fs.ErrNotExist) {
			if err := os.Rename(tmp, path); err != nil {
				return errors.Join(err, os.Remove(tmp))
			}
			return nil
		}
	}
	return errors.Join(err, os.Remove(tmp))
}

// copyFile copies from to a new file to, readable by its owner only, and
// syncs it.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(err, out.Close())
}

// syncFile syncs the file at path to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
