package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/data-api/data-api/config"
)

func TestRoles(t *testing.T) {
	keys := []config.Key{
		key("bot", "ingest"),
		key("analyst", "analyst"),
		key("dpo", "admin"),
		key("all", "ingest", "analyst", "admin"),
	}
	endpoints := []struct {
		method, path, body string
		role               string // "" = open to anyone
		ok                 int
	}{
		{"POST", "/data/c/d", `{"text": "hi", "language": "en"}`, "ingest", 202},
		{"POST", "/consents/d", "false", "ingest", 200},
		{"GET", "/data", "", "analyst", 200},
		{"GET", "/data/", "", "analyst", 200},
		{"GET", "/data/export", "", "analyst", 200},
		{"GET", "/consents/d", "", "analyst", 200},
		{"DELETE", "/customers/c/data", "", "admin", 200},
		{"GET", "/metrics", "", "any", 200},
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/openapi.json", "", "", 200},
	}
	e := newEnv(t, envOptions{config: withKeys(keys...)})
	for _, ep := range endpoints {
		for _, k := range append(keys, config.Key{Name: "nobody"}) {
			allowed := ep.role == "" || ep.role == "any" && k.Roles != nil || slices.Contains(k.Roles, ep.role)
			auth := "Bearer " + secret(k.Name)
			w := e.do(ep.method, ep.path, ep.body, "Authorization", auth)
			switch {
			case allowed && w.Code != ep.ok:
				t.Errorf("%s %s with key %s: %d, want %d; %s", ep.method, ep.path, k.Name, w.Code, ep.ok, w.Body)
			case !allowed && k.Roles == nil:
				wantProblem(t, w, 401, "not known")
			case !allowed:
				wantProblem(t, w, 403, k.Name, ep.role)
			}
		}
		if ep.role == "" {
			continue
		}
		for _, header := range []string{"", "Bearer", "Bearer ", "Basic " + secret("all"), secret("all"), "Bearer " + secret("all") + "x"} {
			w := e.do(ep.method, ep.path, ep.body, "Authorization", header)
			wantProblem(t, w, 401)
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
		}
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	e := newEnv(t, envOptions{config: withKeys(key("bot", "ingest"))})
	w := e.do("POST", "/consents/d", "false", "Authorization", "bearer "+secret("bot"))
	if w.Code != http.StatusOK {
		t.Fatalf("lower-case scheme: %d %s", w.Code, w.Body)
	}
}

func TestLedgerNamesTheKey(t *testing.T) {
	keys := []config.Key{key("bot", "ingest"), key("analyst", "analyst")}
	e := newEnv(t, envOptions{config: withKeys(keys...)})
	bot := []string{"Authorization", "Bearer " + secret("bot")}
	if w := e.do("POST", "/data/c/d", `{"text": "hi", "language": "en"}`, bot...); w.Code != 202 {
		t.Fatal(w.Code)
	}
	if w := e.do("POST", "/consents/d", "true", bot...); w.Code != 200 {
		t.Fatal(w.Code)
	}
	d, err := e.svc.Decision(t.Context(), "d")
	if err != nil || d.KeyName != "bot" {
		t.Fatalf("ledger entry %+v, %v; want key bot", d, err)
	}
}
