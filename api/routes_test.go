package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/data-api/data-api/api"
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
	// Every route with ids, whoever added it: an empty id or an encoded "/"
	// is a 400 (without a body, a POST may name the body first).
	for _, r := range api.Routes(e.handler) {
		for _, param := range ginParam.FindAllStringSubmatch(r.Path, -1) {
			for _, value := range []string{"", "a%2Fb"} {
				target := strings.Replace(ginParam.ReplaceAllStringFunc(r.Path, func(p string) string {
					if p == param[0] {
						return "{}"
					}
					return "x1"
				}), "{}", value, 1)
				mention := param[1]
				if r.Method == "POST" {
					mention = "invalid-request"
				}
				wantProblem(t, e.do(r.Method, target, "", auth...), http.StatusBadRequest, mention)
			}
		}
	}
	// The route's own rules come first: no credential is a 401, as for any
	// other id; another method is a 405.
	wantProblem(t, e.do("GET", "/consents/", ""), http.StatusUnauthorized)
	wantProblem(t, e.do("POST", "/data//d1", msg, "Authorization", "Bearer "+secret("nobody")), http.StatusUnauthorized)
	w := e.do("PUT", "/consents/", "", auth...)
	wantProblem(t, w, http.StatusMethodNotAllowed)
	if got := w.Header().Get("Allow"); !sameMethods(got, "GET, HEAD, POST") {
		t.Errorf("PUT /consents/ Allow: got %q, want GET, HEAD, POST", got)
	}
}

// TestHeadWhereverGet: every route that answers GET answers HEAD with the
// same status and headers and no body, over a real server, errors included.
func TestHeadWhereverGet(t *testing.T) {
	e := newEnv(t, envOptions{config: withKeys(key("all", "ingest", "analyst", "admin"))})
	auth := "Bearer " + secret("all")
	if w := e.do("POST", "/data/c1/d1", `{"text": "hi", "language": "en"}`, "Authorization", auth); w.Code != http.StatusAccepted {
		t.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	if w := e.do("POST", "/consents/d1", "true", "Authorization", auth); w.Code != http.StatusOK {
		t.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	srv := httptest.NewServer(e.handler)
	t.Cleanup(srv.Close)

	send := func(method, target, credential string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-ID", "head-test")
		req.Header.Set("Accept-Encoding", "identity") // the client asks GET, not HEAD, for gzip
		if credential != "" {
			req.Header.Set("Authorization", credential)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	targets := []struct{ target, credential string }{
		{"/consents/nobody", auth}, // 404
		{"/data?limit=0", auth},    // 400
		{"/data", ""},              // 401
		{"/consents/", auth},       // an empty id: 400
		{"/data/export", auth},     // a stream of one row
		{"/data/export?language=de", auth},
		{"/customers/c1/data", auth}, // a right-of-access document
	}
	get := 0
	for _, r := range api.Routes(e.handler) {
		if r.Method == "GET" {
			get++
			targets = append(targets, struct{ target, credential string }{ginParam.ReplaceAllString(r.Path, "d1"), auth})
		}
	}
	if get < 8 {
		t.Fatalf("only %d GET routes", get)
	}
	for _, tc := range targets {
		g, gBody := send("GET", tc.target, tc.credential)
		h, hBody := send("HEAD", tc.target, tc.credential)
		if h.StatusCode != g.StatusCode || len(hBody) != 0 {
			t.Errorf("HEAD %s: %d with %d bytes of body; GET: %d", tc.target, h.StatusCode, len(hBody), g.StatusCode)
			continue
		}
		// An empty export, and the right of access of a customer with
		// nothing stored (d1), have no body.
		if len(gBody) == 0 && tc.target != "/data/export?language=de" && tc.target != "/customers/d1/data" {
			t.Errorf("GET %s: no body", tc.target)
		}
		for name := range mergeKeys(g.Header, h.Header) {
			if name == "Date" {
				continue
			}
			if name == "Content-Length" && h.Header.Get(name) == "" && g.ContentLength == 0 {
				continue // an empty export's length is known only once it ran
			}
			if gv, hv := g.Header.Values(name), h.Header.Values(name); !slices.Equal(gv, hv) {
				t.Errorf("%s: header %s: GET %q, HEAD %q", tc.target, name, gv, hv)
			}
		}
	}
}

func mergeKeys(a, b http.Header) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}
