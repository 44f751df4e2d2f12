package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConsentBodies(t *testing.T) {
	for _, tc := range []struct {
		body    string
		consent bool
	}{
		{"true", true},
		{" true\n", true},
		{`{"consent": true}`, true},
		{"\t{ \"consent\" : true , \"note\": \"ignored\" }\r\n", true},
		{"false", false},
		{`{"consent":false}`, false},
	} {
		e := newEnv(t, envOptions{})
		e.post("c", "d", "hi", "en")
		w := e.do("POST", "/consents/d", tc.body)
		if w.Code != http.StatusOK {
			t.Fatalf("body %q: status %d, want 200; %s", tc.body, w.Code, w.Body)
		}
		if got := decode(t, w)["consent"]; got != tc.consent {
			t.Fatalf("body %q: consent %v, want %v", tc.body, got, tc.consent)
		}
	}
}

func TestConsentRejectsEverythingElse(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.post("c", "d", "hi", "en")
	for _, body := range []string{
		`"true"`, `1`, `0`, `null`, `{}`, `yes`, ``, `  `, `[true]`, `True`, `truex`, `true false`,
		`{"consent": null}`, `{"consent": "true"}`, `{"consent": 1}`, `{"Consent": true}`, `{"consent": true} x`,
	} {
		w := e.do("POST", "/consents/d", body)
		wantProblem(t, w, http.StatusBadRequest, "true or false")
	}
	wantProblem(t, e.do("POST", "/consents/bad$id", "true"), 400, "dialogId")
	wantProblem(t, e.do("POST", "/consents/d", "true"+strings.Repeat(" ", 70<<10)), 413)
	// A rejected request changes nothing: the dialogue is still pending.
	if st := e.svc.Stats(); st.PendingMessages != 1 {
		t.Fatalf("pending %d, want 1", st.PendingMessages)
	}
	if got := decode(t, e.do("POST", "/consents/d", "true")); got["storedMessages"] != 1.0 {
		t.Fatalf("consent after rejected bodies: %v", got)
	}
}

func TestConsentFlow(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.post("c1", "d1", "one", "en")
	e.post("c1", "d1", "two", "en")
	got := e.consent("d1", true)
	want := map[string]any{"dialogId": "d1", "customerId": "c1", "consent": true, "storedMessages": 2.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("consent: %s = %v, want %v", k, got[k], v)
		}
	}
	// A retried call answers 200 with nothing more stored.
	if got := e.consent("d1", true); got["storedMessages"] != 0.0 || got["customerId"] != "c1" {
		t.Fatalf("retried consent: %v", got)
	}
	// Never seen, or expired: 404 and nothing recorded.
	wantProblem(t, e.do("POST", "/consents/never", "true"), 404)
	wantProblem(t, e.do("GET", "/consents/never", ""), 404)
	e.post("c1", "expiring", "x", "en")
	e.clock.Advance(30 * time.Minute)
	wantProblem(t, e.do("POST", "/consents/expiring", "true"), 404)

	// After a decision the dialogue is closed: a new message starts anew.
	if w := e.do("POST", "/data/c1/d1", `{"text": "three", "language": "en"}`); decode(t, w)["pendingMessages"] != 1.0 {
		t.Fatalf("message after consent: %s", w.Body)
	}
	// Refusal drops the pending message and withdraws the stored ones.
	got = e.consent("d1", false)
	want = map[string]any{"dialogId": "d1", "customerId": "c1", "consent": false, "deletedMessages": 2.0, "droppedMessages": 1.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("refusal: %s = %v, want %v", k, got[k], v)
		}
	}
	if n := len(decode(t, e.do("GET", "/data", ""))["data"].([]any)); n != 0 {
		t.Fatalf("%d messages left after withdrawal", n)
	}
	// Idempotent, never 404, even for a dialogue never seen.
	for _, id := range []string{"d1", "never"} {
		if got := e.consent(id, false); got["deletedMessages"] != 0.0 {
			t.Fatalf("repeated refusal of %s: %v", id, got)
		}
	}
	// Proof of the latest decision.
	w := e.do("GET", "/consents/d1", "")
	if w.Code != 200 {
		t.Fatalf("GET /consents/d1: %d %s", w.Code, w.Body)
	}
	got = decode(t, w)
	want = map[string]any{"dialogId": "d1", "customerId": "c1", "consent": false, "messages": 0.0,
		"decidedAt": "2026-11-26T22:06:04.123456789Z"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("GET /consents/d1: %s = %v, want %v", k, got[k], v)
		}
	}
	wantProblem(t, e.do("GET", "/consents/d1?verbose=1", ""), 400, "verbose")
}

// TestConsentRefusesAmbiguousBodies: a body that names the decision twice, in
// any spelling, is a 400 that changes nothing, whichever value comes last;
// encoding/json alone would let the last one win and match any case.
func TestConsentRefusesAmbiguousBodies(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.post("c", "d", "hi", "en")
	for _, tc := range []struct{ body, mention string }{
		{`{"consent":true,"consent":false}`, "twice"},
		{`{"consent":false,"consent":true}`, "twice"},
		{`{"consent":true,"consent":true}`, "twice"},
		{`{"consent":true,"Consent":false}`, `did you mean \"consent\"`},
		{`{"Consent":false,"consent":true}`, `did you mean \"consent\"`},
		{`{"CONSENT":true}`, `did you mean \"consent\"`},
		{`{"CONSENT":false}`, `did you mean \"consent\"`},
		{"{\"con\u017fent\":false}", `did you mean \"consent\"`}, // ſ folds to s
		{`{"consent":true,"note":1,"note":2}`, "twice"},
	} {
		w := e.do("POST", "/consents/d", tc.body)
		wantProblem(t, w, http.StatusBadRequest, tc.mention)
	}
	// Nothing changed: no decision recorded, the dialogue still pending.
	wantProblem(t, e.do("GET", "/consents/d", ""), http.StatusNotFound)
	if st := e.svc.Stats(); st.PendingMessages != 1 || st.ConsentsFalse+st.ConsentsTrue != 0 {
		t.Fatalf("after ambiguous bodies: %+v", st)
	}
	// Unknown members other than a spelling of consent stay ignored.
	if got := decode(t, e.do("POST", "/consents/d", `{"consent":true,"note":"x","Notes":1,"NOTE":2}`)); got["storedMessages"] != 1.0 {
		t.Fatalf("consent with unknown members: %v", got)
	}
}
