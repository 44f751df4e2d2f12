package service_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

// benchText is a typical message: 76 bytes.
const benchText = "Hello, I ordered a blue jacket last week and it still has not arrived. Help?"

// benchPerDialogue is how many messages a benchmark dialogue receives before
// its decision.
const benchPerDialogue = 20

// benchDialogues returns the service built from the default configuration,
// as cmd/data-api builds it, over a fresh SQLite file and the real clock;
// change, when set, adjusts the configuration. An ingestion meets the
// database only when it starts a dialogue, to look up its owner.
func benchDialogues(b *testing.B, change func(*config.Config)) *service.Dialogues {
	b.Helper()
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(b.TempDir(), "data.db")
	if change != nil {
		change(&cfg)
	}
	a, err := app.New(b.Context(), cfg, app.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a.Service
}

// startOver drops every pending dialogue of customer through an erasure,
// which deletes nothing stored, so that an ingest benchmark can reuse its
// dialogues without growing the store. It walks the whole store once.
func startOver(b *testing.B, d *service.Dialogues, customer string) {
	if _, err := d.Erase(context.Background(), customer, ""); err != nil {
		b.Error(err)
	}
}

// benchCustomers are the customers benchmark dialogues belong to.
var benchCustomers = func() []string {
	cs := make([]string, 1000)
	for i := range cs {
		cs[i] = fmt.Sprintf("customer-%04d", i)
	}
	return cs
}()

// reportRate reports how many units per second the benchmark achieved, at
// perOp units per iteration.
// cpuTime returns the CPU time this process has used so far, in user and
// system mode: on a machine shared with other work, what an operation costs
// shows better there than in the time it takes.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportRate(b *testing.B, perOp float64, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)*perOp/s, unit)
	}
}

// BenchmarkIngest measures Dialogues.Ingest into the pending store, in
// messages per second.
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()

	// One dialogue filled to max_messages, then started over.
	b.Run("single-dialogue", func(b *testing.B) {
		d := benchDialogues(b, nil)
		m := model.Message{CustomerID: "customer-0001", DialogueID: "dialogue-1", Language: "en", Text: benchText}
		maxMessages := config.Default().Dialogues.MaxMessages
		b.ReportAllocs()
		for b.Loop() {
			n, err := d.Ingest(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			if n == maxMessages {
				startOver(b, d, m.CustomerID)
			}
		}
		reportRate(b, 1, "msgs/s")
	})

	// 10,000 dialogues receiving one message each in turn, 20 rounds, then
	// started over as new dialogues: one message in 20 opens a dialogue.
	b.Run("many-dialogues", func(b *testing.B) {
		const dialogues = 10_000
		const customer = "customer-0001"
		d := benchDialogues(b, nil)
		ids := make([]string, dialogues)
		for k := range ids {
			ids[k] = "dialogue-" + strconv.Itoa(k)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m := model.Message{CustomerID: customer, DialogueID: ids[i%dialogues], Language: "en", Text: benchText}
			if _, err := d.Ingest(ctx, m); err != nil {
				b.Fatal(err)
			}
			if i++; i == dialogues*benchPerDialogue {
				startOver(b, d, customer)
				i = 0
			}
		}
		reportRate(b, 1, "msgs/s")
	})

	// Every goroutine a customer of its own with 1,000 dialogues, as in
	// many-dialogues.
	b.Run("parallel", func(b *testing.B) {
		const dialogues = 1000
		d := benchDialogues(b, nil)
		var goroutines atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			g := goroutines.Add(1)
			customer := fmt.Sprintf("customer-g%d", g)
			ids := make([]string, dialogues)
			for k := range ids {
				ids[k] = fmt.Sprintf("g%d-dialogue-%d", g, k)
			}
			i := 0
			for pb.Next() {
				m := model.Message{CustomerID: customer, DialogueID: ids[i%dialogues], Language: "en", Text: benchText}
				if _, err := d.Ingest(ctx, m); err != nil {
					b.Error(err)
					return
				}
				if i++; i == dialogues*benchPerDialogue {
					startOver(b, d, customer)
					i = 0
				}
			}
		})
		reportRate(b, 1, "msgs/s")
	})
}

// heapInUse returns the bytes of live heap objects after a full collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// textAllocBytes returns the bytes the allocator spends on one copy of
// benchText (its size class), which each pending message owns.
func textAllocBytes() float64 {
	const n = 10_000
	keep := make([]string, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = strings.Clone(benchText)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return float64(after.TotalAlloc-before.TotalAlloc) / n
}

// BenchmarkPendingHeap measures the live heap the pending store holds. Every
// text and dialogue id is a fresh allocation made while measuring, as after
// decoding a request, so B/msg counts what a pending message really costs;
// store-B/msg leaves the text itself out.
func BenchmarkPendingHeap(b *testing.B) {
	ctx := context.Background()
	textBytes := textAllocBytes()

	b.Run("dialogues=50000x20", func(b *testing.B) {
		const dialogues = 50_000
		const msgs = dialogues * benchPerDialogue
		var perMsg float64
		for b.Loop() {
			d := benchDialogues(b, func(c *config.Config) { c.Dialogues.MaxPending = dialogues })
			before := heapInUse()
			for k := range dialogues {
				id := "dialogue-" + strconv.Itoa(k)
				for range benchPerDialogue {
					m := model.Message{CustomerID: benchCustomers[k%len(benchCustomers)], DialogueID: id, Language: "en", Text: strings.Clone(benchText)}
					if _, err := d.Ingest(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			}
			heap := heapInUse() - before
			if got := d.Stats().PendingMessages; got != msgs {
				b.Fatalf("pending messages %d, want %d", got, msgs)
			}
			runtime.KeepAlive(d)
			perMsg = float64(heap) / msgs
		}
		b.ReportMetric(perMsg, "B/msg")
		b.ReportMetric(perMsg-textBytes, "store-B/msg")
		b.ReportMetric(perMsg*msgs/1e6, "heap-MB")
	})

	// A flood of new dialogues past max_pending: the store fills to the cap
	// and refuses the rest, and the heap stays where it was when full.
	b.Run("flood=100000/max_pending=10000", func(b *testing.B) {
		const maxPending, attempts = 10_000, 100_000
		var full, flooded int64
		for b.Loop() {
			d := benchDialogues(b, func(c *config.Config) { c.Dialogues.MaxPending = maxPending })
			before := heapInUse()
			accepted, rejected := 0, 0
			for k := range attempts {
				m := model.Message{CustomerID: benchCustomers[k%len(benchCustomers)], DialogueID: "flood-" + strconv.Itoa(k), Language: "en", Text: strings.Clone(benchText)}
				// An if chain, not a switch: inside a b.Loop body, go1.26.8
				// crashes in escape analysis on a switch case that calls an
				// inlinable function such as errors.Is.
				if _, err := d.Ingest(ctx, m); err == nil {
					accepted++
				} else if errors.Is(err, model.ErrFull) {
					rejected++
				} else {
					b.Fatal(err)
				}
				if k+1 == maxPending {
					full = heapInUse() - before
				}
			}
			flooded = heapInUse() - before
			runtime.KeepAlive(d)
			if accepted != maxPending || rejected != attempts-maxPending {
				b.Fatalf("accepted %d, rejected %d; want %d, %d", accepted, rejected, maxPending, attempts-maxPending)
			}
			// The bound: max_pending times what one held dialogue costs,
			// measured when the store had just filled; 1% for runtime noise.
			if bound := full + full/100; flooded > bound {
				b.Fatalf("heap after the flood %d B, beyond the bound %d B", flooded, bound)
			}
		}
		b.ReportMetric(float64(full), "heap-full-B")
		b.ReportMetric(float64(flooded), "heap-flooded-B")
		b.ReportMetric(float64(full)/maxPending, "B/dialogue")
	})
}

// openBenchRepository opens a fresh SQLite repository in the benchmark's
// temporary directory.
func openBenchRepository(b *testing.B) *repository.DB {
	b.Helper()
	db, err := repository.Open(b.Context(), repository.Options{Driver: "sqlite", DSN: filepath.Join(b.TempDir(), "data.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkConsent measures durable consent persistence over the real SQLite
// repository, in stored rows and consents per second, at 1, 8 and 64
// concurrent consents of 20 messages each going through the group commit,
// against the baseline of 1,000-row transactions written straight through
// SaveConsents (bulk=...). Each iteration stores 20,000 rows.
func BenchmarkConsent(b *testing.B) {
	const consents = 1000 // per iteration, of benchPerDialogue messages each
	const rows = consents * benchPerDialogue
	ctx := context.Background()

	for _, conc := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("concurrent=%d", conc), func(b *testing.B) {
			cfg := config.Default()
			cfg.Database.DSN = filepath.Join(b.TempDir(), "data.db")
			a, err := app.New(b.Context(), cfg, app.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			d := a.Service
			ids := make([]string, consents)
			iter := 0
			var cpu time.Duration
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for k := range ids {
					ids[k] = fmt.Sprintf("i%d-dialogue-%d", iter, k)
					for range benchPerDialogue {
						m := model.Message{CustomerID: benchCustomers[k%len(benchCustomers)], DialogueID: ids[k], Language: "en", Text: benchText}
						if _, err := d.Ingest(ctx, m); err != nil {
							b.Fatal(err)
						}
					}
				}
				iter++
				b.StartTimer()
				start := cpuTime()

				var wg sync.WaitGroup
				for g := range conc {
					wg.Go(func() {
						for k := g; k < consents; k += conc {
							out, err := d.Consent(ctx, ids[k], true, "bench")
							if err != nil || out.Stored != benchPerDialogue {
								b.Errorf("Consent(%s): stored %d, err %v", ids[k], out.Stored, err)
								return
							}
						}
					})
				}
				wg.Wait()
				cpu += cpuTime() - start
			}
			reportRate(b, rows, "rows/s")
			reportRate(b, consents, "consents/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*consents), "cpu-us/consent")
			commits, seconds := consentWrites(b, a)
			b.ReportMetric(commits/float64(b.N), "tx/op")
			b.ReportMetric(float64(b.N*consents)/commits, "consents/tx")
			b.ReportMetric(seconds/commits*1e3, "ms/tx")
			// How much of the time a transaction was being written: near
			// 100% means the single writer is the bottleneck.
			b.ReportMetric(100*seconds/b.Elapsed().Seconds(), "writer-busy-%")
		})
	}

	// The ceiling: transactions of 1,000 rows straight into the repository,
	// as many rows per iteration as above. 1x1000 is one dialogue of 1,000
	// messages per transaction; 50x20 holds 50 dialogues of 20 messages of
	// as many customers, laid out as the concurrent consents above.
	for _, bc := range []struct{ consents, messages int }{{1, 1000}, {50, 20}} {
		b.Run(fmt.Sprintf("bulk=%dx%d", bc.consents, bc.messages), func(b *testing.B) {
			db := openBenchRepository(b)
			at := time.Now()
			txs := make([][]model.Consent, rows/(bc.consents*bc.messages))
			dialogue := 0
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for t := range txs {
					txs[t] = make([]model.Consent, bc.consents)
					for c := range txs[t] {
						id := "bulk-dialogue-" + strconv.Itoa(dialogue)
						customer := benchCustomers[dialogue%len(benchCustomers)]
						dialogue++
						msgs := make([]model.Message, bc.messages)
						for i := range msgs {
							at = at.Add(time.Microsecond)
							msgs[i] = model.Message{CustomerID: customer, DialogueID: id, Language: "en", Text: benchText, CreatedAt: at}
						}
						txs[t][c] = model.Consent{
							Decision: model.Decision{DialogueID: id, CustomerID: customer, Consent: true, DecidedAt: at, Messages: bc.messages, KeyName: "bench"},
							Messages: msgs,
						}
					}
				}
				b.StartTimer()
				for _, cs := range txs {
					if err := db.SaveConsents(ctx, cs); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportRate(b, rows, "rows/s")
			b.ReportMetric(float64(b.Elapsed())/float64(b.N*len(txs))/1e6, "ms/tx")
		})
	}
}

// consentWrites returns how many consent transactions a wrote and the
// seconds they took, from its /metrics.
func consentWrites(b *testing.B, a *app.App) (count, seconds float64) {
	b.Helper()
	w := httptest.NewRecorder()
	a.Handler.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(promodel.UTF8Validation)
	families, err := p.TextToMetricFamilies(w.Body)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range families["data_api_db_write_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "op" && l.GetValue() == "consent" {
				return float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
			}
		}
	}
	b.Fatal("no consent writes in /metrics")
	return 0, 0
}
