package repository

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// sqlitePragmas are set on every SQLite connection: WAL with
// synchronous=FULL so that a commit is on stable storage when it returns
// (the driver lowers WAL to NORMAL unless told), waiting up to 5 s for a
// lock rather than failing, and zeroing deleted content so that erased text
// does not linger in free pages.
var sqlitePragmas = fmt.Sprintf("_journal_mode=WAL&_synchronous=FULL&_busy_timeout=%d&_secure_delete=on", sqliteBusyTimeout)

// sqliteJournalSizeLimit bounds the write-ahead log that a connection
// leaves behind a checkpoint, in bytes: SQLite otherwise keeps the log at
// its high-water mark for good, however briefly one large transaction (a
// big dialogue, an erasure, a group commit) needed it. It is about the log
// of one checkpoint interval (wal_autocheckpoint, 1000 pages of 4 KiB), so
// that a log of the usual size is reused in place rather than cut and grown
// again. What it means for the free space to keep: README, "Disk space".
const sqliteJournalSizeLimit = 4 << 20

// sqliteConnPragmas are run on every new SQLite connection, for the
// settings that the driver's DSN cannot carry.
var sqliteConnPragmas = []string{fmt.Sprintf("PRAGMA journal_size_limit = %d", sqliteJournalSizeLimit)}

// uriEscaper escapes the characters a file path cannot hold in an SQLite URI.
var uriEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// newSQLite returns the dialect of the SQLite database in the file at path,
// creating its directory and the file, readable by its owner only (SQLite
// gives the -wal and -shm files the same permissions).
func newSQLite(path string) (dialect, error) {
	if path == "" {
		return dialect{}, errors.New("sqlite needs the database file path as its DSN")
	}
	path = filepath.Clean(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return dialect{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return dialect{}, err
	}
	if err := f.Close(); err != nil {
		return dialect{}, err
	}
	uri := "file:" + uriEscaper.Replace(path) + "?" + sqlitePragmas
	return dialect{
		// BEGIN IMMEDIATE takes the write lock up front, so that a
		// transaction never fails half-way on a lock upgrade.
		writer:           sqliteDialector(uri + "&_txlock=immediate"),
		reader:           sqliteDialector(uri + "&_query_only=true"),
		exporter:         sqliteDialector(uri + "&_query_only=true"),
		scrub:            checkpointSQLite,
		scrubAfterDelete: checkpointSQLiteBriefly,
		backupTo:         backupSQLite,
		// The primary key is the table: a key look-up is one B-tree
		// descent, and a new key writes one page fewer.
		keyTableOptions: " WITHOUT ROWID",
		keysQuery:       "SELECT dialogue_id, customer_id, wrapped FROM dialogue_keys WHERE dialogue_id IN (SELECT value FROM json_each(?))",
	}, nil
}

// sqliteDialector returns a GORM dialector whose connections, opened from
// uri, run sqliteConnPragmas first.
func sqliteDialector(uri string) gorm.Dialector {
	d := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range sqliteConnPragmas {
			if _, err := c.Exec(p, nil); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	}}
	return sqlite.New(sqlite.Config{Conn: sql.OpenDB(sqliteConnector{uri, d})})
}

// sqliteConnector opens connections to one database with one driver.
type sqliteConnector struct {
	uri string
	d   *sqlite3.SQLiteDriver
}

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.uri) }

func (c sqliteConnector) Driver() driver.Driver { return c.d }

// sqliteBusyTimeout is the busy_timeout of every connection, in ms (see
// sqlitePragmas); checkpointBusyTimeout, that of a background checkpoint.
const (
	sqliteBusyTimeout     = 5000
	checkpointBusyTimeout = 100
)

// checkpointSQLiteBriefly is checkpointSQLite waiting at most
// checkpointBusyTimeout for readers on an old snapshot rather than the
// usual 5 s: it holds the one writer connection meanwhile, and writes wait
// for it. Run in the background after withdrawals and purges, it is retried
// later when it cannot complete.
func checkpointSQLiteBriefly(ctx context.Context, writer *gorm.DB) error {
	return writer.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		if err := conn.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", checkpointBusyTimeout)).Error; err != nil {
			return err
		}
		err := checkpointSQLite(ctx, conn)
		return errors.Join(err, conn.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", sqliteBusyTimeout)).Error)
	})
}

// backupSQLite copies the database into the empty file at path with
// SQLite's online backup, from a read connection: every page in one step,
// that is within one read transaction, so that the copy is a snapshot of
// one moment and writes of other connections meanwhile, which go on, do
// not restart it (as they restart a backup made in several steps).
func backupSQLite(ctx context.Context, reader *gorm.DB, path string) error {
	pool, err := reader.DB()
	if err != nil {
		return err
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(c any) error {
		src, ok := c.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("a read connection is a %T, not a SQLite connection", c)
		}
		d, err := (&sqlite3.SQLiteDriver{}).Open("file:" + uriEscaper.Replace(path) + "?_synchronous=FULL")
		if err != nil {
			return err
		}
		dst := d.(*sqlite3.SQLiteConn)
		b, err := dst.Backup("main", src, "main")
		if err != nil {
			return errors.Join(err, dst.Close())
		}
		done, err := b.Step(-1)
		if err == nil && !done {
			err = errors.New("the backup step did not copy every page")
		}
		return errors.Join(err, b.Finish(), dst.Close())
	})
}

// checkpointSQLite copies the write-ahead log into the database file and
// truncates it, so that the page images holding deleted rows are gone.
func checkpointSQLite(ctx context.Context, writer *gorm.DB) error {
	var busy, logged, done int
	if err := writer.WithContext(ctx).Raw("PRAGMA wal_checkpoint(TRUNCATE)").Row().Scan(&busy, &logged, &done); err != nil {
		return err
	}
	if busy != 0 {
		return fmt.Errorf("wal checkpoint: blocked by a reader (%d of %d pages copied)", done, logged)
	}
	return nil
}
