package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
)

// benchIngestBody is a typical ingest request: a 76-byte text.
var benchIngestBody = []byte(`{"text": "Hello, I ordered a blue jacket last week and it still has not arrived. Help?", "language": "en"}`)

// newBenchHandler returns the whole application over a fresh SQLite file,
// built as cmd/data-api builds it from the default configuration with one
// API key, and logging as production does (JSON, info level, one line per
// request) to nowhere.
// newEnv is not used: it keeps every debug line in memory.
func newBenchHandler(b *testing.B) http.Handler {
	b.Helper()
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(b.TempDir(), "data.db")
	cfg.Dialogues.MaxPending = 1 << 22 // far above what one run ingests, so that no request is refused
	cfg.Auth.Keys = []config.Key{key("bot", "ingest", "analyst")}
	a, err := app.New(b.Context(), cfg, app.Options{Log: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a.Handler
}

// newBareGin returns a gin engine with the ingest route only, whose handler
// reads the body and discards it: the ceiling of the HTTP layer.
func newBareGin() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.POST("/data/:customerId/:dialogId", func(c *gin.Context) {
		if _, err := io.Copy(io.Discard, c.Request.Body); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		c.Status(http.StatusAccepted)
	})
	return e
}

// BenchmarkIngestHTTP measures POST /data/{customerId}/{dialogId} in requests
// per second, in process: through the whole handler (every middleware, API
// key check, service, pending store; the owner lookup in SQLite once per
// dialogue), and through a bare gin engine that reads and discards the body.
// Each goroutine sends 20 messages to a dialogue, then moves to a new one.
func BenchmarkIngestHTTP(b *testing.B) {
	for _, bc := range []struct {
		name    string
		handler func(*testing.B) http.Handler
	}{
		{"service", newBenchHandler},
		{"bare-gin", func(*testing.B) http.Handler { return newBareGin() }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := bc.handler(b)
			auth := "Bearer " + secret("bot")
			var goroutines, failed atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := goroutines.Add(1)
				var target string
				for i := 0; pb.Next(); i++ {
					if i%20 == 0 {
						target = fmt.Sprintf("/data/customer-%d/g%d-dialogue-%d", g, g, i/20)
					}
					req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(benchIngestBody))
					if err != nil {
						b.Error(err)
						return
					}
					req.Header.Set("Authorization", auth)
					req.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusAccepted && failed.Add(1) == 1 {
						b.Errorf("POST %s: %d %s", target, w.Code, w.Body)
					}
				}
			})
			if s := b.Elapsed().Seconds(); s > 0 {
				b.ReportMetric(float64(b.N)/s, "req/s")
			}
		})
	}
}

// BenchmarkQueryHTTP measures a first page of GET /data, 100 messages of
// 76 bytes, through the whole handler in process, one request at a time.
func BenchmarkQueryHTTP(b *testing.B) {
	h := newBenchHandler(b)
	auth := "Bearer " + secret("bot")
	do := func(method, target string, body []byte) *httptest.ResponseRecorder {
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	for d := range 10 {
		for range 20 {
			if w := do(http.MethodPost, fmt.Sprintf("/data/customer-%d/dialogue-%d", d%3, d), benchIngestBody); w.Code != http.StatusAccepted {
				b.Fatalf("ingest: %d %s", w.Code, w.Body)
			}
		}
		if w := do(http.MethodPost, fmt.Sprintf("/consents/dialogue-%d", d), []byte(`{"consent": true}`)); w.Code != http.StatusOK {
			b.Fatalf("consent: %d %s", w.Code, w.Body)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if w := do(http.MethodGet, "/data?limit=100", nil); w.Code != http.StatusOK {
			b.Fatalf("GET /data: %d %s", w.Code, w.Body)
		}
	}
}
