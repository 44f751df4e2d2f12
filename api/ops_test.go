package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/model"
)

// logLines returns the JSON log lines written since offset bytes of e.logs.
func logLines(t *testing.T, e *testEnv, offset int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()[offset:]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// requestLine finds the access log line of the request with id.
func requestLine(t *testing.T, e *testEnv, id string) map[string]any {
	t.Helper()
	for _, l := range logLines(t, e, 0) {
		if l["msg"] == "request" && l["request_id"] == id {
			return l
		}
	}
	t.Fatalf("no request log line with request_id %q in\n%s", id, e.logs)
	return nil
}

func TestProbes(t *testing.T) {
	for _, c := range []struct {
		name   string
		before func(*testEnv)
		target string
		want   int
		body   string // the status member of a 200 reply
	}{
		{"healthz", nil, "/healthz", http.StatusOK, "ok"},
		{"readyz", nil, "/readyz", http.StatusOK, "ready"},
		{"readyz with the database closed", func(e *testEnv) { e.db.Close() }, "/readyz", http.StatusServiceUnavailable, ""},
		{"healthz with the database closed", func(e *testEnv) { e.db.Close() }, "/healthz", http.StatusOK, "ok"},
		{"readyz draining", func(e *testEnv) { e.handler.Drain() }, "/readyz", http.StatusServiceUnavailable, ""},
		{"healthz draining", func(e *testEnv) { e.handler.Drain() }, "/healthz", http.StatusOK, "ok"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: withKeys(key("k", "admin"))})
			if c.before != nil {
				c.before(e)
			}
			w := e.do("GET", c.target, "") // no key: probes are open
			if c.want != http.StatusOK {
				p := wantProblem(t, w, c.want)
				if got, want := p["type"], "urn:data-api:problem:unavailable"; got != want {
					t.Errorf("problem type: got %v, want %v", got, want)
				}
				if got, want := w.Header().Get("Retry-After"), "1"; got != want {
					t.Errorf("Retry-After: got %q, want %q", got, want)
				}
				if body := w.Body.String(); strings.Contains(body, "sql") || strings.Contains(body, "closed") {
					t.Errorf("503 body %s shows an internal error", body)
				}
				return
			}
			if w.Code != c.want {
				t.Fatalf("GET %s: got status %d, want %d; body %s", c.target, w.Code, c.want, w.Body)
			}
			if got := decode(t, w)["status"]; got != c.body {
				t.Errorf("GET %s status member: got %v, want %q", c.target, got, c.body)
			}
		})
	}

	t.Run("readyz queries the database", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		offset := len(e.logs.String())
		if w := e.do("GET", "/readyz", ""); w.Code != http.StatusOK {
			t.Fatalf("GET /readyz: got status %d, want 200", w.Code)
		}
		// The repository traces every statement it runs, with the rows it
		// returned, at debug level, which the test environment records: a
		// ping that only checks a connection leaves no trace, a query that
		// answers leaves one with a row.
		queried := false
		for _, l := range logLines(t, e, offset) {
			if rows, _ := l["rows"].(float64); l["msg"] == "sql" && rows >= 1 && l["failed"] == false {
				queried = true
			}
		}
		if !queried {
			t.Errorf("GET /readyz ran no query that answered; log:\n%s", e.logs.String()[offset:])
		}
	})
}

func TestRequestID(t *testing.T) {
	generated := regexp.MustCompile(`^[0-9a-f]{16}-[0-9a-z]+$`)
	for _, c := range []struct {
		name string
		sent string // "" sends no header
		echo bool   // the sent id is kept
	}{
		{"sane", "req-42_abc.DEF", true},
		{"sane, 64 characters", strings.Repeat("a", 64), true},
		{"absent", "", false},
		{"too long", strings.Repeat("a", 65), false},
		{"with spaces", "req 42", false},
		{"with a newline", "req\n42", false},
		{"with a quote", `req"42`, false},
		{"not ASCII", "réq-42", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			var headers []string
			if c.sent != "" {
				headers = []string{"X-Request-ID", c.sent}
			}
			w := e.do("GET", "/healthz", "", headers...)
			got := w.Header().Get("X-Request-ID")
			switch {
			case c.echo && got != c.sent:
				t.Errorf("X-Request-ID: got %q, want %q echoed", got, c.sent)
			case !c.echo && !generated.MatchString(got):
				t.Errorf("X-Request-ID: got %q, want a generated id (16 hex digits, a dash, a counter)", got)
			}
			requestLine(t, e, got)
		})
	}

	t.Run("generated ids differ", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		a := e.do("GET", "/healthz", "").Header().Get("X-Request-ID")
		b := e.do("GET", "/healthz", "").Header().Get("X-Request-ID")
		if a == b {
			t.Errorf("two requests got the same generated id %q", a)
		}
	})
}

func TestRequestLogLine(t *testing.T) {
	const (
		customer = "cust-ops-91c2"
		dialogue = "dlg-ops-4d7e"
		text     = "canary-ops-8b1f my card number"
	)
	e := newEnv(t, envOptions{})
	for i, c := range []struct {
		method, target, body string
		route                string
		status               int
	}{
		{"POST", "/data/" + customer + "/" + dialogue, `{"text": "` + text + `", "language": "en"}`, "/data/:customerId/:dialogId", http.StatusAccepted},
		{"POST", "/data/" + customer + "/" + dialogue, `{"text": "` + text + `", "language": "not a tag"}`, "/data/:customerId/:dialogId", http.StatusBadRequest},
		{"POST", "/consents/" + dialogue, `true`, "/consents/:dialogId", http.StatusOK},
		{"GET", "/data?customerId=" + customer, "", "/data", http.StatusOK},
		{"GET", "/consents/" + dialogue, "", "/consents/:dialogId", http.StatusOK},
		{"DELETE", "/customers/" + customer + "/data", "", "/customers/:customerId/data", http.StatusOK},
		{"GET", "/nope/" + customer, "", "unmatched", http.StatusNotFound},
	} {
		id := fmt.Sprintf("req-log-%d", i)
		w := e.do(c.method, c.target, c.body, "X-Request-ID", id)
		if w.Code != c.status {
			t.Fatalf("%s %s: got status %d, want %d; body %s", c.method, c.target, w.Code, c.status, w.Body)
		}
		l := requestLine(t, e, id)
		for _, f := range []struct {
			key  string
			want any
		}{
			{"method", c.method},
			{"route", c.route},
			{"status", float64(c.status)},
			{"level", "INFO"},
		} {
			if got := l[f.key]; got != f.want {
				t.Errorf("%s %s log line %s: got %v, want %v", c.method, c.target, f.key, got, f.want)
			}
		}
		if latency, ok := l["latency"].(float64); !ok || latency < 0 {
			t.Errorf("%s %s log line latency: got %v, want a duration", c.method, c.target, l["latency"])
		}
		line, _ := json.Marshal(l)
		for _, s := range []string{customer, dialogue, text, "canary-ops"} {
			if strings.Contains(string(line), s) {
				t.Errorf("%s %s log line %s holds %q", c.method, c.target, line, s)
			}
		}
	}
	for _, s := range []string{customer, dialogue, "canary-ops"} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("the log holds %q:\n%s", s, e.logs)
		}
	}
}

// panicsOnIngest panics with the message text, as a careless bug would.
type panicsOnIngest struct{ api.Dialogues }

func (panicsOnIngest) Ingest(_ context.Context, m model.Message) (int, error) {
	panic(fmt.Sprintf("boom %s", m.Text))
}

func TestPanicBecomesAProblem(t *testing.T) {
	const text = "canary-panic-2c7d do not log me"
	e := newEnv(t, envOptions{wrap: func(d api.Dialogues) api.Dialogues { return panicsOnIngest{d} }})
	w := e.do("POST", "/data/cust-panic/dlg-panic", `{"text": "`+text+`", "language": "en"}`, "X-Request-ID", "req-panic")
	p := wantProblem(t, w, http.StatusInternalServerError)
	if got, want := p["type"], "urn:data-api:problem:internal"; got != want {
		t.Errorf("problem type: got %v, want %v", got, want)
	}
	for _, s := range []string{"boom", "canary-panic", "goroutine", "panic", ".go:"} {
		if strings.Contains(w.Body.String(), s) {
			t.Errorf("500 body %s holds %q", w.Body, s)
		}
	}

	var panicked bool
	for _, l := range logLines(t, e, 0) {
		if l["msg"] == "handler panicked" {
			panicked = true
			if got, want := l["request_id"], "req-panic"; got != want {
				t.Errorf("panic log line request_id: got %v, want %v", got, want)
			}
			if got, want := l["route"], "/data/:customerId/:dialogId"; got != want {
				t.Errorf("panic log line route: got %v, want %v", got, want)
			}
		}
	}
	if !panicked {
		t.Errorf("no log line tells of the panic:\n%s", e.logs)
	}
	l := requestLine(t, e, "req-panic")
	if got, want := l["status"], float64(http.StatusInternalServerError); got != want {
		t.Errorf("request log line status: got %v, want %v", got, want)
	}
	for _, s := range []string{"canary-panic", "boom"} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("the log holds %q:\n%s", s, e.logs)
		}
	}

	if w := e.do("GET", "/healthz", ""); w.Code != http.StatusOK {
		t.Errorf("GET /healthz after a panic: got status %d, want 200", w.Code)
	}
}

func TestPanicIsCounted(t *testing.T) {
	e := newEnv(t, envOptions{wrap: func(d api.Dialogues) api.Dialogues { return panicsOnIngest{d} }})
	e.do("POST", "/data/c/d", `{"text": "x", "language": "en"}`)
	families, _ := scrape(t, e)
	got, _ := sample(families, "data_api_http_request_duration_seconds", "route", "/data/:customerId/:dialogId", "method", "POST", "status", "500")
	if got != 1 {
		t.Errorf(`data_api_http_request_duration_seconds_count{route="/data/:customerId/:dialogId",method="POST",status="500"}: got %v, want 1`, got)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t, envOptions{config: withKeys(key("k", "admin"))})
	for _, c := range []struct {
		method, target string
		status         int
		typ            string
		allow          string
	}{
		{"GET", "/nope", http.StatusNotFound, "no-such-route", ""},
		{"GET", "/data/c1", http.StatusNotFound, "no-such-route", ""},
		{"GET", "/data/c1/d1/extra", http.StatusNotFound, "no-such-route", ""},
		{"GET", "/healthz/", http.StatusNotFound, "no-such-route", ""},
		{"PUT", "/data", http.StatusMethodNotAllowed, "method-not-allowed", "GET, HEAD"},
		{"POST", "/data", http.StatusMethodNotAllowed, "method-not-allowed", "GET, HEAD"},
		{"DELETE", "/data/export", http.StatusMethodNotAllowed, "method-not-allowed", "GET, HEAD"},
		{"GET", "/data/c1/d1", http.StatusMethodNotAllowed, "method-not-allowed", "POST"},
		{"DELETE", "/consents/d1", http.StatusMethodNotAllowed, "method-not-allowed", "GET, HEAD, POST"},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "method-not-allowed", "GET, HEAD"},
		{"PUT", "/customers/c1/data", http.StatusMethodNotAllowed, "method-not-allowed", "GET, HEAD, DELETE"},
		{"HEAD", "/data/c1/d1", http.StatusMethodNotAllowed, "method-not-allowed", "POST"},
	} {
		// No key: an unknown route says so before asking for one.
		w := e.do(c.method, c.target, "")
		p := wantProblem(t, w, c.status)
		if got, want := p["type"], "urn:data-api:problem:"+c.typ; got != want {
			t.Errorf("%s %s problem type: got %v, want %v", c.method, c.target, got, want)
		}
		if got := w.Header().Get("Allow"); !sameMethods(got, c.allow) {
			t.Errorf("%s %s Allow: got %q, want %q", c.method, c.target, got, c.allow)
		}
	}
}

// sameMethods compares two comma-separated method lists in any order.
func sameMethods(a, b string) bool {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				m[f] = true
			}
		}
		return m
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for k := range sa {
		if !sb[k] {
			return false
		}
	}
	return true
}
