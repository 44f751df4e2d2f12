package api_test

import (
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/model"
)

// The fuzz targets send what they are given through the real router and
// check what a client relies on: no input is a 5xx; a rejected one is a 400
// (or 413) problem that changed nothing; an accepted one reached the
// service meaning what any JSON parser reads in it. Their seeds are in
// testdata/fuzz; go test runs them every time (README: running them longer).

// recorder is the service, remembering the last call it got.
type recorder struct {
	api.Dialogues
	ingested *model.Message
	decided  *bool
}

func (r *recorder) Ingest(ctx context.Context, m model.Message) (int, error) {
	r.ingested = &m
	return r.Dialogues.Ingest(ctx, m)
}

// Consent records the decision and answers as for a dialogue never seen,
// without the database: the fuzzer would spend its time in fsync.
func (r *recorder) Consent(_ context.Context, _ string, consent bool, _ string) (model.Outcome, error) {
	r.decided = &consent
	return model.Outcome{}, nil
}

// checkReply fails unless w is one of the statuses allowed, and a 4xx is a
// problem.
func checkReply(t *testing.T, w *httptest.ResponseRecorder, input any, allowed ...int) {
	t.Helper()
	ok := false
	for _, s := range allowed {
		ok = ok || w.Code == s
	}
	if !ok {
		t.Fatalf("%q: status %d, want one of %v; body %s", input, w.Code, allowed, w.Body)
	}
	if w.Code >= 400 {
		var p struct {
			Type, Title, Detail string
			Status              int
		}
		if w.Header().Get("Content-Type") != "application/problem+json" || json.Unmarshal(w.Body.Bytes(), &p) != nil ||
			p.Type == "" || p.Title == "" || p.Detail == "" || p.Status != w.Code {
			t.Fatalf("%q: %d is not a problem: %s", input, w.Code, w.Body)
		}
	}
}

// unambiguous reports whether body is valid JSON with no member named twice
// and, at the top level, no unknown member whose name is one of known in
// another case: what the service accepts.
func unambiguous(body []byte, known ...string) bool {
	if !jsontext.Value(body).IsValid() { // duplicates and invalid UTF-8 included
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return true // not an object
	}
	for name := range top {
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return false
			}
		}
	}
	return true
}

func FuzzIngestBody(f *testing.F) {
	rec := &recorder{}
	e := newEnv(f, envOptions{wrap: func(d api.Dialogues) api.Dialogues { rec.Dialogues = d; return rec }})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec.ingested = nil
		before := e.svc.Stats().PendingMessages
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, httptest.NewRequest("POST", "/data/c/d", strings.NewReader(string(body))))
		checkReply(t, w, body, http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		after := e.svc.Stats().PendingMessages
		if w.Code != http.StatusAccepted {
			if after != before {
				t.Fatalf("%q: refused with %d, yet pending messages went from %d to %d", body, w.Code, before, after)
			}
			return
		}
		// Accepted: what the service got is what the body says.
		var v struct{ Text, Language *string }
		if err := json.Unmarshal(body, &v); err != nil || v.Text == nil || v.Language == nil || !unambiguous(body, "text", "language") {
			t.Fatalf("%q: accepted, yet it is not an unambiguous object with text and language (%v)", body, err)
		}
		if m := rec.ingested; m == nil || m.Text != *v.Text || m.Language != *v.Language {
			t.Fatalf("%q: the service got %+v, want text %q, language %q", body, rec.ingested, *v.Text, *v.Language)
		}
		if after != before+1 {
			t.Fatalf("%q: accepted, yet pending messages went from %d to %d", body, before, after)
		}
		// The dialogue expires and is reclaimed: the next input starts afresh.
		e.clock.Advance(31 * time.Minute)
		e.svc.Sweep(t.Context())
	})
}

func FuzzConsentBody(f *testing.F) {
	rec := &recorder{}
	e := newEnv(f, envOptions{wrap: func(d api.Dialogues) api.Dialogues { rec.Dialogues = d; return rec }})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec.decided = nil
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, httptest.NewRequest("POST", "/consents/d", strings.NewReader(string(body))))
		checkReply(t, w, body, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		if w.Code != http.StatusOK {
			if rec.decided != nil {
				t.Fatalf("%q: refused with %d, yet the service was asked to decide", body, w.Code)
			}
			return
		}
		// Accepted: the literal true or false, or an object whose consent
		// member is one, named once and in no other spelling.
		var literal any
		var obj struct{ Consent *bool }
		var want bool
		switch {
		case json.Unmarshal(body, &literal) == nil && literal != nil && !isObject(literal):
			b, ok := literal.(bool)
			if !ok {
				t.Fatalf("%q: accepted, yet it is a JSON %T", body, literal)
			}
			want = b
		case json.Unmarshal(body, &obj) == nil && obj.Consent != nil && unambiguous(body, "consent"):
			var exact map[string]json.RawMessage
			_ = json.Unmarshal(body, &exact)
			if _, ok := exact["consent"]; !ok {
				t.Fatalf("%q: accepted without a member named exactly consent", body)
			}
			want = *obj.Consent
		default:
			t.Fatalf("%q: accepted, yet it is neither a boolean nor an unambiguous {\"consent\": boolean}", body)
		}
		if rec.decided == nil || *rec.decided != want {
			t.Fatalf("%q: the service was asked to decide %v, want %v", body, rec.decided, want)
		}
	})
}

func isObject(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

func FuzzPathID(f *testing.F) {
	e := newEnv(f, envOptions{})
	f.Fuzz(func(t *testing.T, id string) {
		target := "/consents/" + url.PathEscape(id)
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		if model.ValidateID(id) != nil {
			checkReply(t, w, target, http.StatusBadRequest)
			if !strings.Contains(w.Body.String(), "dialogId") {
				t.Fatalf("%q: the 400 does not name dialogId: %s", target, w.Body)
			}
			return
		}
		checkReply(t, w, target, http.StatusNotFound)
		if !strings.Contains(w.Body.String(), "urn:data-api:problem:not-found") {
			t.Fatalf("%q: want not-found (no decision), got %s", target, w.Body)
		}
	})
}
