package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
)

// newService serves the real Data API, built as cmd/data-api builds it
// from the default configuration, over a fresh SQLite database.
func newService(t *testing.T) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(t.TempDir(), "data-api.db")
	cfg.Cursor.Secret = "data-api-bench test cursor secret"
	a, err := app.New(t.Context(), cfg, app.Options{})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	srv := httptest.NewServer(a.Handler)
	t.Cleanup(srv.Close)
	return srv
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		phases  int
		checked bool
	}{
		{"full", []string{"-duration", "2s", "-analysts", "2", "-export-every", "300ms", "-check-all"}, 1, true},
		{"ceiling then full, checked through pages", []string{
			"-ceiling", "-ceiling-duration", "1s", "-duration", "1s", "-check-via", "pages",
		}, 3, true},
		{"ceiling, messages only", []string{"-ceiling", "-ceiling-duration", "1s", "-duration", "0", "-mode", "ingest"}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newService(t)
			jsonPath := filepath.Join(t.TempDir(), "report.json")
			args := append([]string{"-url", srv.URL, "-conns", "8", "-customers", "20", "-messages", "5", "-json", jsonPath}, tt.args...)
			var out bytes.Buffer
			if err := run(t.Context(), args, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, &out)
			}
			if strings.Contains(out.String(), filler[:20]) {
				t.Errorf("the output holds message text:\n%s", &out)
			}

			b, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatal(err)
			}
			var rep report
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatalf("report: %v", err)
			}
			if len(rep.Phases) != tt.phases {
				t.Fatalf("got %d phases, want %d\n%s", len(rep.Phases), tt.phases, &out)
			}
			for _, p := range rep.Phases {
				if got := p.endpoint("ingest"); got.Requests == 0 || got.OK == 0 {
					t.Errorf("%s: got %d ingest requests, %d ok; want some", p.Name, got.Requests, got.OK)
				}
			}
			if tt.checked {
				if rep.Check == nil {
					t.Fatalf("no consistency check (%s)\n%s", rep.CheckSkipped, &out)
				}
				if rep.Check.Dialogues == 0 || rep.Check.failed() {
					t.Errorf("check: got %+v, want some dialogues and no failure", *rep.Check)
				}
			}
			if tt.phases > 1 && (rep.Ceiling == nil || rep.Ceiling.Ratio <= 0 || rep.Ceiling.Ceiling != "its own process") {
				t.Errorf("got ceiling %+v, want a positive ratio against a bare server in its own process", rep.Ceiling)
			}
		})
	}
}

// Shape of the data seed stores: seedDialogues dialogues of seedMessages
// messages, spread over seedCustomers customers and seedLanguages.
const (
	seedCustomers = 8
	seedDialogues = 40
	seedMessages  = 10
	seedText      = "seeded message for the query mode test"
)

var seedLanguages = []string{"en", "de"}

// seed stores seedDialogues*seedMessages consented messages through the
// service's HTTP API.
func seed(t *testing.T, base string) {
	t.Helper()
	post := func(path, body string, want int) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: got status %d, want %d", path, resp.StatusCode, want)
		}
	}
	for d := range seedDialogues {
		customer, dialogue := fmt.Sprintf("seed-c%d", d%seedCustomers), fmt.Sprintf("seed-d%d", d)
		body := fmt.Sprintf(`{"text":%q,"language":%q}`, seedText, seedLanguages[d%len(seedLanguages)])
		for range seedMessages {
			post("/data/"+customer+"/"+dialogue, body, http.StatusAccepted)
		}
		post("/consents/"+dialogue, "true", http.StatusOK)
	}
}

func TestRunQuery(t *testing.T) {
	srv := newService(t)
	seed(t, srv.URL)
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	var out bytes.Buffer
	args := []string{"-url", srv.URL, "-mode", "query", "-duration", "1s", "-conns", "4", "-deep-pages", "3", "-json", jsonPath}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	for _, secret := range []string{"seed-c", "seed-d", seedText} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the output holds %q:\n%s", secret, &out)
		}
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	if want := (discoveryReport{Sampled: seedDialogues * seedMessages, Customers: seedCustomers, Languages: len(seedLanguages)}); rep.Discovery == nil || *rep.Discovery != want {
		t.Errorf("got discovery %+v, want %+v", rep.Discovery, want)
	}
	if len(rep.Phases) != 2 {
		t.Fatalf("got %d phases, want 2 (queries, export)\n%s", len(rep.Phases), &out)
	}
	queries, export := rep.Phases[0], rep.Phases[1]
	for _, name := range []string{"query-none", "query-language", "query-customer", "query-both", "query-page1", "query-walk", "query-deep"} {
		got := queries.endpoint(name)
		if got.Requests == 0 || got.OK != got.Requests || len(got.Failures) > 0 {
			t.Errorf("%s: got %d requests, %d ok, errors %v; want some, all ok\n%s", name, got.Requests, got.OK, got.Failures, &out)
		}
	}
	if got := queries.endpoint("ingest"); got.Requests != 0 {
		t.Errorf("got %d ingest requests, want none", got.Requests)
	}
	if d := queries.Deep; d == nil || d.Walks == 0 || d.RatioP50 <= 0 {
		t.Errorf("got deep pages %+v, want walks to page 3 and a ratio", d)
	}
	got := export.endpoint("export")
	if want := int64(seedDialogues * seedMessages); got.Requests != 1 || got.OK != 1 || got.Rows != want || got.RowsPerSecond <= 0 {
		t.Errorf("export: got %d requests, %d ok, %d rows at %.0f rows/s; want 1, 1, %d rows at a positive rate",
			got.Requests, got.OK, got.Rows, got.RowsPerSecond, want)
	}
	if rep.Check != nil || rep.CheckSkipped == "" {
		t.Errorf("got check %+v, skipped %q; want it skipped with a reason", rep.Check, rep.CheckSkipped)
	}
}

// TestRunQueryEmpty checks that query mode refuses a target with nothing
// to query.
func TestRunQueryEmpty(t *testing.T) {
	srv := newService(t)
	var out bytes.Buffer
	err := run(t.Context(), []string{"-url", srv.URL, "-mode", "query", "-duration", "1s"}, &out)
	if err == nil || !strings.Contains(err.Error(), "no consented message") {
		t.Errorf("got %v, want an error saying the target holds no consented message", err)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		raw         string
		allowRemote bool
		want        string // "" when refused
	}{
		{"http://127.0.0.1:8080", false, "http://127.0.0.1:8080"},
		{"http://127.9.9.9:8080/", false, "http://127.9.9.9:8080"},
		{"http://localhost:8080/api/", false, "http://localhost:8080/api"},
		{"https://LOCALHOST", false, "https://LOCALHOST"},
		{"http://[::1]:8080", false, "http://[::1]:8080"},
		{"http://[::ffff:127.0.0.1]:8080", false, "http://[::ffff:127.0.0.1]:8080"},
		{"http://10.0.0.1:8080", false, ""},
		{"http://0.0.0.0:8080", false, ""},
		{"http://example.com", false, ""},
		{"http://localhost.example.com", false, ""},
		{"http://127.0.0.1.nip.io", false, ""},
		{"http://example.com", true, "http://example.com"},
		{"http://10.0.0.1:8080", true, "http://10.0.0.1:8080"},
		{"", true, ""},
		{"127.0.0.1:8080", true, ""},
		{"ftp://127.0.0.1", true, ""},
		{"http://user:secret@127.0.0.1", true, ""},
		{"http://127.0.0.1?x=1", true, ""},
		{"http://:8080", true, ""},
	}
	for _, tt := range tests {
		u, err := parseTarget(tt.raw, tt.allowRemote)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("parseTarget(%q, %v) = %s, want an error", tt.raw, tt.allowRemote, u)
		case tt.want != "" && err != nil:
			t.Errorf("parseTarget(%q, %v): %v, want %s", tt.raw, tt.allowRemote, err, tt.want)
		case tt.want != "" && u.String() != tt.want:
			t.Errorf("parseTarget(%q, %v) = %s, want %s", tt.raw, tt.allowRemote, u, tt.want)
		}
	}
}

// TestRunRefusesRemote checks that run sends nothing to a host that is not
// loopback without -allow-remote.
func TestRunRefusesRemote(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"-url", "http://192.0.2.1:8080", "-duration", "1s"}, &out)
	if err == nil || !strings.Contains(err.Error(), "-allow-remote") {
		t.Errorf("got %v, want a refusal that names -allow-remote", err)
	}
}

func TestVerify(t *testing.T) {
	l := &loader{}
	stored := func(seq int64, copies ...int) map[string]int {
		m := map[string]int{}
		for i, n := range copies {
			if n > 0 {
				m[l.text(seq, i)] = n
			}
		}
		return m
	}
	tests := []struct {
		name   string
		d      dialogue
		stored map[string]int
		want   verdict
	}{
		{"true, all stored once", dialogue{seq: 1, consent: true, stored: 2, outcomes: []outcome{acked, acked}}, stored(1, 1, 1), verdict{}},
		{"true, one missing", dialogue{seq: 1, consent: true, stored: 2, outcomes: []outcome{acked, acked}}, stored(1, 1, 0), verdict{missing: 1}},
		{"true, one twice", dialogue{seq: 1, consent: true, stored: 2, outcomes: []outcome{acked, acked}}, stored(1, 2, 1), verdict{duplicated: 1}},
		{"true, refused one stored", dialogue{seq: 1, consent: true, stored: 1, outcomes: []outcome{acked, refused}}, stored(1, 1, 1), verdict{unexpected: 1}},
		{"true, unanswered one stored or not", dialogue{seq: 1, consent: true, stored: 2, outcomes: []outcome{acked, unknown}}, stored(1, 1, 1), verdict{}},
		{"true, a text never sent", dialogue{seq: 1, consent: true, stored: 1, outcomes: []outcome{acked}}, map[string]int{l.text(1, 0): 1, l.text(2, 0): 1}, verdict{unexpected: 1}},
		{"true, wrong storedMessages", dialogue{seq: 1, consent: true, stored: 3, outcomes: []outcome{acked, acked}}, stored(1, 1, 1), verdict{wrongReply: true}},
		{"false, nothing stored", dialogue{seq: 1, outcomes: []outcome{acked, acked}}, nil, verdict{}},
		{"false, one stored", dialogue{seq: 1, outcomes: []outcome{acked, acked}}, stored(1, 0, 1), verdict{unexpected: 1}},
	}
	for _, tt := range tests {
		if got := l.verify(tt.d, tt.stored); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestAlsoSpreadsRequests sends one run's requests round-robin to two
// front doors of the same service, and the check still passes.
func TestAlsoSpreadsRequests(t *testing.T) {
	srv := newService(t)
	var hits [2]atomic.Int64
	doors := make([]*httptest.Server, 2)
	for i := range doors {
		doors[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			srv.Config.Handler.ServeHTTP(w, r)
		}))
		t.Cleanup(doors[i].Close)
	}
	var out bytes.Buffer
	args := []string{"-url", doors[0].URL, "-also", doors[1].URL, "-duration", "1s", "-conns", "4", "-customers", "5", "-messages", "3", "-check-all"}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	a, b := hits[0].Load(), hits[1].Load()
	if a == 0 || b == 0 || a > 2*b || b > 2*a {
		t.Fatalf("requests per instance: %d and %d, want them spread evenly", a, b)
	}
}

// TestMain lets the test binary stand for the program when the ceiling
// starts it as the bare subcommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestBareAnswersAsTheService: the ceiling answers a dialogue's first
// message with the service's reply, byte for byte.
func TestBareAnswersAsTheService(t *testing.T) {
	body := `{"text": "hello", "language": "en"}`
	post := func(base string) (int, string, string) {
		resp, err := http.Post(base+"/data/cust-1/dlg-1", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	bare := httptest.NewServer(bareHandler())
	defer bare.Close()
	ws, wct, wbody := post(newService(t).URL)
	if gs, gct, gbody := post(bare.URL); gs != ws || gct != wct || gbody != wbody {
		t.Fatalf("bare answers %d %q %q; the service %d %q %q", gs, gct, gbody, ws, wct, wbody)
	}
}

// TestBareSubcommand starts the bare server as its own process, as -ceiling
// does, and stops it.
func TestBareSubcommand(t *testing.T) {
	p, err := startBareProcess(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(p.url+"/data/c/d", "application/json", strings.NewReader(`{"text":"x","language":"en"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("bare process answered %d", resp.StatusCode)
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
}
