package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

// testEnv is the real router over the real service and a real SQLite file,
// with a fake clock and the log captured.
type testEnv struct {
	t       *testing.T
	handler *api.Handler
	svc     *service.Dialogues
	db      *repository.DB
	dir     string
	clock   *fakeClock
	logs    *syncBuffer
	metrics *api.Metrics
}

type envOptions struct {
	service service.Options
	api     api.Options
	// wrap, when set, wraps the service before the handler sees it.
	wrap func(api.Dialogues) api.Dialogues
}

func newEnv(t *testing.T, o envOptions) *testEnv {
	t.Helper()
	dir := t.TempDir()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := repository.Open(context.Background(), repository.Options{
		Driver: "sqlite", DSN: filepath.Join(dir, "data.db"), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &fakeClock{now: time.Date(2026, 11, 26, 21, 36, 4, 123456789, time.UTC)}
	so := o.service
	so.Clock = clk.Now
	so.Logger = log
	defaults := service.Options{TTL: 30 * time.Minute, SweepInterval: time.Minute, MaxPending: 1000,
		MaxMessages: 1000, Shards: 16, MaxTextBytes: 8192, CommitBatch: 64, RetentionBatch: 1000, RetentionInterval: time.Hour}
	setDefault(&so.TTL, defaults.TTL)
	setDefault(&so.SweepInterval, defaults.SweepInterval)
	setDefault(&so.MaxPending, defaults.MaxPending)
	setDefault(&so.MaxMessages, defaults.MaxMessages)
	setDefault(&so.Shards, defaults.Shards)
	setDefault(&so.MaxTextBytes, defaults.MaxTextBytes)
	setDefault(&so.CommitBatch, defaults.CommitBatch)
	setDefault(&so.RetentionBatch, defaults.RetentionBatch)
	setDefault(&so.RetentionInterval, defaults.RetentionInterval)
	metrics := api.NewMetrics()
	so.ObserveWrite = metrics.ObserveWrite
	svc := service.New(db, so)

	ao := o.api
	ao.Logger = log
	ao.Metrics = metrics
	setDefault(&ao.MaxBodyBytes, 64<<10)
	if ao.CursorSecret == nil {
		ao.CursorSecret = []byte("test cursor secret, 32 bytes ok")
	}
	var d api.Dialogues = svc
	if o.wrap != nil {
		d = o.wrap(svc)
	}
	return &testEnv{t: t, handler: api.NewHandler(d, ao), svc: svc, db: db, dir: dir, clock: clk, logs: logs, metrics: metrics}
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// do sends a request through the real router. headers are name, value pairs.
func (e *testEnv) do(method, target, body string, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	return w
}

// post ingests one message and requires a 202.
func (e *testEnv) post(customer, dialogue, text, lang string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"text": text, "language": lang})
	if w := e.do("POST", "/data/"+customer+"/"+dialogue, string(body)); w.Code != http.StatusAccepted {
		e.t.Fatalf("POST /data/%s/%s: %d %s", customer, dialogue, w.Code, w.Body)
	}
}

// consent posts a decision and requires a 200.
func (e *testEnv) consent(dialogue string, consent bool) map[string]any {
	e.t.Helper()
	body := "false"
	if consent {
		body = "true"
	}
	w := e.do("POST", "/consents/"+dialogue, body)
	if w.Code != http.StatusOK {
		e.t.Fatalf("POST /consents/%s %s: %d %s", dialogue, body, w.Code, w.Body)
	}
	return decode(e.t, w)
}

func decode(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return m
}

// wantProblem checks that w is an RFC 9457 problem with the given status
// whose detail mentions every one of mentions.
func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int, mentions ...string) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	p := decode(t, w)
	for _, f := range []string{"type", "title", "detail"} {
		if s, _ := p[f].(string); s == "" {
			t.Fatalf("problem %v lacks %q", p, f)
		}
	}
	if p["status"] != float64(status) {
		t.Fatalf("problem status %v, want %d", p["status"], status)
	}
	body := w.Body.String()
	for _, m := range mentions {
		if !strings.Contains(body, m) {
			t.Fatalf("problem %s does not mention %q", body, m)
		}
	}
	return p
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// key makes an API key with roles; the secret is name + "-secret-0123456789".
func key(name string, roles ...string) api.Key {
	return api.Key{Name: name, SHA256: sha256.Sum256([]byte(secret(name))), Roles: roles}
}

func secret(name string) string { return name + "-secret-0123456789" }
