package pending

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/testserver"
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

// BenchmarkRedisAppend measures messages appended to the Redis store by 64
// concurrent callers, as 64 connections to the service make them: what
// rueidis's pipelining of the scripts buys. Run with
// DATA_API_TEST_REDIS_URL set.
func BenchmarkRedisAppend(b *testing.B) {
	d := config.Default().Dialogues
	r, err := OpenRedis(b.Context(), RedisOptions{
		Limits: Limits{TTL: d.TTL, MaxDialogues: d.MaxPending, MaxMessages: d.MaxMessages, MaxBytes: d.MaxBytes},
		URL:    testserver.Redis(b), Prefix: "bench:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":", TakeTimeout: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var next atomic.Int64
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			id := "d" + strconv.FormatInt(n/20, 10)
			m := model.Message{CustomerID: "c", DialogueID: id, Language: "en", Text: "Hello, I ordered a blue jacket last week and it still has not arrived. Help?", CreatedAt: time.Now()}
			if _, err := r.Start(b.Context(), m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
