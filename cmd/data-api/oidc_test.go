package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
)

// TestRunWithAnIssuerThatIsDown starts the service with tokens of an
// OpenID Connect issuer that nobody serves, and no API keys: it starts,
// serves its probes, refuses every other request with 401 (never opens up
// for want of keys), and warns without a token in the log.
func TestRunWithAnIssuerThatIsDown(t *testing.T) {
	addr := freeAddr(t)
	issuer := "http://" + freeAddr(t) + "/realms/acme" // a port nobody listens on
	environ := []string{
		"DATA_API_SERVER_ADDR=" + addr,
		"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
		"DATA_API_AUTH_OIDC_ISSUER=" + issuer,
		"DATA_API_AUTH_OIDC_AUDIENCE=data-api",
		"DATA_API_AUTH_OIDC_ROLES_CLAIM=realm_access.roles",
		`DATA_API_AUTH_OIDC_ROLES_ANALYST=["data-analyst"]`,
	}
	logs := &fake.Log{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, environ, logs) }()
	inst := &instance{base: "http://" + addr}
	waitReady(t, inst.base, done)

	call(t, inst, "GET", "/data", "", 401)
	// A well-formed RS256 JWT; the service cannot fetch the keys to check it.
	const token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJUT0tFTi1TVUJKRUNULTkxZSJ9.c2lnbmF0dXJl"
	start := time.Now()
	got := callAs(t, inst, token, "GET", "/data", "", 401)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a token with the issuer down took %v", took)
	}
	if d, _ := got["detail"].(string); !strings.Contains(d, "could not be reached") {
		t.Errorf("detail %q does not say the identity provider could not be reached", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run returned %v", err)
	}
	log := logs.String()
	if strings.Contains(log, "no API keys configured") {
		t.Error("the log warns that the service is open, yet tokens are required")
	}
	if !strings.Contains(log, "cannot read the identity provider's discovery document") {
		t.Errorf("no warning about the unreachable issuer in\n%s", log)
	}
	for _, s := range []string{token, "TOKEN-SUBJECT-91e", "eyJzdWIiOiJUT0tFTi1TVUJKRUNULTkxZSJ9"} {
		if strings.Contains(log, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}
