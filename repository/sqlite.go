package repository

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// sqlitePragmas are set on every SQLite connection: WAL with
// synchronous=FULL so that a commit is on stable storage when it returns
// (the driver lowers WAL to NORMAL unless told), waiting up to 5 s for a
// lock rather than failing, and zeroing deleted content so that erased text
// does not linger in free pages.
var sqlitePragmas = fmt.Sprintf("_journal_mode=WAL&_synchronous=FULL&_busy_timeout=%d&_secure_delete=on", sqliteBusyTimeout)

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
		writer:           sqlite.Open(uri + "&_txlock=immediate"),
		reader:           sqlite.Open(uri + "&_query_only=true"),
		scrub:            checkpointSQLite,
		scrubAfterDelete: checkpointSQLiteBriefly,
		// The primary key is the table: a key look-up is one B-tree
		// descent, and a new key writes one page fewer.
		keyTableOptions:  " WITHOUT ROWID",
		keysWhileReading: true,
		keysQuery:        "SELECT dialogue_id, customer_id, wrapped FROM dialogue_keys WHERE dialogue_id IN (SELECT value FROM json_each(?))",
	}, nil
}

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
