package repository_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/repository"
)

// TestReadinessFollowsWriteOutages serves the whole application, through
// its router, on a database that starts refusing writes as a full disk
// (SQLITE_FULL, from SQLite's max_page_count) or a read-only database
// (SQLite's query_only, PostgreSQL's read-only transactions, as on a standby
// or for a role set so) does, made so on the writer's own connection. Every
// consent then fails; /readyz must say so after a few failures, not after
// one, and be ready again once the database commits.
func TestReadinessFollowsWriteOutages(t *testing.T) {
	for _, tc := range []struct {
		name, driver   string
		refuse, accept string
	}{
		{"sqlite full", "sqlite", "PRAGMA max_page_count = 1", "PRAGMA max_page_count = 1073741823"},
		{"sqlite read-only", "sqlite", "PRAGMA query_only = 1", "PRAGMA query_only = 0"},
		{"postgres read-only", "postgres", "SET default_transaction_read_only = on", "SET default_transaction_read_only = off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Database.Driver = tc.driver
			if tc.driver == "postgres" {
				_, cfg.Database.DSN = repository.PostgresSchema(t)
				cfg.Encryption.Active = "k1"
				cfg.Encryption.Keys = []config.EncryptionKey{{ID: "k1", Key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}}
				cfg.Journal.Dir = filepath.Join(t.TempDir(), "journal")
			} else {
				cfg.Database.DSN = filepath.Join(t.TempDir(), "data.db")
			}
			clk := fake.NewClock()
			a, err := app.New(t.Context(), cfg, app.Options{Clock: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			do := func(method, target, body string) *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				a.Handler.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
				return w
			}
			// Dialogues of 160 KB: more than the pages the probes leave
			// free, so that a database at its size limit has no room.
			text := strings.Repeat("x", 8000)
			dialogue := func(id string) {
				t.Helper()
				for range 20 {
					if w := do("POST", "/data/c1/"+id, `{"language":"en","text":"`+text+`"}`); w.Code != http.StatusAccepted {
						t.Fatalf("POST /data/c1/%s: %d %s", id, w.Code, w.Body)
					}
				}
			}
			consent := func(id string, want int) {
				t.Helper()
				if w := do("POST", "/consents/"+id, "true"); w.Code != want {
					t.Fatalf("POST /consents/%s: got %d %s, want %d", id, w.Code, w.Body, want)
				}
			}
			ready := func(step string, want int) {
				t.Helper()
				w := do("GET", "/readyz", "")
				if w.Code != want {
					t.Fatalf("%s: GET /readyz: got %d %s, want %d", step, w.Code, w.Body, want)
				}
				if want != http.StatusOK && !strings.Contains(w.Body.String(), "does not commit writes") {
					t.Errorf("%s: GET /readyz: %s, want a detail that says writes fail", step, w.Body)
				}
			}
			metric := func(line string) bool {
				return strings.Contains("\n"+do("GET", "/metrics", "").Body.String(), "\n"+line+"\n")
			}

			ready("at start", http.StatusOK)
			dialogue("d0")
			consent("d0", http.StatusOK)

			if err := repository.OnWriter(a.DB, tc.refuse); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				id := fmt.Sprintf("d%d", i)
				dialogue(id)
				consent(id, http.StatusServiceUnavailable)
				if i == 1 {
					ready("after one failed consent", http.StatusOK)
				}
			}
			ready("after three failed consents", http.StatusServiceUnavailable)
			for _, line := range []string{"data_api_ready 0", `data_api_db_write_failures_total{op="consent"} 3`} {
				if !metric(line) {
					t.Errorf("/metrics lacks %q", line)
				}
			}

			// The database commits again: the next probe, at most
			// five seconds on, makes the service ready, and the
			// dialogues that waited are stored on their retry.
			if err := repository.OnWriter(a.DB, tc.accept); err != nil {
				t.Fatal(err)
			}
			ready("before the next probe", http.StatusServiceUnavailable)
			clk.Advance(5 * time.Second)
			ready("after the next probe", http.StatusOK)
			if !metric("data_api_ready 1") {
				t.Error("/metrics lacks data_api_ready 1")
			}
			for i := 1; i <= 3; i++ {
				consent(fmt.Sprintf("d%d", i), http.StatusOK)
			}
		})
	}
}
