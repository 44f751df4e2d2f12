package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/model"
)

// TestRun starts the real binary's entry point on a free port with a SQLite
// file, walks the whole flow over HTTP, then stops it with SIGTERM and
// requires a clean return.
func TestRun(t *testing.T) {
	addr := freeAddr(t)
	dir := t.TempDir()
	environ := []string{
		"DATA_API_SERVER_ADDR=" + addr,
		"DATA_API_DATABASE_DSN=" + filepath.Join(dir, "db", "data-api.db"),
		"DATA_API_AUTH_KEYS=" + `[{"name":"bot","key":"bot-secret-0123456789","roles":["ingest"]},` +
			`{"name":"ana","key":"ana-secret-0123456789","roles":["analyst","admin"]}]`,
		"DATA_API_LOG_LEVEL=debug",
	}
	logs := &fake.Log{}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), nil, environ, logs) }()

	base := "http://" + addr
	waitReady(t, base, done)
	bot, ana := "bot-secret-0123456789", "ana-secret-0123456789"

	inst := &instance{base: base}
	call := func(method, path, key, body string, want int) map[string]any {
		t.Helper()
		return callAs(t, inst, key, method, path, body, want)
	}
	call("POST", "/data/cust-1/dlg-1", bot, `{"text": "I need help", "language": "EN"}`, 202)
	call("POST", "/data/cust-1/dlg-1", bot, `{"text": "with my order", "language": "en"}`, 202)
	call("POST", "/data/cust-1/dlg-1", ana, `{"text": "x", "language": "en"}`, 403)
	if got := call("POST", "/consents/dlg-1", bot, "true", 200); got["storedMessages"] != 2.0 {
		t.Fatalf("consent: %v", got)
	}
	page := call("GET", "/data?language=en&customerId=cust-1", ana, "", 200)
	if data := page["data"].([]any); len(data) != 2 || data[0].(map[string]any)["text"] != "with my order" {
		t.Fatalf("query: %v", page)
	}
	if got := call("GET", "/consents/dlg-1", ana, "", 200); got["consent"] != true {
		t.Fatalf("proof: %v", got)
	}
	if got := call("POST", "/consents/dlg-1", bot, "false", 200); got["deletedMessages"] != 2.0 {
		t.Fatalf("withdrawal: %v", got)
	}
	call("DELETE", "/customers/cust-1/data", ana, "", 200)

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after SIGTERM")
	}
	for _, secret := range []string{bot, ana, "I need help", "with my order", "cust-1", "dlg-1"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	for _, want := range []string{"no API keys configured", "listening", "stopped"} {
		if want == "no API keys configured" {
			if strings.Contains(logs.String(), want) {
				t.Errorf("keys are configured, yet the log warns %q", want)
			}
			continue
		}
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

func TestRunWarnsWithoutKeysAndStopsOnCancel(t *testing.T) {
	addr := freeAddr(t)
	environ := []string{
		"DATA_API_SERVER_ADDR=" + addr,
		"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
	}
	logs := &fake.Log{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, environ, logs) }()
	waitReady(t, "http://"+addr, done)
	if err := run(ctx, []string{"-probe", "http://" + addr + "/readyz"}, nil, io.Discard); err != nil {
		t.Fatalf("probe of a ready server: %v", err)
	}
	if err := run(ctx, []string{"-probe", "http://" + addr + "/nowhere"}, nil, io.Discard); err == nil {
		t.Fatal("probe of a 404 succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run returned %v", err)
	}
	if !strings.Contains(logs.String(), "no API keys configured") {
		t.Fatal("no warning that the service runs without authentication")
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	err := run(context.Background(), nil, []string{"DATA_API_DIALOGUES_SHARDS=6", "DATA_API_DIALOGUES_TTL=30"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "dialogues.shards") || !strings.Contains(err.Error(), "dialogues.ttl") {
		t.Fatalf("run with invalid config: %v; want both keys named", err)
	}
	// A typo in a variable's name would silently leave the service open.
	// (Bounded, lest a service that starts anyway serve forever.)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = run(ctx, nil, []string{
		"DATA_API_SERVER_ADDR=127.0.0.1:0",
		"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
		"DATA_API_AUTH_KEY=" + `[{"name":"bot","key":"bot-secret-0123456789","roles":["ingest"]}]`,
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATA_API_AUTH_KEY: is not a setting; did you mean DATA_API_AUTH_KEYS (auth.keys)?") {
		t.Fatalf("run with DATA_API_AUTH_KEY: %v; want it refused, naming DATA_API_AUTH_KEYS", err)
	}
	err = run(context.Background(), []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, nil, io.Discard)
	if err == nil {
		t.Fatal("run with a missing --config file succeeded")
	}
}

// TestRunRefusesADatabaseItCannotOpen: a database path that cannot be
// created fails the start with one prefix and the cause, naming the path.
func TestRunRefusesADatabaseItCannotOpen(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := filepath.Join(notADir, "data-api.db")
	err := run(context.Background(), nil, []string{"DATA_API_SERVER_ADDR=" + freeAddr(t), "DATA_API_DATABASE_DSN=" + dsn}, io.Discard)
	if err == nil {
		t.Fatal("run started on a database path under a file")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "open database") || strings.Count(msg, "open database") != 1 ||
		!strings.Contains(msg, notADir) || !strings.Contains(msg, "not a directory") {
		t.Fatalf("got %q; want one \"open database\" prefix, the path and the cause", msg)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a server that is starting
	}
	t.Fatal("the server never became ready")
}

// TestRunDrainsBeforeStopping: on shutdown, /readyz answers 503 for the
// drain delay while every other endpoint still serves.
func TestRunDrainsBeforeStopping(t *testing.T) {
	addr := freeAddr(t)
	environ := []string{
		"DATA_API_SERVER_ADDR=" + addr,
		"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
		"DATA_API_SERVER_DRAIN_DELAY=3s",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, environ, io.Discard) }()
	inst := &instance{base: "http://" + addr}
	waitReady(t, inst.base, done)
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for callStatus(t, inst, "GET", "/readyz", "") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still ready after shutdown began")
		}
		time.Sleep(10 * time.Millisecond) // polling for the shutdown to begin
	}
	call(t, inst, "GET", "/healthz", "", 200)
	call(t, inst, "POST", "/data/c/d", `{"text": "still served", "language": "en"}`, 202)
	if err := <-done; err != nil {
		t.Fatalf("run returned %v", err)
	}
}

// TestRotateKey rotates a database's dialogue keys to a new master key
// through the entry point: before the rotation the service refuses to start
// without the old master key, naming it; after it, the old key can go.
func TestRotateKey(t *testing.T) {
	const (
		k1 = `{"id":"k1","key":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}`
		k2 = `{"id":"k2","key":"ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="}`
	)
	dsn := "DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db")
	ring := func(active string, keys ...string) []string {
		return []string{dsn, "DATA_API_ENCRYPTION_KEYS=[" + strings.Join(keys, ",") + "]", "DATA_API_ENCRYPTION_ACTIVE=" + active}
	}
	// A consented dialogue, its key wrapped by k1.
	cfg, err := config.Load("", ring("k1", k1))
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(t.Context(), cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Ingest(t.Context(), model.Message{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: "kept across the rotation"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Consent(t.Context(), "d1", true, "bot"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	err = run(t.Context(), nil, ring("k2", k2), io.Discard)
	if err == nil || !strings.Contains(err.Error(), `master key "k1"`) {
		t.Fatalf("serving without k1 before the rotation: got %v, want a refusal naming k1", err)
	}
	for _, args := range [][]string{{"rotate-keys"}, {"rotate-key", "now"}, {"rotate-key", "-probe", "http://127.0.0.1:1/"}} {
		if err := run(t.Context(), args, ring("k2", k1, k2), io.Discard); err == nil {
			t.Errorf("run %q succeeded, want an error", args)
		}
	}
	logs := &fake.Log{}
	if err := run(t.Context(), []string{"rotate-key"}, ring("k2", k1, k2), logs); err != nil {
		t.Fatalf("rotate-key: %v", err)
	}
	for _, want := range []string{`"command":"rotate-key"`, `"dialogue_keys":1`, "rotated: every dialogue key is wrapped by the active master key", `"rewrapped":1`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the rotation's log lacks %s: %s", want, logs)
		}
	}
	for _, secret := range []string{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="} {
		if strings.Contains(logs.String(), secret) {
			t.Error("the log holds a master key")
		}
	}

	// k1 gone: the service starts and reads the dialogue.
	if cfg, err = config.Load("", ring("k2", k2)); err != nil {
		t.Fatal(err)
	}
	if a, err = app.New(t.Context(), cfg, app.Options{}); err != nil {
		t.Fatalf("starting with k2 alone after the rotation: %v", err)
	}
	defer a.Close()
	var texts []string
	if err := a.Service.Export(t.Context(), model.Filter{}, func(m model.StoredMessage) error {
		texts = append(texts, m.Text)
		return nil
	}); err != nil || len(texts) != 1 || texts[0] != "kept across the rotation" {
		t.Errorf("after the rotation: got %q, %v", texts, err)
	}
}
