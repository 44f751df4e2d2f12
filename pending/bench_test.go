package pending

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
)

// BenchmarkDropCustomer measures what an erasure costs the memory store when
// it is full: the walk over every shard that finds the customer's pending
// dialogues. Each shard is locked only for its own part of the walk, which is
// the longest an ingestion can wait behind an erasure.
func BenchmarkDropCustomer(b *testing.B) {
	const dialogues = 100_000
	d := config.Default().Dialogues
	s, err := NewMemory(MemoryOptions{
		Limits: Limits{TTL: d.TTL, MaxDialogues: dialogues, MaxMessages: d.MaxMessages, MaxBytes: d.MaxBytes},
		Shards: d.Shards,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range dialogues {
		m := model.Message{CustomerID: "c" + strconv.Itoa(i%1000), DialogueID: "d" + strconv.Itoa(i), Language: "en", Text: "Hello, I ordered a blue jacket last week and it still has not arrived. Help?", CreatedAt: time.Now()}
		if _, err := s.Start(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, _, err := s.DropCustomer(ctx, "nobody"); err != nil {
			b.Fatal(err)
		}
	}
	perShard := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(s.shards))
	b.ReportMetric(perShard/1e3, "µs-per-shard-lock")
	b.ReportMetric(dialogues, "pending-dialogues")
}
