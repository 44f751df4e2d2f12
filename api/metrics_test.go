package api_test

import (
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/data-api/data-api/config"
)

// scrape gets /metrics and parses the exposition.
func scrape(t *testing.T, e *testEnv, headers ...string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	w := e.do("GET", "/metrics", "", headers...)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: got status %d, want 200; body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics Content-Type: got %q, want text/plain", ct)
	}
	body := w.Body.String()
	p := expfmt.NewTextParser(promodel.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse the exposition: %v\n%s", err, body)
	}
	return families, body
}

// sample finds the sample of family name whose labels include labels (name,
// value pairs) and returns its value: a gauge's or counter's value, a
// histogram's count.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := families[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsAfterAFlow(t *testing.T) {
	const (
		custA  = "cust-metrics-7f3a"
		custB  = "cust-metrics-b2c9"
		canary = "canary-5e1d"
	)
	dlg := func(s string) string { return "dlg-metrics-" + s }
	e := newEnv(t, envOptions{config: func(c *config.Config) {
		c.Dialogues.MaxMessages, c.Dialogues.MaxPending, c.Dialogues.TTL = 3, 3, 30*time.Minute
	}})
	text := func(i int) string { return "secret text " + canary + " number " + string(rune('a'+i)) }
	var n int
	post := func(cust, d string, status int) {
		t.Helper()
		body := `{"text": "` + text(n) + `", "language": "en"}`
		n++
		if w := e.do("POST", "/data/"+cust+"/"+d, body); w.Code != status {
			t.Fatalf("POST /data/%s/%s: got status %d, want %d; body %s", cust, d, w.Code, status, w.Body)
		}
	}

	for range 3 {
		post(custA, dlg("a1"), http.StatusAccepted)
	}
	post(custA, dlg("a1"), http.StatusUnprocessableEntity) // max_messages
	e.consent(dlg("a1"), true)                             // stores 3

	post(custB, dlg("b2"), http.StatusAccepted)
	post(custB, dlg("b2"), http.StatusAccepted)
	e.consent(dlg("b2"), true)  // stores 2
	e.consent(dlg("b2"), false) // withdraws 2

	post(custB, dlg("b3"), http.StatusAccepted)
	e.clock.Advance(20 * time.Minute)
	post(custB, dlg("b4"), http.StatusAccepted)
	post(custB, dlg("b4"), http.StatusAccepted)
	post(custA, dlg("a5"), http.StatusAccepted)
	post(custB, dlg("b6"), http.StatusServiceUnavailable) // max_pending: b3, b4, a5 are pending

	if w := e.do("DELETE", "/customers/"+custA+"/data", ""); w.Code != http.StatusOK {
		t.Fatalf("DELETE /customers/%s/data: got status %d, want 200; body %s", custA, w.Code, w.Body)
	} // drops a5, erases a1's 3 messages

	e.clock.Advance(15 * time.Minute) // b3 idle for 35m, b4 for 15m
	e.svc.Sweep(t.Context())

	for _, target := range []string{"/data?customerId=" + custB, "/consents/" + dlg("b2"), "/nope/" + custA + "/" + dlg("a1")} {
		e.do("GET", target, "")
	}

	families, body := scrape(t, e)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"data_api_pending_dialogues", nil, 1},
		{"data_api_pending_messages", nil, 2},
		{"data_api_pending_evictions_total", []string{"cause", "ttl"}, 1},
		{"data_api_pending_evictions_total", []string{"cause", "erasure"}, 1},
		{"data_api_pending_evictions_total", []string{"cause", "failover"}, 0},
		{"data_api_ingest_rejections_total", []string{"cause", "max_pending"}, 1},
		{"data_api_ingest_rejections_total", []string{"cause", "max_messages"}, 1},
		{"data_api_consents_total", []string{"decision", "true"}, 2},
		{"data_api_consents_total", []string{"decision", "false"}, 1},
		{"data_api_messages_stored_total", nil, 5},
		{"data_api_messages_deleted_total", []string{"cause", "withdrawal"}, 2},
		{"data_api_messages_deleted_total", []string{"cause", "erasure"}, 3},
		{"data_api_messages_deleted_total", []string{"cause", "retention"}, 0},
		{"data_api_http_request_duration_seconds", []string{"route", "/data/:customerId/:dialogId", "method", "POST", "status", "202"}, 9},
		{"data_api_http_request_duration_seconds", []string{"route", "/data/:customerId/:dialogId", "method", "POST", "status", "422"}, 1},
		{"data_api_http_request_duration_seconds", []string{"route", "/data/:customerId/:dialogId", "method", "POST", "status", "503"}, 1},
		{"data_api_http_request_duration_seconds", []string{"route", "/consents/:dialogId", "method", "POST", "status", "200"}, 3},
		{"data_api_http_request_duration_seconds", []string{"route", "/customers/:customerId/data", "method", "DELETE", "status", "200"}, 1},
		{"data_api_http_request_duration_seconds", []string{"route", "/data", "method", "GET", "status", "200"}, 1},
		{"data_api_http_request_duration_seconds", []string{"route", "/consents/:dialogId", "method", "GET", "status", "200"}, 1},
		{"data_api_http_request_duration_seconds", []string{"route", "unmatched", "method", "GET", "status", "404"}, 1},
		{"data_api_db_write_duration_seconds", []string{"op", "withdraw"}, 1},
		{"data_api_db_write_duration_seconds", []string{"op", "erase"}, 1},
	} {
		got, ok := sample(families, c.name, c.labels...)
		if !ok {
			t.Errorf("%s%v: missing from the exposition", c.name, c.labels)
			continue
		}
		if got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got, _ := sample(families, "data_api_db_write_duration_seconds", "op", "consent"); got < 1 {
		t.Errorf(`data_api_db_write_duration_seconds_count{op="consent"}: got %v, want > 0`, got)
	}
	for _, name := range []string{"go_goroutines", "go_sched_latencies_seconds"} {
		if _, ok := families[name]; !ok {
			t.Errorf("%s: missing from the exposition", name)
		}
	}
	if !slices.ContainsFunc(slices.Collect(maps.Keys(families)), func(name string) bool { return strings.HasPrefix(name, "process_") }) {
		t.Error("process_*: missing from the exposition")
	}

	// Nothing the flow sent may show in a label, nor anywhere else.
	secrets := []string{custA, custB, canary, "dlg-metrics", "secret text"}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, s := range secrets {
					if strings.Contains(l.GetValue(), s) {
						t.Errorf("%s{%s=%q}: the label value holds %q, which the flow sent", mf.GetName(), l.GetName(), l.GetValue(), s)
					}
				}
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("the exposition holds %q, which the flow sent", s)
		}
	}
}

func TestMetricsAuthentication(t *testing.T) {
	keys := []config.Key{key("chatbot", "ingest"), key("analyst", "analyst")}
	auth := func(name string) []string { return []string{"Authorization", "Bearer " + secret(name)} }
	for _, c := range []struct {
		name    string
		open    bool
		headers []string
		want    int
	}{
		{"no key", false, nil, http.StatusUnauthorized},
		{"unknown key", false, []string{"Authorization", "Bearer not-a-key"}, http.StatusUnauthorized},
		{"ingest key", false, auth("chatbot"), http.StatusOK},
		{"analyst key", false, auth("analyst"), http.StatusOK},
		{"no key, metrics open", true, nil, http.StatusOK},
		{"key, metrics open", true, auth("analyst"), http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: func(cfg *config.Config) { cfg.Auth.Keys, cfg.Auth.MetricsOpen = keys, c.open }})
			w := e.do("GET", "/metrics", "", c.headers...)
			if w.Code != c.want {
				t.Fatalf("GET /metrics: got status %d, want %d; body %s", w.Code, c.want, w.Body)
			}
			if c.want == http.StatusUnauthorized {
				wantProblem(t, w, http.StatusUnauthorized)
				if got := w.Header().Get("WWW-Authenticate"); got == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if !strings.Contains(w.Body.String(), "data_api_pending_dialogues") {
				t.Errorf("GET /metrics: got a body without data_api_pending_dialogues")
			}
		})
	}
	t.Run("other endpoints stay closed when metrics are open", func(t *testing.T) {
		e := newEnv(t, envOptions{config: func(cfg *config.Config) { cfg.Auth.Keys, cfg.Auth.MetricsOpen = keys, true }})
		wantProblem(t, e.do("GET", "/data", ""), http.StatusUnauthorized)
	})
}

// TestMetricsForAlertRules checks the metrics that the alert rules read:
// readiness, the pending store's caps, write failures by operation, and the
// 7.5 ms bucket of the latency histograms.
// TestMetricsOldestMessage: the oldest stored message's time and
// retention.max_age are exported, for the alert that retention keeps up; the
// time follows the purge, and is absent while nothing is stored.
func TestMetricsOldestMessage(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Retention.MaxAge = 24 * time.Hour }})
	families, _ := scrape(t, e)
	if got, ok := sample(families, "data_api_retention_max_age_seconds"); !ok || got != 86400 {
		t.Errorf("data_api_retention_max_age_seconds: got %v (present %v), want 86400", got, ok)
	}
	if got, ok := sample(families, "data_api_oldest_message_timestamp_seconds"); ok {
		t.Errorf("with nothing stored, data_api_oldest_message_timestamp_seconds is %v, want absent", got)
	}
	first := e.clock.Now()
	e.post("c1", "d1", "text", "en")
	e.consent("d1", true)
	e.clock.Advance(time.Hour)
	second := e.clock.Now()
	e.post("c1", "d2", "text", "en")
	e.consent("d2", true)
	oldest := func(want time.Time) {
		t.Helper()
		families, _ := scrape(t, e)
		got, ok := sample(families, "data_api_oldest_message_timestamp_seconds")
		if w := float64(want.UnixNano()) / 1e9; !ok || math.Abs(got-w) > 1e-6 {
			t.Errorf("data_api_oldest_message_timestamp_seconds: got %v (present %v), want %v", got, ok, w)
		}
	}
	oldest(first)
	e.clock.Advance(24 * time.Hour) // d1 is past max_age, d2 is not
	e.svc.Purge(t.Context())
	oldest(second)
}

func TestMetricsForAlertRules(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) {
		c.Dialogues.MaxPending, c.Dialogues.MaxBytes = 1234, 56789
		c.Retention.MaxAge = 24 * time.Hour // the purge runs when told
	}})
	e.post("c1", "d1", "text", "en")
	e.consent("d1", true)
	families, _ := scrape(t, e)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"data_api_ready", nil, 1},
		{"data_api_pending_dialogues_limit", nil, 1234},
		{"data_api_pending_bytes_limit", nil, 56789},
		{"data_api_db_write_failures_total", []string{"op", "consent"}, 0},
		{"data_api_db_write_failures_total", []string{"op", "withdraw"}, 0},
		{"data_api_db_write_failures_total", []string{"op", "erase"}, 0},
		{"data_api_db_write_failures_total", []string{"op", "retention"}, 0},
	} {
		if got, ok := sample(families, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("before the outage, %s%v: got %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"data_api_http_request_duration_seconds", "data_api_db_write_duration_seconds"} {
		mf := families[name]
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Fatalf("%s: missing", name)
		}
		if !slices.ContainsFunc(mf.GetMetric()[0].GetHistogram().GetBucket(), func(b *dto.Bucket) bool { return b.GetUpperBound() == 0.0075 }) {
			t.Errorf("%s: no bucket le=0.0075", name)
		}
	}

	// The database goes away: every kind of write fails once.
	e.post("c1", "d2", "text", "en")
	e.post("c1", "d3", "text", "en")
	e.db.Close()
	for _, r := range []struct{ method, target, body string }{
		{"POST", "/consents/d2", "true"},
		{"POST", "/consents/d3", "false"},
		{"DELETE", "/customers/c2/data", ""},
	} {
		if w := e.do(r.method, r.target, r.body); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with the database closed: got %d %s, want 503", r.method, r.target, w.Code, w.Body)
		}
	}
	e.svc.Purge(t.Context())
	families, _ = scrape(t, e)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"data_api_ready", nil, 0},
		{"data_api_db_write_failures_total", []string{"op", "consent"}, 1},
		{"data_api_db_write_failures_total", []string{"op", "withdraw"}, 1},
		{"data_api_db_write_failures_total", []string{"op", "erase"}, 1},
		{"data_api_db_write_failures_total", []string{"op", "retention"}, 1},
	} {
		if got, ok := sample(families, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("with the database closed, %s%v: got %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	t.Run("draining", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.handler.Drain()
		families, _ := scrape(t, e)
		if got, ok := sample(families, "data_api_ready"); !ok || got != 0 {
			t.Errorf("data_api_ready while draining: got %v (present %v), want 0", got, ok)
		}
	})
}
