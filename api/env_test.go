package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

// testEnv is the whole application, built from the default configuration
// as cmd/data-api builds it, over a real SQLite file, with a fake clock and
// the log captured.
type testEnv struct {
	t       testing.TB
	handler *api.Handler
	svc     *service.Dialogues
	db      *repository.DB
	dir     string
	clock   *fake.Clock
	logs    *fake.Log
	metrics *api.Metrics
}

type envOptions struct {
	// config, when set, changes the default configuration.
	config func(*config.Config)
	// wrap, when set, wraps the service before the handler sees it.
	wrap func(api.Dialogues) api.Dialogues
}

func newEnv(t testing.TB, o envOptions) *testEnv {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(dir, "data.db")
	cfg.Log.Level = "debug"
	if o.config != nil {
		o.config(&cfg)
	}
	logs := &fake.Log{}
	clk := fake.NewClock()
	a, err := app.New(t.Context(), cfg, app.Options{
		Log:   logs,
		Clock: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	handler := a.Handler
	if o.wrap != nil {
		handler = a.HandlerFor(o.wrap(a.Service))
	}
	return &testEnv{t: t, handler: handler, svc: a.Service, db: a.DB, dir: dir, clock: clk, logs: logs, metrics: a.Metrics}
}

// withKeys configures keys.
func withKeys(keys ...config.Key) func(*config.Config) {
	return func(c *config.Config) { c.Auth.Keys = keys }
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

func decode(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
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

// key makes an API key with roles; the secret is name + "-secret-0123456789".
func key(name string, roles ...string) config.Key {
	return config.Key{Name: name, Key: secret(name), Roles: roles}
}

func secret(name string) string { return name + "-secret-0123456789" }
