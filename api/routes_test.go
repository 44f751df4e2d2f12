package api_test

import (
	"net/http"
	"testing"
)

// TestIDsWithAnEncodedSlashOrEmpty: an id holding an encoded "/" or an empty
// id segment is a 400 naming the parameter, after the route's own
// authentication, never a 404 no-such-route (which a generated client reads
// as "no decision recorded") and never another route: an encoded "/" is not
// a separator.
func TestIDsWithAnEncodedSlashOrEmpty(t *testing.T) {
	e := newEnv(t, envOptions{config: withKeys(key("all", "ingest", "analyst", "admin"))})
	auth := []string{"Authorization", "Bearer " + secret("all")}
	msg := `{"text": "hi", "language": "en"}`
	if w := e.do("POST", "/data/a/d0", msg, auth...); w.Code != http.StatusAccepted {
		t.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	for _, c := range []struct {
		method, target, body string
		mentions             []string
	}{
		{"POST", "/data/a%2Fb/d1", msg, []string{"customerId"}},
		{"POST", "/data/c1/a%2fb", msg, []string{"dialogId"}},
		{"POST", "/consents/a%2Fb", "true", []string{"dialogId"}},
		{"GET", "/consents/a%2Fb", "", []string{"dialogId"}},
		{"DELETE", "/customers/a%2Fb/data", "", []string{"customerId"}},
		{"GET", "/consents/%2E%2E", "", []string{"dialogId"}},
		{"GET", "/consents/", "", []string{"dialogId", "1 to 128"}},
		{"POST", "/consents/", "false", []string{"dialogId"}},
		{"POST", "/data//d1", msg, []string{"customerId", "1 to 128"}},
		{"POST", "/data/c1/", msg, []string{"dialogId"}},
		{"POST", "/data//", msg, []string{"customerId", "dialogId"}},
		{"DELETE", "/customers//data", "", []string{"customerId"}},
	} {
		w := e.do(c.method, c.target, c.body, auth...)
		p := wantProblem(t, w, http.StatusBadRequest, c.mentions...)
		if p["type"] != "urn:data-api:problem:invalid-request" {
			t.Errorf("%s %s: type %v, want invalid-request", c.method, c.target, p["type"])
		}
	}
	// An encoded "/" never splits an id into two segments of another route.
	for _, c := range []struct{ method, target, body string }{
		{"POST", "/data/a%2Fb", msg},          // not ingestion for customer a, dialogue b
		{"DELETE", "/customers/a%2Fdata", ""}, // not erasure of customer a
		{"GET", "/consents/a/b", ""},
		{"GET", "/consents//d1", ""},
	} {
		wantProblem(t, e.do(c.method, c.target, c.body, auth...), http.StatusNotFound, "no endpoint")
	}
	if st := e.svc.Stats(); st.PendingDialogues != 1 || st.PendingMessages != 1 {
		t.Fatalf("a refused request changed the pending store: %+v", st)
	}
	// The route's own rules come first: no credential is a 401, as for any
	// other id; another method is a 405.
	wantProblem(t, e.do("GET", "/consents/", ""), http.StatusUnauthorized)
	wantProblem(t, e.do("POST", "/data//d1", msg, "Authorization", "Bearer "+secret("nobody")), http.StatusUnauthorized)
	w := e.do("PUT", "/consents/", "", auth...)
	wantProblem(t, w, http.StatusMethodNotAllowed)
	if got := w.Header().Get("Allow"); !sameMethods(got, "GET, POST") {
		t.Errorf("PUT /consents/ Allow: got %q, want GET, POST", got)
	}
}
