package repository

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
)

// benchRowsEnv sets how many consented rows the query benchmarks run over.
const benchRowsEnv = "DATA_API_BENCH_ROWS"

// Shape of the query benchmark database: rows of 20-message dialogues, each
// dialogue of one customer (of 1000) and one language (of 4), created_at
// increasing by a microsecond with every eighth row tied with the one before.
const (
	benchCustomers   = 1000
	benchPerDialogue = 20
	benchPageSize    = 100
	benchDeepPage    = 10_000
)

var benchLanguages = []string{"en", "de", "fr", "pt-BR"}

// benchRows returns the row count of DATA_API_BENCH_ROWS, 1,000,000 when
// unset.
func benchRows(b *testing.B) int {
	s := os.Getenv(benchRowsEnv)
	if s == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < benchPerDialogue {
		b.Fatalf("%s=%q: want a row count of at least %d", benchRowsEnv, s, benchPerDialogue)
	}
	return n
}

// benchRow returns row i of the benchmark database.
func benchRow(i int) model.Message {
	d := i / benchPerDialogue
	return model.Message{
		CustomerID: fmt.Sprintf("customer-%04d", d%benchCustomers),
		DialogueID: fmt.Sprintf("dialogue-%07d", d),
		Language:   benchLanguages[(d/7)%len(benchLanguages)],
		// 76 bytes, each text its own.
		Text:      fmt.Sprintf("Message %09d: I ordered a blue jacket and it has not arrived yet. Help?", i),
		CreatedAt: t0.Add(time.Duration(i-i/8) * time.Microsecond),
	}
}

// schemaFingerprint returns a short hash of the schema Open creates: its
// tables and indexes with their columns in order. Not the CREATE statements:
// GORM writes a table's CHECK constraints in map order, which changes from
// run to run and would rebuild the database every time.
func schemaFingerprint(b *testing.B) string {
	b.Helper()
	var schema []string
	const q = "SELECT m.type || ' ' || m.name || ' ' || c.name FROM sqlite_master m, pragma_table_info(m.name) c WHERE m.type = 'table'" +
		" UNION ALL SELECT m.type || ' ' || m.name || ' ' || c.seqno || ' ' || coalesce(c.name, '') FROM sqlite_master m, pragma_index_info(m.name) c WHERE m.type = 'index'" +
		" ORDER BY 1"
	if err := openSQLite(b).reader.Raw(q).Scan(&schema).Error; err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte(strings.Join(schema, "\n")))
	return hex.EncodeToString(sum[:4])
}

// openQueryBenchDB opens the database of n consented rows cached under the
// temporary directory, building it first when it is not there. The file is
// named by the row count and a fingerprint of the schema, so that a change
// of schema builds a new one. Building 1M rows takes well under a minute;
// later runs reuse the file.
func openQueryBenchDB(b *testing.B, n int) *DB {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("data-api-bench-%d-%s.db", n, schemaFingerprint(b)))
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		buildQueryBenchDB(b, path, n)
	} else if err != nil {
		b.Fatal(err)
	}
	db := openSQLiteAt(b, path)
	if got := count(b, db, "SELECT COUNT(*) FROM sealed_messages"); got != n {
		b.Fatalf("%s holds %d rows, want %d: delete it to rebuild", path, got, n)
	}
	return db
}

// buildQueryBenchDB writes n rows to a new database at path, through
// SaveConsents in transactions of 1000 rows, and moves it into place only
// when complete, so that an interrupted build is never reused.
func buildQueryBenchDB(b *testing.B, path string, n int) {
	b.Helper()
	start := time.Now()
	tmp := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm", ".key"} {
		if err := os.Remove(tmp + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	db, err := Open(ctx, Options{Driver: "sqlite", DSN: tmp})
	if err != nil {
		b.Fatal(err)
	}
	const batchRows = 1000 // a multiple of benchPerDialogue
	for first := 0; first < n; first += batchRows {
		var cs []model.Consent
		for i := first; i < min(first+batchRows, n); i += benchPerDialogue {
			msgs := make([]model.Message, 0, benchPerDialogue)
			for j := i; j < min(i+benchPerDialogue, n); j++ {
				msgs = append(msgs, benchRow(j))
			}
			cs = append(cs, consent(msgs...))
		}
		if err := db.SaveConsents(ctx, cs); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	// The last connection to close checkpoints and removes the WAL; move
	// whatever is left along with the database, and the key generated
	// beside it.
	for _, suffix := range []string{".key", "-wal", "-shm", ""} {
		if err := os.Rename(tmp+suffix, path+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.Fatal(err)
		}
	}
	b.Logf("built %s: %d rows in %v", path, n, time.Since(start).Round(time.Millisecond))
}

// cpuTime returns the CPU time this process has used so far, in user and
// system mode: on a machine shared with other work, what an operation costs
// shows better there than in the time it takes.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchFilter is one filter combination of the query benchmarks.
type benchFilter struct {
	name string
	f    model.Filter
}

var benchFilters = []benchFilter{
	{"none", model.Filter{}},
	{"language", model.Filter{Language: "de"}},
	{"customer", model.Filter{CustomerID: "customer-0042"}},
	{"both", model.Filter{Language: "fr", CustomerID: "customer-0042"}},
}

// where returns the WHERE clause and arguments of f, as selectMessages makes
// them.
func (bf benchFilter) where() (string, []any) {
	var (
		conds []string
		args  []any
	)
	if bf.f.Language != "" {
		conds = append(conds, "language = ?")
		args = append(args, bf.f.Language)
	}
	if bf.f.CustomerID != "" {
		conds = append(conds, "customer_id = ?")
		args = append(args, bf.f.CustomerID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// benchIDs returns the ids of ms, in order.
func benchIDs(ms []model.StoredMessage) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// queryPlan returns SQLite's plan of the keyset query of f after pos.
func queryPlan(b *testing.B, db *DB, f model.Filter, pos *model.Position) []string {
	b.Helper()
	sql, args := selectMessages(f, pos, benchPageSize+1)
	rows, err := db.reader.Raw("EXPLAIN QUERY PLAN "+sql, args...).Rows()
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var (
			id, parent, notUsed int
			detail              string
		)
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			b.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return plan
}

// BenchmarkQuery measures reading consented messages at DATA_API_BENCH_ROWS
// rows (1,000,000 by default): the first page and a deep page (page 10,000,
// or the last full page of a filter matching fewer rows) by keyset, for each
// filter combination; the same deep page by OFFSET, unfiltered; and a full
// export, in rows per second.
func BenchmarkQuery(b *testing.B) {
	n := benchRows(b)
	db := openQueryBenchDB(b, n)
	ctx := context.Background()
	// The service asks for one row more than the page to know whether a
	// next page exists.
	const limit = benchPageSize + 1

	for _, bf := range benchFilters {
		where, args := bf.where()
		matching := count(b, db, "SELECT COUNT(*) FROM sealed_messages"+where, args...)
		if matching < 2*benchPageSize {
			b.Logf("filter %s matches %d rows, fewer than two pages: skipped", bf.name, matching)
			continue
		}
		deep := min(benchDeepPage, matching/benchPageSize)

		// The position after which the deep page starts: the last row of
		// the page before it, found once by OFFSET.
		var pos model.Position
		{
			var ns, id int64
			row := db.reader.Raw("SELECT created_at, id FROM sealed_messages"+where+
				" ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?", append(args, (deep-1)*benchPageSize-1)...).Row()
			if err := row.Scan(&ns, &id); err != nil {
				b.Fatal(err)
			}
			pos = model.Position{CreatedAt: fromNanos(ns), ID: id}
		}
		b.Logf("filter %s: %d rows match; deep page %d; plan %q", bf.name, matching, deep, queryPlan(b, db, bf.f, &pos))

		for _, page := range []struct {
			n     int
			after *model.Position
		}{{1, nil}, {deep, &pos}} {
			b.Run(fmt.Sprintf("filter=%s/keyset-page=%d", bf.name, page.n), func(b *testing.B) {
				want := min(limit, matching-(page.n-1)*benchPageSize)
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					msgs, err := db.Messages(ctx, bf.f, page.after, limit)
					if err != nil {
						b.Fatal(err)
					}
					if len(msgs) != want {
						b.Fatalf("%d messages, want %d", len(msgs), want)
					}
				}
				b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}

		if bf.name == "none" {
			// The keyset query without its position, skipping rows instead.
			sql, args := selectMessages(model.Filter{}, nil, limit)
			sql += " OFFSET ?"
			args = append(args, (deep-1)*benchPageSize)
			offsetPage := func() []model.StoredMessage {
				page := make([]model.StoredMessage, 0, limit)
				err := db.scan(ctx, db.reader, sql, args, func(m model.StoredMessage) error {
					page = append(page, m)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				return page
			}
			// Both ways reach the same rows.
			keyset, err := db.Messages(ctx, model.Filter{}, &pos, limit)
			if err != nil {
				b.Fatal(err)
			}
			if got, want := benchIDs(offsetPage()), benchIDs(keyset); !slices.Equal(got, want) {
				b.Fatalf("OFFSET page %d holds ids %v, keyset page %v", deep, got, want)
			}
			b.Run(fmt.Sprintf("filter=none/offset-page=%d", deep), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					offsetPage()
				}
			})
		}
	}

	b.Run("export/filter=none", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime()
		for b.Loop() {
			rows := 0
			if err := db.Export(ctx, model.Filter{}, func(model.StoredMessage) error {
				rows++
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if rows != n {
				b.Fatalf("exported %d rows, want %d", rows, n)
			}
		}
		if s := b.Elapsed().Seconds(); s > 0 {
			b.ReportMetric(float64(b.N*n)/s, "rows/s")
		}
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N*n), "cpu-ns/row")
	})
}
