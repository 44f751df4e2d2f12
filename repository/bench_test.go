package repository

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/testserver"
	"github.com/data-api/data-api/model"
)

// BenchmarkSaveConsents measures durable bulk writes, in messages stored per
// second.
func BenchmarkSaveConsents(b *testing.B) {
	benchSaveConsents(b, func(b *testing.B) *DB { return openSQLite(b) })
}

// BenchmarkPostgresSaveConsents is BenchmarkSaveConsents on PostgreSQL.
func BenchmarkPostgresSaveConsents(b *testing.B) {
	testserver.Postgres(b)
	benchSaveConsents(b, func(b *testing.B) *DB { return openPostgres(b) })
}

func benchSaveConsents(b *testing.B, open func(*testing.B) *DB) {
	text := strings.Repeat("a typical customer message ", 4)
	for _, bc := range []struct {
		consents, messages int
		keyed              bool
	}{{1, 1000, false}, {64, 20, false}, {64, 20, true}} {
		name := fmt.Sprintf("%dx%d", bc.consents, bc.messages)
		if bc.keyed {
			name += "-keyed"
		}
		b.Run(name, func(b *testing.B) {
			db := open(b)
			cs := make([]model.Consent, bc.consents)
			for c := range cs {
				msgs := make([]model.Message, bc.messages)
				for i := range msgs {
					msgs[i] = msg("customer-1", fmt.Sprint("dialogue-", c), "en-US", text, int64(i))
				}
				cs[c] = consent(msgs...)
			}
			round := 0
			for b.Loop() {
				// Later messages, as in production, so that the indexes grow
				// at their newest end.
				round++
				for c := range cs {
					for i := range cs[c].Messages {
						m := &cs[c].Messages[i]
						m.CreatedAt = m.CreatedAt.Add(time.Hour)
						if bc.keyed {
							m.Key = fmt.Sprintf("%d-dialogue-%d/%d", round, c, i)
						}
					}
				}
				save(b, db, cs...)
			}
			b.ReportMetric(float64(b.N*bc.consents*bc.messages)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkWithdraw measures what the deletion journal adds to a
// withdrawal that deletes a stored dialogue of 10 messages: an entry synced
// to stable storage within the transaction. Each round stores the dialogue
// first; the difference between the two is the journal's.
func BenchmarkWithdraw(b *testing.B) {
	for _, journaled := range []bool{false, true} {
		b.Run(fmt.Sprintf("journal=%v", journaled), func(b *testing.B) {
			dir := b.TempDir()
			o := Options{Driver: "sqlite", DSN: dir + "/data.db", MasterKeys: []MasterKey{testKey}, ActiveKey: testKey.ID}
			if journaled {
				o.JournalDir, o.JournalKeep = dir+"/journal", 24*time.Hour
			}
			db := openWith(b, o)
			text := strings.Repeat("a typical customer message ", 4)
			var stored, withdrawn time.Duration
			round := 0
			for b.Loop() {
				round++
				d := fmt.Sprint("dialogue-", round)
				msgs := make([]model.Message, 10)
				for i := range msgs {
					msgs[i] = msg("customer-1", d, "en", text, int64(i))
				}
				start := time.Now()
				save(b, db, consent(msgs...))
				stored += time.Since(start)
				start = time.Now()
				if _, err := db.Withdraw(b.Context(), model.Decision{DialogueID: d, CustomerID: "customer-1", DecidedAt: t0}); err != nil {
					b.Fatal(err)
				}
				withdrawn += time.Since(start)
			}
			b.ReportMetric(float64(stored.Microseconds())/float64(b.N), "µs/consent")
			b.ReportMetric(float64(withdrawn.Microseconds())/float64(b.N), "µs/withdrawal")
		})
	}
}
