package repository

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
)

// BenchmarkSaveConsents measures durable bulk writes, in messages stored per
// second.
func BenchmarkSaveConsents(b *testing.B) {
	text := strings.Repeat("a typical customer message ", 4)
	for _, bc := range []struct{ consents, messages int }{{1, 1000}, {64, 20}} {
		b.Run(fmt.Sprintf("%dx%d", bc.consents, bc.messages), func(b *testing.B) {
			db := openSQLite(b)
			cs := make([]model.Consent, bc.consents)
			for c := range cs {
				msgs := make([]model.Message, bc.messages)
				for i := range msgs {
					msgs[i] = msg("customer-1", fmt.Sprint("dialogue-", c), "en-US", text, int64(i))
				}
				cs[c] = consent(msgs...)
			}
			for b.Loop() {
				// Later messages, as in production, so that the indexes grow
				// at their newest end.
				for c := range cs {
					for i := range cs[c].Messages {
						cs[c].Messages[i].CreatedAt = cs[c].Messages[i].CreatedAt.Add(time.Hour)
					}
				}
				save(b, db, cs...)
			}
			b.ReportMetric(float64(b.N*bc.consents*bc.messages)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
