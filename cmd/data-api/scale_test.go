package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/data-api/data-api/internal/testserver"
)

// instance is one running data-api process, started through run.
type instance struct {
	base string
	stop context.CancelFunc
	done chan error
}

// TestTwoInstancesShareOneFlow starts two instances on one PostgreSQL and one
// Redis, with no stickiness: a dialogue's messages go round-robin to both,
// its consent to one, queries to either, and an erasure at one while the
// customer's messages arrive at the other.
func TestTwoInstancesShareOneFlow(t *testing.T) {
	redisURL := testserver.Redis(t)
	u, schema := pgSchema(t, "scale_")

	environ := []string{
		"DATA_API_DATABASE_DRIVER=postgres",
		"DATA_API_DATABASE_DSN=" + u.String(),
		"DATA_API_DIALOGUES_STORE=redis",
		"DATA_API_REDIS_URL=" + redisURL,
		"DATA_API_REDIS_PREFIX=" + schema + ":",
		"DATA_API_CURSOR_SECRET=shared-cursor-secret-0123456789",
		`DATA_API_ENCRYPTION_KEYS=[{"id":"k1","key":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]`,
		"DATA_API_ENCRYPTION_ACTIVE=k1",
		// One journal for both, as instances share it.
		"DATA_API_JOURNAL_DIR=" + filepath.Join(t.TempDir(), "journal"),
	}
	a, b := start(t, environ), start(t, environ)
	instances := []*instance{a, b}

	// One dialogue's messages, round-robin.
	var texts []string
	for i := range 10 {
		text := fmt.Sprintf("message %d", i)
		texts = append(texts, text)
		got := call(t, instances[i%2], "POST", "/data/cust-1/dlg-1", `{"text": "`+text+`", "language": "en"}`, 202)
		if got["pendingMessages"] != float64(i+1) {
			t.Fatalf("message %d: pendingMessages %v, want %d", i, got["pendingMessages"], i+1)
		}
	}
	// The owner rule holds across instances.
	call(t, b, "POST", "/data/cust-2/dlg-1", `{"text": "x", "language": "en"}`, 409)
	if got := call(t, b, "POST", "/consents/dlg-1", "true", 200); got["storedMessages"] != 10.0 {
		t.Fatalf("consent on b: %v", got)
	}
	// Either instance answers queries, and a cursor from one works on the other.
	for _, inst := range instances {
		if got := allTexts(t, inst, "/data?customerId=cust-1&limit=3"); !slices.Equal(got, reversed(texts)) {
			t.Fatalf("query on %s: %q", inst.base, got)
		}
	}
	page := call(t, a, "GET", "/data?customerId=cust-1&limit=4", "", 200)
	next := call(t, b, "GET", "/data?customerId=cust-1&limit=4&cursor="+url.QueryEscape(page["nextCursor"].(string)), "", 200)
	if first := next["data"].([]any)[0].(map[string]any)["text"]; first != "message 5" {
		t.Fatalf("page 2 through the other instance starts with %v, want message 5", first)
	}
	call(t, a, "POST", "/consents/dlg-1", "true", 200) // a retry on the other instance
	if got := call(t, a, "GET", "/consents/dlg-1", "", 200); got["consent"] != true || got["messages"] != 10.0 {
		t.Fatalf("proof on a: %v", got)
	}

	// An erasure at a while the customer's messages arrive at b: what is
	// stored afterwards is what arrived after the erasure, a suffix of the
	// acknowledged messages, and nothing of before.
	var acked []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 30 {
			text := fmt.Sprintf("late %02d", i)
			if callStatus(t, b, "POST", "/data/cust-1/dlg-2", `{"text": "`+text+`", "language": "en"}`) == 202 {
				acked = append(acked, text)
			}
		}
	})
	erased := call(t, a, "DELETE", "/customers/cust-1/data", "", 200)
	wg.Wait()
	if erased["deletedMessages"] != 10.0 {
		t.Fatalf("erasure: %v, want the 10 stored messages deleted", erased)
	}
	status := callStatus(t, a, "POST", "/consents/dlg-2", "true")
	stored := allTexts(t, b, "/data?customerId=cust-1")
	slices.Reverse(stored)
	switch {
	case status == 404 && len(stored) == 0: // every late message came before the erasure
	case status == 200 && len(stored) > 0 && slices.Equal(stored, acked[len(acked)-len(stored):]):
	default:
		t.Fatalf("after erasure racing ingest: consent %d, stored %q of acked %q", status, stored, acked)
	}
	if int(erased["droppedMessages"].(float64))+len(stored) != len(acked) {
		t.Fatalf("dropped %v + stored %d != acked %d", erased["droppedMessages"], len(stored), len(acked))
	}

	for _, inst := range instances {
		inst.stop()
		if err := <-inst.done; err != nil {
			t.Errorf("instance %s: run returned %v", inst.base, err)
		}
	}
}

func start(t *testing.T, environ []string) *instance {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	inst := &instance{base: "http://" + addr, stop: cancel, done: make(chan error, 1)}
	go func() { inst.done <- run(ctx, nil, append(environ, "DATA_API_SERVER_ADDR="+addr), io.Discard) }()
	t.Cleanup(cancel)
	waitReady(t, inst.base, inst.done)
	return inst
}

func callStatus(t *testing.T, inst *instance, method, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, inst.base+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func call(t *testing.T, inst *instance, method, path, body string, want int) map[string]any {
	t.Helper()
	return callAs(t, inst, "", method, path, body, want)
}

// callAs sends a request with key as its bearer key (none when empty) and
// requires status want; it returns the decoded JSON body.
func callAs(t *testing.T, inst *instance, key, method, path, body string, want int) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, inst.base+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s%s: %d, want %d; %s", method, inst.base, path, resp.StatusCode, want, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// allTexts follows nextCursor from path to the last page and returns the
// texts.
func allTexts(t *testing.T, inst *instance, path string) []string {
	t.Helper()
	var texts []string
	for _, m := range allMessages(t, inst, path) {
		texts = append(texts, m["text"].(string))
	}
	return texts
}

// allMessages follows nextCursor from path to the last page.
func allMessages(t *testing.T, inst *instance, path string) []map[string]any {
	t.Helper()
	var messages []map[string]any
	for {
		page := call(t, inst, "GET", path, "", 200)
		for _, m := range page["data"].([]any) {
			messages = append(messages, m.(map[string]any))
		}
		next, _ := page["nextCursor"].(string)
		if next == "" {
			return messages
		}
		u, _ := url.Parse(path)
		q := u.Query()
		q.Set("cursor", next)
		path = u.Path + "?" + q.Encode()
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// pgSchema makes a schema of the test's own, named prefix and a random
// suffix, on the test server and drops it at the end; it returns the server's
// DSN with the schema as its search_path, and the schema's name.
func pgSchema(t *testing.T, prefix string) (*url.URL, string) {
	t.Helper()
	dsn := testserver.Postgres(t)
	schema := prefix + strings.ToLower(rand.Text()[:12])
	pgExec(t, dsn, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { pgExec(t, dsn, "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u, schema
}

func pgExec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}
