package repository

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/data-api/data-api/internal/testserver"
	"github.com/data-api/data-api/model"
)

// The PostgreSQL tests run on the server that testserver.Postgres names,
// each in a schema of its own that is dropped when the test ends.

// withParam returns dsn, a URL or key=value string, with parameter k set to v.
func withParam(t testing.TB, dsn, k, v string) string {
	t.Helper()
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " " + k + "=" + v
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s: %v", testserver.PostgresEnv, err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// postgresSchema creates an empty schema for t and returns its name and a
// DSN whose connections use it. The schema is dropped when t ends.
func postgresSchema(t testing.TB) (name, dsn string) {
	t.Helper()
	base := testserver.Postgres(t)
	name = "test_" + strings.ToLower(rand.Text()[:16])
	admin(t, base, "CREATE SCHEMA "+name)
	t.Cleanup(func() { admin(t, base, "DROP SCHEMA "+name+" CASCADE") })
	return name, withParam(t, base, "search_path", name)
}

// admin runs statements on a connection of its own to the server of dsn.
func admin(t testing.TB, dsn string, statements ...string) {
	t.Helper()
	ctx := context.Background() // also used in cleanups, after t.Context ends
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", testserver.PostgresEnv, err)
	}
	defer conn.Close(ctx)
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func openPostgresAt(t testing.TB, dsn string) *DB {
	t.Helper()
	return openAt(t, "postgres", dsn)
}

// openPostgres opens a fresh PostgreSQL database: an empty schema.
func openPostgres(t testing.TB) *DB {
	t.Helper()
	_, dsn := postgresSchema(t)
	return openPostgresAt(t, dsn)
}

func TestPostgres(t *testing.T) {
	testserver.Postgres(t)
	runSuite(t, func(t *testing.T) *DB { return openPostgres(t) })
}

// TestPostgresSessions checks the settings of the writer's and readers'
// connections, even when the DSN asks for asynchronous commits.
func TestPostgresSessions(t *testing.T) {
	_, dsn := postgresSchema(t)
	db := openPostgresAt(t, withParam(t, dsn, "synchronous_commit", "off"))
	for _, tc := range []struct {
		name  string
		pool  func() (*sql.DB, error)
		conns int
		want  map[string]string
	}{
		{"writer", db.writer.DB, 1, map[string]string{"synchronous_commit": "on", "default_transaction_read_only": "off"}},
		{"reader", db.reader.DB, 2, map[string]string{"synchronous_commit": "on", "default_transaction_read_only": "on"}},
		{"exporter", db.exporter.DB, 2, map[string]string{"synchronous_commit": "on", "default_transaction_read_only": "on"}},
	} {
		pool, err := tc.pool()
		if err != nil {
			t.Fatal(err)
		}
		if got := pool.Stats().MaxOpenConnections; tc.name == "writer" && got != 1 {
			t.Errorf("writer pool: got %d connections at most, want 1", got)
		}
		// Hold several connections at once so that each is a distinct one.
		var conns []*sql.Conn
		for range tc.conns {
			conn, err := pool.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conns = append(conns, conn)
		}
		for i, conn := range conns {
			for setting, want := range tc.want {
				var got string
				if err := conn.QueryRowContext(t.Context(), "SHOW "+setting).Scan(&got); err != nil {
					t.Fatalf("%s %d: SHOW %s: %v", tc.name, i, setting, err)
				}
				if got != want {
					t.Errorf("%s %d: %s = %s, want %s", tc.name, i, setting, got, want)
				}
			}
		}
	}
	if err := db.reader.Exec("DELETE FROM sealed_messages").Error; err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("DELETE on a reader: got %v, want a read-only transaction error", err)
	}
}

func TestPostgresQueryPlans(t *testing.T) {
	db := openPostgres(t)
	// Enough rows that the planner weighs its options as in production: a
	// customer c1 with many messages (a quarter of them) among many with
	// few, in two languages.
	const dialogues, perDialogue = 120, 500
	var cs []model.Consent
	for d := range dialogues {
		customer := fmt.Sprint("c", 100+d)
		if d%4 == 0 {
			customer = "c1"
		}
		var msgs []model.Message
		for i := range perDialogue {
			n := d*perDialogue + i
			msgs = append(msgs, msg(customer, fmt.Sprint("d", d), []string{"en", "de"}[n%2], "text", int64(n)))
		}
		cs = append(cs, consent(msgs...))
	}
	save(t, db, cs...)
	// And a ledger of many dialogues.
	if err := db.writer.Exec("INSERT INTO consents (dialogue_id, customer_id, consent, decided_at, messages, key_name)" +
		" SELECT 'x' || i, 'c1', true, i, 1, '' FROM generate_series(1, 20000) AS i").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.writer.Exec("ANALYZE").Error; err != nil {
		t.Fatal(err)
	}

	middle := dialogues * perDialogue / 2
	after := &model.Position{CreatedAt: t0.Add(time.Duration(middle)), ID: int64(middle)}
	type query struct {
		name string
		sql  string
		args []any
	}
	var queries []query
	// The time bounds hold three quarters of the rows, as an analyst's
	// "since last month" does: a bound that leaves a few rows is answered
	// just as well by a sort of those few.
	since, until := t0.Add(time.Duration(dialogues*perDialogue/8)), t0.Add(time.Duration(dialogues*perDialogue*7/8))
	for _, f := range filterCombinations("en", "c1", "d40", since, until) {
		for _, a := range []*model.Position{nil, after} {
			for _, limit := range []int{100, exportPage} {
				sql, args := selectMessages(f, a, limit)
				queries = append(queries, query{fmt.Sprintf("%s %v [limit %d]", sql, args, limit), sql, args})
			}
		}
	}
	queries = append(queries,
		query{"retention", "SELECT id FROM sealed_messages WHERE created_at < ? ORDER BY created_at, id LIMIT ?", []any{t0.Add(100).UnixNano(), 1000}},
		query{"withdrawal", "SELECT id FROM sealed_messages WHERE dialogue_id = ?", []any{"d1"}},
		query{"erasure", "SELECT id FROM sealed_messages WHERE customer_id = ?", []any{"c101"}},
		query{"latest decision", "SELECT id FROM consents WHERE dialogue_id = ? ORDER BY id DESC LIMIT 1", []any{"d1"}},
	)
	for _, q := range queries {
		var lines []string
		if err := db.reader.Raw("EXPLAIN "+q.sql, q.args...).Scan(&lines).Error; err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(q.sql, "dialogue_id = ?") && strings.HasPrefix(q.sql, "SELECT id, customer_id") {
			// A dialogue's rows are few (500 here): the planner may sort
			// them rather than walk its index backwards, at no cost that
			// grows with the table.
			if !strings.Contains(plan, "messages_dialogue_created_id") {
				t.Errorf("%s:\n got plan\n%s\nwant the dialogue's index", q.name, plan)
			}
			continue
		}
		if !strings.Contains(plan, "Index") || strings.Contains(plan, "Sort") {
			t.Errorf("%s:\n got plan\n%s\nwant an index and no sort", q.name, plan)
		}
	}
}

// TestPostgresErasureVacuums checks that an erasure vacuums the messages
// table, and reports a VACUUM that skips it as not scrubbed.
func TestPostgresErasureVacuums(t *testing.T) {
	schema, dsn := postgresSchema(t)
	db := openPostgresAt(t, dsn)
	save(t, db, consent(msg("c1", "d1", "en", "erase me", 1)), consent(msg("c2", "d2", "en", "other", 2)))
	vacuums := func() int {
		return count(t, db, "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = ? AND relname = 'sealed_messages'", schema)
	}
	before := vacuums()
	if n, err := db.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c1", ErasedAt: t0}); n != 1 || err != nil {
		t.Fatalf("EraseCustomer: got %d, %v; want 1, nil", n, err)
	}
	if got := vacuums(); got != before+1 {
		t.Errorf("messages vacuumed %d times by the erasure, want once", got-before)
	}

	// A role that may delete but does not own the table.
	var super bool
	if err := db.reader.Raw("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super).Error; err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Skip("the test server's user is not a superuser: cannot create a role to test a skipped VACUUM")
	}
	role := schema + "_user"
	base := testserver.Postgres(t)
	admin(t, base, "CREATE ROLE "+role+" LOGIN",
		"GRANT USAGE ON SCHEMA "+schema+" TO "+role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+schema+" TO "+role,
		"GRANT USAGE ON ALL SEQUENCES IN SCHEMA "+schema+" TO "+role)
	t.Cleanup(func() { admin(t, base, "DROP OWNED BY "+role, "DROP ROLE "+role) })
	other := openPostgresAt(t, withParam(t, dsn, "user", role))
	n, err := other.EraseCustomer(t.Context(), model.Erasure{CustomerID: "c2", ErasedAt: t0})
	if n != 1 || !errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), "not yet scrubbed") {
		t.Errorf("EraseCustomer by a role that cannot vacuum: got %d, %v; want 1 and a scrub error", n, err)
	}
}

func TestPostgresReopen(t *testing.T) {
	_, dsn := postgresSchema(t)
	db := openPostgresAt(t, dsn)
	save(t, db, consent(msg("c1", "d1", "en", "kept", 1)))
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	db = openPostgresAt(t, dsn)
	if got := texts(all(t, db, model.Filter{})); len(got) != 1 || got[0] != "kept" {
		t.Errorf("after reopening got %q, want [kept]", got)
	}
}

func TestPostgresBadDSN(t *testing.T) {
	for _, dsn := range []string{"", " ", "postgres://user:hunter2@[::1/db"} {
		_, err := Open(t.Context(), Options{Driver: "postgres", DSN: dsn})
		if err == nil {
			t.Errorf("Open(%q) succeeded, want an error", dsn)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q): the error %q holds the password", dsn, err)
		}
	}
}

// TestPostgresConcurrentOpen checks that processes starting together on an
// empty database all migrate it.
func TestPostgresConcurrentOpen(t *testing.T) {
	for range 3 {
		_, dsn := postgresSchema(t)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				db, err := Open(t.Context(), Options{Driver: "postgres", DSN: dsn, MasterKeys: []MasterKey{testKey}, ActiveKey: testKey.ID})
				if err == nil {
					err = db.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}

// TestPostgresQueryHonoursContext checks that a read waiting on the server
// gives up when its context ends, and that the pool recovers.
func TestPostgresQueryHonoursContext(t *testing.T) {
	_, dsn := postgresSchema(t)
	db := openPostgresAt(t, dsn)
	save(t, db, consent(msg("c1", "d1", "en", "a", 1)))

	// Another session holds a lock that stops every read of messages.
	locker, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	tx, err := locker.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "LOCK TABLE sealed_messages IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(context.Context) error{
		"Messages": func(ctx context.Context) error {
			_, err := db.Messages(ctx, model.Filter{}, nil, 1)
			return err
		},
		"Export": func(ctx context.Context) error {
			return db.Export(ctx, model.Filter{}, func(model.StoredMessage) error { return nil })
		},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		start := time.Now()
		err := read(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, model.ErrUnavailable) || time.Since(start) > 5*time.Second {
			t.Errorf("%s behind a lock: got %v after %v, want context.DeadlineExceeded and ErrUnavailable at once", name, err, time.Since(start))
		}
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := texts(all(t, db, model.Filter{})); len(got) != 1 {
		t.Errorf("after the lock got %q, want one message", got)
	}
}
