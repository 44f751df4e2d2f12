package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/data-api/data-api/config"
)

// TestCrossSiteRequestsAreRefused: a page in a browser that can reach the
// service must not withdraw a consent with fetch(url, {method: "POST",
// mode: "no-cors", body: "false"}), a request sent without a preflight; no
// legitimate caller is a web page, so any Origin not allowed, and any
// request another site made, is a 403 before anything else.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{}) // no credentials: nothing else stands in the way
	e.post("c", "d", "hi", "en")
	for _, c := range []struct {
		method, target, body string
		headers              []string
	}{
		{"POST", "/consents/d", "false", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}},
		{"POST", "/consents/d", "false", []string{"Origin", "https://evil.example"}}, // an older browser
		{"POST", "/consents/d", "false", []string{"Origin", "null"}},                 // a sandboxed frame, a file
		{"POST", "/consents/d", "false", []string{"Origin", "http://example.com"}},   // the service's own origin is no exception
		{"POST", "/consents/d", "false", []string{"Sec-Fetch-Site", "cross-site"}},
		{"POST", "/consents/d", "false", []string{"Sec-Fetch-Site", "same-site"}}, // another origin of the same site
		{"GET", "/data/export", "", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"}},
		{"DELETE", "/customers/c/data", "", []string{"Origin", "https://evil.example"}},
		{"GET", "/healthz", "", []string{"Origin", "https://evil.example"}},
		{"GET", "/nowhere", "", []string{"Origin", "https://evil.example"}},
		{"OPTIONS", "/consents/d", "", []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "POST"}},
	} {
		w := e.do(c.method, c.target, c.body, c.headers...)
		p := wantProblem(t, w, http.StatusForbidden, "server.allowed_origins")
		if p["type"] != "urn:data-api:problem:forbidden" {
			t.Errorf("%s %s %v: type %v", c.method, c.target, c.headers, p["type"])
		}
		if h := w.Header().Get("Access-Control-Allow-Origin"); h != "" {
			t.Errorf("%s %s %v: Access-Control-Allow-Origin %q", c.method, c.target, c.headers, h)
		}
	}
	if st := e.svc.Stats(); st.PendingMessages != 1 || st.ConsentsFalse != 0 {
		t.Fatalf("a cross-site request changed something: %+v", st)
	}
	// A browser's own navigation (an operator opening a URL) and any
	// non-browser client pass.
	for _, h := range [][]string{nil, {"Sec-Fetch-Site", "none"}, {"Sec-Fetch-Site", "same-origin"}} {
		if w := e.do("GET", "/healthz", "", h...); w.Code != http.StatusOK {
			t.Errorf("GET /healthz %v: %d %s", h, w.Code, w.Body)
		}
	}
}

// TestCrossSiteRefusalComesBeforeAuthentication: even with a valid key the
// request is refused, and without one it learns nothing about keys.
func TestCrossSiteRefusalComesBeforeAuthentication(t *testing.T) {
	e := newEnv(t, envOptions{config: withKeys(key("bot", "ingest"))})
	auth := "Bearer " + secret("bot")
	w := e.do("POST", "/consents/d", "false", "Origin", "https://evil.example", "Authorization", auth)
	wantProblem(t, w, http.StatusForbidden, "server.allowed_origins")
	w = e.do("POST", "/consents/d", "false", "Origin", "https://evil.example")
	wantProblem(t, w, http.StatusForbidden)
	if w.Header().Get("WWW-Authenticate") != "" {
		t.Fatal("a refused origin was asked for credentials")
	}
}

// TestAllowedOrigins: a page of an allowed origin may call the service (with
// its credential) and read the reply: CORS headers and preflight.
func TestAllowedOrigins(t *testing.T) {
	const console = "https://console.example.com"
	e := newEnv(t, envOptions{config: func(c *config.Config) {
		c.Auth.Keys = []config.Key{key("ana", "analyst")}
		c.Server.AllowedOrigins = []string{console, "http://localhost:3000"}
	}})
	pre := e.do("OPTIONS", "/data", "", "Origin", console, "Sec-Fetch-Site", "cross-site",
		"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
	if pre.Code != http.StatusNoContent {
		t.Fatalf("preflight: %d %s", pre.Code, pre.Body)
	}
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":  console,
		"Access-Control-Allow-Methods": "GET",
		"Access-Control-Allow-Headers": "Authorization",
		"Vary":                         "Origin",
	} {
		if got := pre.Header().Get(name); !strings.Contains(got, want) {
			t.Errorf("preflight %s: %q, want it to hold %q", name, got, want)
		}
	}
	w := e.do("GET", "/data", "", "Origin", console, "Sec-Fetch-Site", "cross-site", "Authorization", "Bearer "+secret("ana"))
	if w.Code != http.StatusOK || w.Header().Get("Access-Control-Allow-Origin") != console ||
		!strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "Link") {
		t.Fatalf("GET /data from %s: %d %v", console, w.Code, w.Header())
	}
	// Still authenticated: an allowed origin is not a credential.
	wantProblem(t, e.do("GET", "/data", "", "Origin", console), http.StatusUnauthorized)
	// Exact origins only: another scheme, port or subdomain is refused.
	for _, o := range []string{"http://console.example.com", "https://console.example.com:8443", "https://evil.console.example.com", "https://CONSOLE.example.com"} {
		wantProblem(t, e.do("GET", "/data", "", "Origin", o, "Authorization", "Bearer "+secret("ana")), http.StatusForbidden)
	}
	// A preflight for another method of a known path still answers; the
	// request itself gets what it gets without an Origin.
	if w := e.do("OPTIONS", "/nowhere", "", "Origin", console, "Access-Control-Request-Method", "GET"); w.Code != http.StatusNoContent {
		t.Fatalf("preflight of an unknown path: %d", w.Code)
	}
	// OPTIONS without a preflight's headers is what it was: a 405 or 404.
	wantProblem(t, e.do("OPTIONS", "/data", ""), http.StatusMethodNotAllowed)
}
