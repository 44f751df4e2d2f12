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
