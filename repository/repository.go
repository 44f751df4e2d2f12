// Package repository stores consented messages, the consent ledger and the
// erasure records in a SQL database through GORM. It is the only package that
// knows about SQL; it speaks the model package's types and error vocabulary.
//
// Every stored text is encrypted under a key of its dialogue, itself stored
// only wrapped by a master key of the configured key ring (see keys.go): no
// plaintext text reaches a database file.
//
// Every write goes through one writer connection and every read through a
// separate pool of read-only connections, so that readers never wait for a
// writer and writes are serialised in the order they were made. The queries
// are plain SQL that runs on SQLite and PostgreSQL alike; what differs
// between engines lives in a dialect (see sqlite.go and postgres.go).
package repository

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/data-api/data-api/journal"
	"github.com/data-api/data-api/keyring"
	"github.com/data-api/data-api/model"
)

// defaultMaxReaders and defaultMaxExports size the reader and export pools
// when Options.MaxReaders or Options.MaxExports is not positive.
const (
	defaultMaxReaders = 4
	defaultMaxExports = 4
)

// Options says which database to open and how.
type Options struct {
	Driver     string       // "sqlite" or "postgres"
	DSN        string       // for "sqlite", the path of the database file; for "postgres", a libpq URL or key=value string
	MaxReaders int          // read connections; 4 when not positive
	MaxExports int          // exports at once, each on a read connection of its own beside MaxReaders; 4 when not positive
	Logger     *slog.Logger // receives SQL statements, without their parameters, at debug level; nil discards

	// MasterKeys is the key ring that wraps the dialogue keys, and
	// ActiveKey the id of the one that wraps new keys. On SQLite the ring
	// may be empty: the ring is then the key in KeyFile (DSN + ".key" when
	// empty), generated when missing on a database that needs none yet.
	MasterKeys []MasterKey
	ActiveKey  string
	KeyFile    string

	// JournalDir, when set, is the directory of the deletion journal (see
	// deletions.go): every withdrawal, erasure and retention purge is
	// recorded there before it commits, and Open re-applies what the
	// database lacks. JournalKeep is how long its segments are kept.
	JournalDir  string
	JournalKeep time.Duration
	// Clock stamps the journal and the backups; nil: time.Now.
	Clock func() time.Time
}

// DB is the database of consented messages. It is safe for concurrent use.
type DB struct {
	writer *gorm.DB // one connection: every write, in the order made
	reader *gorm.DB // a pool of read-only connections
	log    *slog.Logger
	ring   *keyring.Ring // the master keys
	keys   *keyCache     // unwrapped dialogue keys
	// exporter is a pool of read-only connections for exports only, one per
	// slot of exportSlots, which an export holds while it runs.
	exporter    *gorm.DB
	exportSlots chan struct{}
	// scrub purges what the engine keeps of deleted rows outside its tables.
	scrub func(ctx context.Context, writer *gorm.DB) error
	// scrubs runs scrubAfterDelete in the background after withdrawals and
	// purges; nil when the dialect has none.
	scrubs *scrubber
	// interruptQueries and keysQuery are the dialect's.
	interruptQueries bool
	keysQuery        string
	// inserts are the writer's prepared INSERT statements.
	inserts *writerStmts

	// journal records deletions; nil without Options.JournalDir.
	journal *journal.Journal
	clock   func() time.Time
	// retentionJournaled is the newest retention cutoff journaled.
	retentionJournaled atomic.Int64
	// purgeScrub spaces the scrubs of a retention purge.
	purgeScrub purgeScrub
	// applyLock, when set, serialises re-applications across processes.
	applyLock string
	// backupTo copies the database as of one read transaction into a
	// file; nil when the dialect has none (see Backup).
	backupTo func(ctx context.Context, reader *gorm.DB, path string) error
	// reapplied is what Open re-applied from the journal.
	reapplied reapplied
	// owner is DialogueOwner's query, prepared once on the readers: it runs
	// for every new dialogue.
	owner *sql.Stmt
}

// dialect holds what differs between database engines: how to connect the
// writer and the read-only readers, check the server, migrate, scrub deleted
// rows and read.
type dialect struct {
	writer, reader gorm.Dialector
	// exporter connects read-only like reader, to a pool of its own: a
	// dialector may hold its pool, so each pool needs its own dialector.
	exporter gorm.Dialector
	// check, when set, inspects the database once the writer is connected
	// and logs what weakens the package's guarantees.
	check func(ctx context.Context, writer *gorm.DB, log *slog.Logger) error
	// migrateLock, when set, is the statement that serialises migrations
	// across processes (see migrate).
	migrateLock string
	// keyTableOptions ends the CREATE TABLE of dialogue_keys.
	keyTableOptions string
	// syncSequence, when set, moves the sequence of sealed_messages' ids
	// past the ids inserted explicitly (see encryptPlaintext).
	syncSequence string
	// scrub purges what the engine keeps of deleted rows outside its tables.
	scrub func(ctx context.Context, writer *gorm.DB) error
	// scrubAfterDelete, when set, is the scrub run in the background after
	// a withdrawal or a retention purge (see scrubber).
	scrubAfterDelete func(ctx context.Context, writer *gorm.DB) error
	// dollars numbers statement parameters $1, $2, … rather than writing ?.
	dollars bool
	// interruptQueries runs a query under the caller's context, so that
	// the driver interrupts it when the context ends. Without it ctx is
	// checked between rows only.
	interruptQueries bool
	// backupTo, when set, copies the database as of one read transaction
	// into a file (see Backup).
	backupTo func(ctx context.Context, reader *gorm.DB, path string) error
	// keysQuery selects the dialogue_id, customer_id and wrapped of the
	// dialogue keys whose ids its one argument lists, a JSON array. It is
	// prepared by database/sql, not GORM: its placeholder is the driver's.
	keysQuery string
}

// Open opens the database o describes, creating and migrating its schema as
// needed, and encrypting the texts of a database written before encryption
// (see encryptPlaintext). It refuses a database whose dialogue keys the key
// ring cannot unwrap, and one whose restore has not finished (see Restore).
// With a deletion journal it re-applies, before it returns, every deletion
// the journal holds that the database lacks (see followJournal), and
// refuses a database that names another journal or whose journal is
// missing. The caller must Close the DB. It holds at most
// o.MaxReaders+o.MaxExports+1 connections, and on PostgreSQL one more while
// an erasure vacuums.
func Open(ctx context.Context, o Options) (*DB, error) {
	return open(ctx, o, nil)
}

// open is Open, or with r set the opening of a database that Restore is
// restoring.
func open(ctx context.Context, o Options, r *restoring) (*DB, error) {
	d, err := newDialect(o)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	readers, exports := o.MaxReaders, o.MaxExports
	if readers <= 0 {
		readers = defaultMaxReaders
	}
	if exports <= 0 {
		exports = defaultMaxExports
	}

	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	db := &DB{
		log: log, keys: newKeyCache(), scrub: d.scrub,
		interruptQueries: d.interruptQueries, keysQuery: d.keysQuery,
		exportSlots: make(chan struct{}, exports),
		clock:       clock, applyLock: d.migrateLock, backupTo: d.backupTo,
	}
	if db.writer, err = openPool(d.writer, 1, log); err != nil {
		return nil, fmt.Errorf("open database writer: %w", err)
	}
	fail := func(what string, err error) (*DB, error) {
		return nil, errors.Join(fmt.Errorf("%s: %w", what, err), db.inserts.close(), closePool(db.writer))
	}
	if d.check != nil {
		if err := d.check(ctx, db.writer, log); err != nil {
			return fail("check database", err)
		}
	}
	if err := migrate(ctx, db.writer, d); err != nil {
		return fail("migrate database", err)
	}
	if db.inserts, err = newWriterStmts(ctx, db.writer, d.dollars); err != nil {
		return fail("prepare the writer's inserts", err)
	}
	state, err := readJournalState(ctx, db.writer)
	if err != nil {
		return fail("read the journal state", err)
	}
	if state.Restoring != "" && r == nil {
		return fail("open database", restoreUnfinished(state.Restoring))
	}
	if db.ring, err = openRing(ctx, db.writer, o, log); err != nil {
		return fail("open key ring", err)
	}
	if err := db.checkMasterKeys(ctx); err != nil {
		return fail("check key ring", err)
	}
	if err := db.encryptPlaintext(ctx, d); err != nil {
		return fail("encrypt plaintext messages", err)
	}
	if db.reader, err = openPool(d.reader, readers, log); err != nil {
		return fail("open database readers", err)
	}
	if db.exporter, err = openPool(d.exporter, exports, log); err != nil {
		return nil, errors.Join(fmt.Errorf("open database export readers: %w", err), db.inserts.close(), closePool(db.reader), closePool(db.writer))
	}
	if db.owner, err = prepare(ctx, db.reader, ownerQuery); err != nil {
		return nil, errors.Join(fmt.Errorf("prepare the owner look-up: %w", err), db.Close())
	}
	if d.scrubAfterDelete != nil {
		db.scrubs = startScrubber(func(ctx context.Context) error { return d.scrubAfterDelete(ctx, db.writer) }, log)
	}
	if err := db.followJournal(ctx, o, state, r); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := db.Ping(ctx); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

// newDialect returns the dialect of the database o names.
func newDialect(o Options) (dialect, error) {
	switch o.Driver {
	case "sqlite":
		return newSQLite(o.DSN)
	case "postgres":
		return newPostgres(o.DSN)
	}
	return dialect{}, fmt.Errorf("unknown database driver %q", o.Driver)
}

// openPool opens a GORM handle on a pool of at most n connections.
func openPool(d gorm.Dialector, n int, log *slog.Logger) (*gorm.DB, error) {
	g, err := gorm.Open(d, &gorm.Config{
		Logger: gormLogger{log},
		// Each write that takes more than one statement runs in a
		// transaction of our own; a single statement is atomic by itself.
		SkipDefaultTransaction: true,
		// Statements are prepared once per connection and reused: the hot
		// reads (owner look-up, first pages) are the same SQL every time.
		PrepareStmt:        true,
		PrepareStmtMaxSize: 256,
	})
	if err != nil {
		return nil, err
	}
	pool, err := g.DB()
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(n)
	pool.SetMaxIdleConns(n)
	return g, nil
}

func closePool(g *gorm.DB) error {
	pool, err := g.DB()
	if err != nil {
		return err
	}
	return pool.Close()
}

// Close stops the background scrub and closes every connection, the writer
// last, and the deletion journal.
func (db *DB) Close() error {
	db.scrubs.stop()
	var err error
	if db.owner != nil {
		err = db.owner.Close()
	}
	err = errors.Join(err, db.inserts.close(), closePool(db.exporter), closePool(db.reader), closePool(db.writer))
	if db.journal != nil {
		err = errors.Join(err, db.journal.Close())
	}
	return err
}

// prepare prepares query on pool's connections (database/sql prepares it
// again on each connection that runs it).
func prepare(ctx context.Context, pool *gorm.DB, query string) (*sql.Stmt, error) {
	p, err := pool.DB()
	if err != nil {
		return nil, err
	}
	return p.PrepareContext(ctx, query)
}

// queryContext is the context a query runs under: ctx where the dialect
// interrupts queries, otherwise ctx without its cancellation, since the
// SQLite driver runs a query under a cancellable context in a goroutine of
// its own, which costs more than the short queries it would interrupt.
func (db *DB) queryContext(ctx context.Context) context.Context {
	if db.interruptQueries {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// Ping checks that the database answers a query on a read connection.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.reader.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error; err != nil {
		return unavailable(ctx, "ping database", err)
	}
	return nil
}

// probeBytes is what ProbeWrite stores: a dialogue of a few long messages,
// in pages that a database at its size limit or on a full disk has no room
// for. Random, so that no engine compresses it away.
const probeBytes = 64 << 10

// ProbeWrite checks that the database commits a write as a consent does:
// on the writer connection, in one transaction committed durably, it stores
// probeBytes and deletes them again. It fails when the database refuses
// writes (read-only, out of space, its size limit reached) and leaves the
// stored data as it was.
func (db *DB) ProbeWrite(ctx context.Context) error {
	row := probeRow{Payload: make([]byte, probeBytes)}
	rand.Read(row.Payload)
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		return tx.Exec("DELETE FROM write_probes WHERE id = ?", row.ID).Error
	})
	if err != nil {
		return unavailable(ctx, "probe a database write", err)
	}
	return nil
}

// unavailable wraps a database error as model.ErrUnavailable for op, keeping
// the context's error detectable when ctx has ended.
func unavailable(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	return fmt.Errorf("%s: %w: %w", op, model.ErrUnavailable, err)
}

// gormLogger hands GORM's statement traces to slog at debug level: timing and
// row counts only. GORM interpolates parameters into the statements it
// traces, and parameters hold message text and identifiers, so no statement
// is ever logged.
type gormLogger struct{ log *slog.Logger }

func (l gormLogger) LogMode(logger.LogLevel) logger.Interface { return l }

// Info, Warn and Error log GORM's own format string only: its arguments may
// hold values.
func (l gormLogger) Info(ctx context.Context, msg string, _ ...any) {
	l.log.DebugContext(ctx, "gorm: "+msg)
}

func (l gormLogger) Warn(ctx context.Context, msg string, _ ...any) {
	l.log.DebugContext(ctx, "gorm: "+msg)
}

func (l gormLogger) Error(ctx context.Context, msg string, _ ...any) {
	l.log.DebugContext(ctx, "gorm: "+msg)
}

func (l gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if !l.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	_, rows := fc()
	l.log.DebugContext(ctx, "sql", "rows", rows, "duration", time.Since(begin), "failed", err != nil)
}
