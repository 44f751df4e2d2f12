package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// postgresParams are set on every PostgreSQL connection. Sent in the startup
// packet, they override the DSN and the role's and database's settings:
// synchronous_commit=on so that a commit is flushed to stable storage (and,
// with synchronous standbys, to them) before it returns.
var postgresParams = map[string]string{"synchronous_commit": "on"}

// postgresReaderParams are set on the readers' connections as well, so that
// a reader cannot write, as SQLite's query_only does.
var postgresReaderParams = map[string]string{"default_transaction_read_only": "on"}

// newPostgres returns the dialect of the PostgreSQL database that dsn, a
// libpq URL or key=value string, names. The writer and the readers connect
// with the same DSN; the writer's pool holds one connection like SQLite's,
// so that writes stay serialised in the order they were made.
func newPostgres(dsn string) (dialect, error) {
	if strings.TrimSpace(dsn) == "" {
		return dialect{}, errors.New("postgres needs a libpq URL or key=value string as its DSN")
	}
	// Parsed here to fail early on a bad DSN (pgx leaves the password out
	// of its error) and for the scrub's own connection.
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return dialect{}, err
	}
	maps.Copy(cfg.RuntimeParams, postgresParams)
	readerParams := maps.Clone(postgresParams)
	maps.Copy(readerParams, postgresReaderParams)
	return dialect{
		writer:           postgresDialector(dsn, postgresParams),
		reader:           postgresDialector(dsn, readerParams),
		exporter:         postgresDialector(dsn, readerParams),
		check:            checkPostgres,
		migrateLock:      postgresMigrateLock,
		syncSequence:     "SELECT setval(pg_get_serial_sequence('sealed_messages', 'id'), (SELECT max(id) FROM sealed_messages))",
		scrub:            vacuumMessages(cfg),
		interruptQueries: true,
		dollars:          true,
		keysQuery:        "SELECT dialogue_id, customer_id, wrapped FROM dialogue_keys WHERE dialogue_id IN (SELECT jsonb_array_elements_text($1::jsonb))",
	}, nil
}

// postgresMigrateLock takes a lock held until the migration's transaction
// ends: PostgreSQL's DDL is transactional, so the next process to migrate
// finds the tables made. The key is a constant of this package's own.
const postgresMigrateLock = "SELECT pg_advisory_xact_lock(7460119203861147205)"

// postgresDialector returns a GORM dialector whose connections, opened with
// pgx from dsn, carry the run-time parameters params.
func postgresDialector(dsn string, params map[string]string) gorm.Dialector {
	return postgres.New(postgres.Config{
		DSN: dsn,
		OptionOpenDB: []stdlib.OptionOpenDB{stdlib.OptionBeforeConnect(func(_ context.Context, c *pgx.ConnConfig) error {
			// c is a shallow copy of the pool's configuration: its map is
			// shared with every other connection.
			c.RuntimeParams = maps.Clone(c.RuntimeParams)
			maps.Copy(c.RuntimeParams, params)
			return nil
		})},
	})
}

// checkPostgres warns when the server cannot keep a commit durable whatever
// the session asks.
func checkPostgres(ctx context.Context, writer *gorm.DB, log *slog.Logger) error {
	var fsync string
	if err := writer.WithContext(ctx).Raw("SHOW fsync").Row().Scan(&fsync); err != nil {
		return err
	}
	if fsync != "on" {
		log.WarnContext(ctx, "PostgreSQL runs with fsync=off: a committed consent can be lost in a crash of the server's machine")
	}
	return nil
}

// vacuumMessages returns the PostgreSQL scrub: VACUUM of sealed_messages
// and dialogue_keys (and their TOAST tables), so that the tuples an erasure
// deleted are pruned from the heap pages at once rather than kept as dead
// tuples until autovacuum gets to them. VACUUM cannot run in a transaction;
// it runs on a connection of its own so that writes do not wait for it.
// The guarantee is weaker than SQLite's secure_delete and checkpoint, which
// is why the texts are encrypted and what master key rotation is for:
//   - VACUUM frees the space of the pruned tuples but does not zero it: the
//     sealed texts and wrapped keys stay in the tables' files until later
//     rows overwrite them (measured before encryption: 54 to 97 of 100
//     erased texts still in the heap file after VACUUM and a checkpoint).
//     VACUUM FULL rewrites a table and leaves none, but holds an ACCESS
//     EXCLUSIVE lock, which stops every read and write of the table, while
//     it copies the whole table.
//   - It cannot prune a tuple that a transaction older than the erasure may
//     still see: a long query, a session idle in a transaction, a
//     replication slot or a standby's feedback holding back the xmin
//     horizon. Such tuples wait for a later VACUUM or autovacuum.
//   - The pruned pages reach the files at the next checkpoint.
//   - The write-ahead log still holds the rows, in the records that
//     inserted them, until its segments are recycled; a WAL archive, a
//     standby or a base backup keeps its own copy for as long as it lives.
func vacuumMessages(cfg *pgx.ConnConfig) func(ctx context.Context, _ *gorm.DB) error {
	return func(ctx context.Context, _ *gorm.DB) error {
		c := cfg.Copy()
		// VACUUM warns rather than fails when it skips a table, for lack of
		// ownership for instance; a skipped table is not scrubbed.
		var warnings []string
		c.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if n.Severity == "WARNING" {
				warnings = append(warnings, n.Message)
			}
		}
		conn, err := pgx.ConnectConfig(ctx, c)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "VACUUM sealed_messages, dialogue_keys")
		err = errors.Join(err, conn.Close(ctx))
		if err == nil && len(warnings) > 0 {
			err = fmt.Errorf("VACUUM: %s", strings.Join(warnings, "; "))
		}
		return err
	}
}
