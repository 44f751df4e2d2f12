package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/testserver"
)

// TestRedisFailover runs the service on the primary of a Redis Sentinel
// group and fails the primary over while messages arrive. Redis replicates
// asynchronously, and the old primary acknowledges writes until it learns
// of the failover, so any dialogue that lived through it may have lost
// messages. The service follows the new primary without a restart; every
// dialogue that lived through the failover answers its consent with 404 and
// is stored in no part; one started after it is stored whole; and a
// one-message dialogue around the failover is stored whole or gets 404.
func TestRedisFailover(t *testing.T) {
	master, addrs := testserver.Sentinel(t)
	run := strings.ToLower(rand.Text()[:8])
	environ := []string{
		"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
		"DATA_API_DIALOGUES_STORE=redis",
		"DATA_API_REDIS_SENTINEL_MASTER=" + master,
		`DATA_API_REDIS_SENTINEL_ADDRS=["` + strings.Join(addrs, `","`) + `"]`,
		"DATA_API_REDIS_PREFIX=failover:" + run + ":",
	}
	inst := start(t, environ)
	post := func(dialogue, text string) int {
		return callStatus(t, inst, "POST", "/data/cust-"+run+"/"+dialogue, `{"text": "`+text+`", "language": "en"}`)
	}
	for _, text := range []string{"before 1", "before 2"} {
		if status := post("before", text); status != 202 {
			t.Fatalf("%s: %d", text, status)
		}
	}

	// Through the failover: messages to one long dialogue, and now and then
	// a message that starts a dialogue of its own, until the old
	// primary has become a replica and the service has acknowledged
	// messages again.
	var (
		mu           sync.Mutex
		single       = map[string]int{} // dialogue → status of its one message
		failedOver   = make(chan struct{})
		refused, ack int
	)
	var wg sync.WaitGroup
	wg.Go(func() {
		deadline := time.Now().Add(time.Minute)
		for i := 0; time.Now().Before(deadline); i++ {
			status := post("span", fmt.Sprintf("span %04d", i))
			sstatus := 202
			if i%4 == 0 {
				id := fmt.Sprintf("single-%04d", i)
				sstatus = post(id, "alone")
				mu.Lock()
				single[id] = sstatus
				mu.Unlock()
			}
			mu.Lock()
			if status != 202 || sstatus != 202 {
				refused++
			}
			mu.Unlock()
			select {
			case <-failedOver:
				if status == 202 && sstatus == 202 {
					ack++
				}
				if ack == 20 {
					return
				}
			default:
			}
			time.Sleep(5 * time.Millisecond) // a chatbot's pace, bounded by the deadline
		}
	})
	time.Sleep(100 * time.Millisecond) // some messages before the failover
	began := time.Now()
	from, to := testserver.FailOver(t, master, addrs)
	close(failedOver)
	wg.Wait()
	t.Logf("failover %s → %s in %v: %d one-message dialogues, %d refusals", from, to, time.Since(began), len(single), refused)
	if ack < 20 {
		t.Fatalf("the service did not follow the new primary: %d messages acknowledged after the failover", ack)
	}

	// A dialogue that lived through the failover takes messages but is
	// never stored.
	if status := post("before", "after"); status != 202 {
		t.Fatalf("a message to a dialogue that lived through the failover: %d", status)
	}
	for _, id := range []string{"before", "span"} {
		if got := consent(t, inst, id); got != 404 {
			t.Fatalf("consent of %s, which lived through the failover: %d, want 404", id, got)
		}
	}
	// One started after the failover is stored whole.
	for _, text := range []string{"after 1", "after 2"} {
		if status := post("after", text); status != 202 {
			t.Fatalf("%s: %d", text, status)
		}
	}
	if got := consent(t, inst, "after"); got != 200 {
		t.Fatalf("consent of a dialogue started after the failover: %d", got)
	}
	// One-message dialogues: stored whole, or 404.
	consented := map[string]bool{}
	for id, status := range single {
		got := consent(t, inst, id)
		if got != 200 && got != 404 {
			t.Fatalf("%s: message answered %d, consent %d", id, status, got)
		}
		consented[id] = got == 200
	}
	texts := storedTexts(t, inst, run)
	if want := []string{"after 1", "after 2"}; !slices.Equal(texts["after"], want) {
		t.Fatalf("stored %q, want %q", texts["after"], want)
	}
	for _, id := range []string{"before", "span"} {
		if texts[id] != nil {
			t.Fatalf("%s stored %q", id, texts[id])
		}
	}
	stored := 0
	for id, ok := range consented {
		if want := []string{"alone"}; ok && !slices.Equal(texts[id], want) || !ok && texts[id] != nil {
			t.Fatalf("%s stored %q after consent %v", id, texts[id], ok)
		}
		if ok {
			stored++
		}
	}
	t.Logf("one-message dialogues: %d stored, %d lost", stored, len(consented)-stored)
	// Operators see how many: at least before and span.
	if lost := metricValue(t, inst, `data_api_pending_evictions_total{cause="failover"}`); lost < 2 {
		t.Fatalf("failover evictions: %v, want at least 2", lost)
	}

	inst.stop()
	if err := <-inst.done; err != nil {
		t.Fatalf("run returned %v", err)
	}
}

// consent sends consent true for the dialogue, again while the service
// answers 503, and returns the final status.
func consent(t *testing.T, inst *instance, dialogue string) int {
	t.Helper()
	for range 50 {
		if status := callStatus(t, inst, "POST", "/consents/"+dialogue, "true"); status != 503 {
			return status
		}
		time.Sleep(100 * time.Millisecond) // the 503's Retry-After, shortened
	}
	t.Fatalf("consent of %s: still 503", dialogue)
	return 0
}

// storedTexts returns the stored texts of the run's customer by dialogue,
// oldest first.
func storedTexts(t *testing.T, inst *instance, run string) map[string][]string {
	t.Helper()
	texts := map[string][]string{}
	for _, m := range allMessages(t, inst, "/data?customerId=cust-"+run+"&limit=1000") {
		id := m["dialogId"].(string)
		texts[id] = append(texts[id], m["text"].(string))
	}
	for _, s := range texts {
		slices.Reverse(s)
	}
	return texts
}

// metricValue returns the value of one series of the instance's metrics.
func metricValue(t *testing.T, inst *instance, series string) float64 {
	t.Helper()
	resp, err := http.Get(inst.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in the metrics", series)
	return 0
}
