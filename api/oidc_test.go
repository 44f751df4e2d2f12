package api_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
)

// TestTokenRoles sends RS256 and ES256 tokens of each role to every
// endpoint: the realm roles in the token decide, as API keys' roles do.
func TestTokenRoles(t *testing.T) {
	endpoints := []struct {
		method, path, body string
		role               string // "" = open to anyone; "any" = any valid credential
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
		{"GET", "/openapi.json", "", "", 200},
	}
	callers := []struct {
		sub        string
		realmRoles []string
		roles      []string
	}{
		{"bot", []string{"chatbot", "offline_access"}, []string{"ingest"}},
		{"ana", []string{"data-analyst"}, []string{"analyst"}},
		{"dpo", []string{"data-admin"}, []string{"analyst", "admin"}},
		{"nobody", []string{"offline_access", "uma_authorization"}, nil},
	}
	e, iss, clk := newTokenEnv(t, envOptions{}, nil)
	for _, kid := range []string{kidRS, kidES} {
		for _, c := range callers {
			tok := iss.token(kid, clk, c.sub, c.realmRoles...)
			for _, ep := range endpoints {
				allowed := ep.role == "" || ep.role == "any" || strings.Contains(strings.Join(c.roles, " "), ep.role)
				w := e.do(ep.method, ep.path, ep.body, bearer(tok)...)
				if allowed && w.Code != ep.ok {
					t.Errorf("%s %s with %s's %s token: %d, want %d; %s", ep.method, ep.path, c.sub, kid, w.Code, ep.ok, w.Body)
				}
				if !allowed {
					wantProblem(t, w, 403, ep.role, "realm_access.roles")
				}
			}
		}
	}
	if n := iss.keyFetches.Load(); n != 1 {
		t.Errorf("the key set was fetched %d times, want once", n)
	}
}

func TestTokenNeedsACredential(t *testing.T) {
	e, _, _ := newTokenEnv(t, envOptions{}, nil)
	for _, header := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz"} {
		w := e.do("GET", "/data", "", "Authorization", header)
		wantProblem(t, w, 401, "API key or a token of http://127.0.0.1")
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="data-api"` {
			t.Errorf("Authorization %q: WWW-Authenticate %q, want a plain Bearer challenge", header, got)
		}
	}
	if w := e.do("GET", "/healthz", ""); w.Code != 200 {
		t.Errorf("/healthz with an issuer configured: %d", w.Code)
	}
}

// TestTokenRefusals sends tokens that are refused, and a few on the edge of
// refusal that are accepted; every refusal is a 401 with
// error="invalid_token".
func TestTokenRefusals(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{}, nil)
	now := clk.Now()
	valid := func(change func(map[string]any)) string {
		c := iss.claims(clk, "ana", "data-analyst")
		change(c)
		return iss.sign(kidRS, c)
	}
	good := iss.token(kidRS, clk, "ana", "data-analyst")
	header, payload, _ := strings.Cut(good, ".")
	payload, sig, _ := strings.Cut(payload, ".")

	// The attacks on the algorithm: "none", and HS256 keyed with the public
	// key, which a verifier that trusts the header's alg would accept.
	none := b64(`{"alg":"none","typ":"JWT","kid":"`+kidRS+`"}`) + "." + payload + "."
	pub := iss.keySet().Keys[0].Key
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs := func(secret []byte) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kidRS))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := signer.Sign(mustJSON(t, iss.claims(clk, "ana", "data-admin")))
		if err != nil {
			t.Fatal(err)
		}
		s, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// A payload granting admin, under the signature of the analyst's one.
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["realm_access"] = map[string]any{"roles": []string{"data-admin"}}
	tampered := header + "." + b64(string(mustJSON(t, claims))) + "." + sig

	// Signed by a key the issuer does not hold, under the kid of one it does.
	forged := iss.signWith(signingKey{jose.ES256, ecKeys()[1]}, kidES, iss.claims(clk, "ana", "data-admin"))

	for _, c := range []struct {
		name  string
		token string
		want  string // "" = accepted
	}{
		{"valid RS256", good, ""},
		{"valid ES256", iss.token(kidES, clk, "ana", "data-analyst"), ""},
		{"audience as one string", valid(func(c map[string]any) { c["aud"] = testAudience }), ""},
		{"expired within the leeway", valid(func(c map[string]any) { c["exp"] = now.Add(-29 * time.Second).Unix() }), ""},
		{"expired", valid(func(c map[string]any) { c["exp"] = now.Add(-31 * time.Second).Unix() }), "expired"},
		{"not yet valid within the leeway", valid(func(c map[string]any) { c["nbf"] = now.Add(29 * time.Second).Unix() }), ""},
		{"not yet valid", valid(func(c map[string]any) { c["nbf"] = now.Add(31 * time.Second).Unix() }), "not valid yet"},
		{"issued in the future", valid(func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() }), "issued in the future"},
		{"no expiry", valid(func(c map[string]any) { delete(c, "exp") }), "no expiry"},
		{"no subject", valid(func(c map[string]any) { delete(c, "sub") }), "no subject"},
		{"empty subject", valid(func(c map[string]any) { c["sub"] = "" }), "no subject"},
		{"wrong audience", valid(func(c map[string]any) { c["aud"] = []string{"account", "data-api-staging"} }), "audience (aud) does not include data-api"},
		{"no audience", valid(func(c map[string]any) { delete(c, "aud") }), "audience"},
		{"wrong issuer", valid(func(c map[string]any) { c["iss"] = "https://evil.example.com/realms/acme" }), "not issued by " + iss.URL},
		{"issuer with a trailing slash", valid(func(c map[string]any) { c["iss"] = iss.URL + "/" }), "not issued by"},
		{"exp not a number", valid(func(c map[string]any) { c["exp"] = "tomorrow" }), "claims are not a JSON object of JWT claims"},
		{"claim names in another case", valid(func(c map[string]any) { c["EXP"] = c["exp"]; delete(c, "exp") }), "no expiry"},
		{"alg none", none, "neither a known API key nor a JWT signed with one of RS256"},
		{"HS256 keyed with the PEM public key", hs(pemKey), "neither a known API key nor a JWT"},
		{"HS256 keyed with the DER public key", hs(der), "neither a known API key nor a JWT"},
		{"tampered payload", tampered, "signature does not verify"},
		{"signature of another token", header + "." + payload + "." + strings.Split(forged, ".")[2], "signature does not verify"},
		{"forged under a known kid", forged, "signature does not verify"},
		{"signature stripped", header + "." + payload + ".", "signature does not verify"},
		{"three empty segments", "..", "neither"},
		{"not base64", "a.b.c", "neither"},
		{"five segments, as an encrypted JWT", good + ".x.y", "neither"},
		{"an unknown API key", "not-a-key-0123456789", "neither a known API key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := e.do("GET", "/data", "", bearer(c.token)...)
			if c.want == "" {
				if w.Code != 200 {
					t.Fatalf("got %d, want 200; %s", w.Code, w.Body)
				}
				return
			}
			wantProblem(t, w, 401, c.want)
			if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="data-api", error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", got)
			}
		})
	}
	// A token that fails its checks never makes the service fetch keys.
	if n := iss.keyFetches.Load(); n != 1 {
		t.Errorf("the key set was fetched %d times, want once", n)
	}
}

// TestTokenBadSignatureFetchesNothing: a token under a held kid whose
// signature fails is forged or damaged, not a sign of rotation, so it never
// costs the issuer a request (go-oidc's RemoteKeySet would refetch).
func TestTokenBadSignatureFetchesNothing(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{}, nil)
	if w := e.do("GET", "/data", "", bearer(iss.token(kidRS, clk, "ana", "data-analyst"))...); w.Code != 200 {
		t.Fatal(w.Code)
	}
	for range 3 {
		clk.Advance(testRefresh)
		forged := iss.signWith(signingKey{jose.RS256, rsaKeys()[1]}, kidRS, iss.claims(clk, "ana", "data-admin"))
		wantProblem(t, e.do("GET", "/data", "", bearer(forged)...), 401, "signature does not verify")
	}
	if n := iss.keyFetches.Load(); n != 1 {
		t.Errorf("bad signatures under a held kid fetched the keys: %d fetches, want 1", n)
	}
}

// TestTokenWithoutKid is accepted when a held key verifies it, as go-oidc
// does: some providers with a single key leave kid out.
func TestTokenWithoutKid(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{}, nil)
	k := signingKey{jose.ES256, ecKeys()[0]} // the key of kidES
	if w := e.do("GET", "/data", "", bearer(iss.signWith(k, "", iss.claims(clk, "ana", "data-analyst")))...); w.Code != 200 {
		t.Fatalf("token without kid: %d %s", w.Code, w.Body)
	}
	other := signingKey{jose.ES256, ecKeys()[1]}
	wantProblem(t, e.do("GET", "/data", "", bearer(iss.signWith(other, "", iss.claims(clk, "ana", "data-analyst")))...), 401, "signature does not verify")
}

// TestTokenRolesClaim reads roles from each shape of claim providers use.
func TestTokenRolesClaim(t *testing.T) {
	for _, c := range []struct {
		name   string
		claim  string
		claims map[string]any
		want   int // for GET /data, which needs analyst
	}{
		{"list", "roles", map[string]any{"roles": []string{"data-reader", "data-analyst"}}, 200},
		{"scope string", "scope", map[string]any{"scope": "openid profile data-analyst"}, 200},
		{"scope word is not a prefix", "scope", map[string]any{"scope": "openid data-analyst-x"}, 403},
		{"nested path", "resource_access.data-api.roles", map[string]any{"resource_access": map[string]any{"data-api": map[string]any{"roles": []string{"data-analyst"}}}}, 200},
		{"nested path, other client", "resource_access.data-api.roles", map[string]any{"resource_access": map[string]any{"other": map[string]any{"roles": []string{"data-analyst"}}}}, 403},
		{"claim named like a URL", "https://data-api.example.com/roles", map[string]any{"https://data-api.example.com/roles": []string{"data-analyst"}}, 200},
		{"list claim given as a string", "roles", map[string]any{"roles": "data-analyst"}, 200},
		{"non-strings in the list are skipped", "roles", map[string]any{"roles": []any{1, map[string]any{"x": "data-analyst"}, nil, "data-analyst"}}, 200},
		{"only non-strings", "roles", map[string]any{"roles": []any{1, []string{"data-analyst"}}}, 403},
		{"a number", "roles", map[string]any{"roles": 42}, 403},
		{"path through a list", "realm_access.roles", map[string]any{"realm_access": []any{map[string]any{"roles": []string{"data-analyst"}}}}, 403},
		{"another case", "roles", map[string]any{"roles": []string{"Data-Analyst"}}, 403},
		{"missing", "roles", map[string]any{}, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, iss, clk := newTokenEnv(t, envOptions{}, func(o *config.OIDC) { o.RolesClaim = c.claim })
			claims := iss.claims(clk, "ana")
			delete(claims, "realm_access")
			for k, v := range c.claims {
				claims[k] = v
			}
			w := e.do("GET", "/data", "", bearer(iss.sign(kidRS, claims))...)
			if c.want == 403 {
				wantProblem(t, w, 403, "analyst", c.claim)
				return
			}
			if w.Code != c.want {
				t.Fatalf("got %d, want %d; %s", w.Code, c.want, w.Body)
			}
		})
	}
}

// TestTokenKeyRotation rotates the issuer's keys mid-test: a new kid is
// picked up once the refresh interval allows a fetch, and a kid the issuer
// removed is refused once a fetch has seen it gone.
func TestTokenKeyRotation(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{}, nil)
	get := func(kid string) int {
		return e.do("GET", "/data", "", bearer(iss.token(kid, clk, "ana", "data-analyst"))...).Code
	}
	if got := get(kidRS); got != 200 {
		t.Fatalf("first token: %d", got)
	}

	iss.addKey("rs-2", jose.RS256)
	wantProblem(t, e.do("GET", "/data", "", bearer(iss.token("rs-2", clk, "ana", "data-analyst"))...), 401,
		"signing key (kid) is not among the identity provider's keys")
	if n := iss.keyFetches.Load(); n != 1 {
		t.Fatalf("a new kid within the refresh interval fetched the keys: %d fetches, want 1", n)
	}
	clk.Advance(testRefresh)
	if got := get("rs-2"); got != 200 {
		t.Fatalf("new kid after the refresh interval: %d, want 200", got)
	}
	if got := get(kidRS); got != 200 {
		t.Fatalf("old kid still published: %d, want 200", got)
	}

	iss.removeKey(kidRS)
	iss.addKey("es-2", jose.ES256)
	clk.Advance(testRefresh)
	if got := get("es-2"); got != 200 {
		t.Fatalf("second rotation: %d, want 200", got)
	}
	wantProblem(t, e.do("GET", "/data", "", bearer(iss.token(kidRS, clk, "ana", "data-analyst"))...), 401, "not among the identity provider's keys")
	if n := iss.keyFetches.Load(); n != 3 {
		t.Errorf("%d key fetches, want 3", n)
	}
	if n := iss.discoveries.Load(); n != 1 {
		t.Errorf("%d discoveries, want 1: the discovery document is read once", n)
	}
}

// TestTokenRefreshIsRateBound floods the service with tokens under kids
// nobody published: the key set is fetched at most once per refresh
// interval, however many arrive, alone or at once.
func TestTokenRefreshIsRateBound(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{}, nil)
	if w := e.do("GET", "/data", "", bearer(iss.token(kidRS, clk, "ana", "data-analyst"))...); w.Code != 200 {
		t.Fatal(w.Code)
	}
	flood := func(round int) {
		t.Helper()
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				// An attacker needs no key to send a kid: the signature
				// is never reached.
				tok := b64(fmt.Sprintf(`{"alg":"RS256","kid":"unknown-%d-%d"}`, round, i)) + "." +
					b64(string(mustJSON(t, iss.claims(clk, "ana", "data-admin")))) + "." + b64("no signature")
				if w := e.do("GET", "/data", "", bearer(tok)...); w.Code != 401 {
					t.Errorf("unknown kid: %d, want 401", w.Code)
				}
			})
		}
		wg.Wait()
	}
	for _, step := range []struct {
		advance time.Duration
		fetches int32
	}{
		{0, 1},                         // the first token's fetch was just now
		{testRefresh - time.Second, 1}, // still within the interval
		{time.Second, 2},               // one interval after the first fetch: one fetch for the whole flood
		{testRefresh / 2, 2},           // within the interval again
		{testRefresh / 2, 3},           // and one more
		{time.Hour, 4},                 // however long the wait, one fetch
	} {
		clk.Advance(step.advance)
		flood(int(step.fetches))
		if n := iss.keyFetches.Load(); n != step.fetches {
			t.Fatalf("after %v more: %d key fetches, want %d", step.advance, n, step.fetches)
		}
	}
	if n := iss.discoveries.Load(); n != 1 {
		t.Errorf("%d discoveries, want 1", n)
	}
}

// TestTokenIssuerDown takes the issuer down once the service holds its keys:
// tokens signed by held keys keep working, and a token with an unknown kid
// is a prompt 401, whether the issuer refuses connections or never answers.
func TestTokenIssuerDown(t *testing.T) {
	for _, c := range []struct {
		name string
		mode issuerMode
	}{
		{"connections dropped", modeDown},
		{"never answers", modeHang},
	} {
		t.Run(c.name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			e, iss, clk := newTokenEnv(t, envOptions{}, func(o *config.OIDC) { o.FetchTimeout = timeout })
			known := iss.token(kidES, clk, "ana", "data-analyst")
			if w := e.do("GET", "/data", "", bearer(known)...); w.Code != 200 {
				t.Fatal(w.Code)
			}
			iss.setMode(c.mode)
			clk.Advance(testRefresh)
			fetches := iss.keyFetches.Load()

			start := time.Now()
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					tok := iss.signWith(signingKey{jose.ES256, ecKeys()[0]}, fmt.Sprintf("new-%d", i), iss.claims(clk, "ana", "data-analyst"))
					wantProblem(t, e.do("GET", "/data", "", bearer(tok)...), 401, "identity provider could not be reached for new ones")
				})
			}
			wg.Wait()
			// Bounded by the fetch timeout, not by the requests' number.
			if took := time.Since(start); took > timeout+2*time.Second {
				t.Errorf("20 tokens with unknown kids took %v with the issuer down; the fetch timeout is %v", took, timeout)
			}
			if got := iss.keyFetches.Load() - fetches; got > 2 { // net/http may retry a dropped GET once
				t.Errorf("%d key fetches for 20 unknown kids, want 1", got)
			}
			if w := e.do("GET", "/data", "", bearer(known)...); w.Code != 200 {
				t.Errorf("a token of a held key with the issuer down: %d, want 200", w.Code)
			}
			if !strings.Contains(e.logs.String(), "cannot read the identity provider's keys; keeping those held") {
				t.Errorf("no warning about the unreachable issuer in\n%s", e.logs)
			}
		})
	}
}

// TestTokenIssuerDownAtStart starts the service while the issuer is down:
// it serves, refuses tokens with a clear 401, retries no more often than the
// refresh interval, and accepts tokens once the issuer answers.
func TestTokenIssuerDownAtStart(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{config: withKeys(key("bot", "ingest"))}, nil)
	iss.setMode(modeDown)
	tok := iss.token(kidRS, clk, "ana", "data-analyst")
	wantProblem(t, e.do("GET", "/data", "", bearer(tok)...), 401, "could not be reached for its keys yet; retry later")
	if w := e.do("POST", "/consents/d", "false", bearer(secret("bot"))...); w.Code != 200 {
		t.Fatalf("an API key with the issuer down: %d", w.Code)
	}
	if !strings.Contains(e.logs.String(), "cannot read the identity provider's discovery document") {
		t.Errorf("no warning about the unreachable issuer in\n%s", e.logs)
	}

	iss.setMode(modeUp)
	discoveries := iss.discoveries.Load()
	wantProblem(t, e.do("GET", "/data", "", bearer(tok)...), 401, "retry later")
	if n := iss.discoveries.Load(); n != discoveries {
		t.Errorf("the issuer was asked again within the refresh interval")
	}
	clk.Advance(testRefresh)
	if w := e.do("GET", "/data", "", bearer(tok)...); w.Code != 200 {
		t.Fatalf("once the issuer answers: %d %s", w.Code, w.Body)
	}
}

// TestTokenIssuerMisbehaves serves discovery documents and key sets that
// must not be trusted: tokens get 401 and the keys already held stay.
func TestTokenIssuerMisbehaves(t *testing.T) {
	t.Run("discovery names another issuer", func(t *testing.T) {
		e, iss, clk := newTokenEnv(t, envOptions{}, nil)
		iss.serve(&iss.discovery, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, map[string]any{"issuer": "https://evil.example.com", "jwks_uri": iss.URL + "/keys"})
		})
		wantProblem(t, e.do("GET", "/data", "", bearer(iss.token(kidRS, clk, "ana", "data-analyst"))...), 401, "could not be reached for its keys yet")
		if n := iss.keyFetches.Load(); n != 0 {
			t.Errorf("keys fetched from a discovery document of another issuer")
		}
	})
	t.Run("jwks_uri over plain http to another host", func(t *testing.T) {
		e, iss, clk := newTokenEnv(t, envOptions{}, nil)
		iss.serve(&iss.discovery, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, map[string]any{"issuer": iss.URL, "jwks_uri": "http://keys.example.com/keys"})
		})
		wantProblem(t, e.do("GET", "/data", "", bearer(iss.token(kidRS, clk, "ana", "data-analyst"))...), 401, "could not be reached for its keys yet")
		if !strings.Contains(e.logs.String(), "must be an https URL") {
			t.Errorf("the log does not say why the jwks_uri was refused:\n%s", e.logs)
		}
	})
	for _, c := range []struct {
		name string
		keys http.HandlerFunc
	}{
		{"key set over 1 MiB", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"keys": [], "padding": "%s"}`, strings.Repeat("x", 1<<20))
		}},
		{"empty key set", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, map[string]any{"keys": []any{}}) }},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>maintenance</html>") }},
		{"error status", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) }},
		{"only keys it cannot use", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, map[string]any{"keys": []any{
				map[string]any{"kty": "oct", "kid": "hmac", "k": b64("a shared secret")},
				map[string]any{"kty": "OKP", "crv": "X448", "kid": "x448", "x": b64("x")},
				map[string]any{"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
			}})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, iss, clk := newTokenEnv(t, envOptions{}, nil)
			known := iss.token(kidRS, clk, "ana", "data-analyst")
			if w := e.do("GET", "/data", "", bearer(known)...); w.Code != 200 {
				t.Fatal(w.Code)
			}
			iss.serve(&iss.keys, c.keys)
			clk.Advance(testRefresh)
			iss.addKey("rs-2", jose.RS256)
			wantProblem(t, e.do("GET", "/data", "", bearer(iss.token("rs-2", clk, "ana", "data-analyst"))...), 401, "could not be reached for new ones")
			if w := e.do("GET", "/data", "", bearer(known)...); w.Code != 200 {
				t.Errorf("a held key after a bad key set: %d, want 200", w.Code)
			}
		})
	}
}

// TestTokensBesideKeys accepts API keys and tokens together; the ledger and
// the erasures name the key, or "oidc:" and the token's subject.
func TestTokensBesideKeys(t *testing.T) {
	keys := []config.Key{key("bot", "ingest"), key("dpo", "admin")}
	erasers := &erasureCallers{}
	e, iss, clk := newTokenEnv(t, envOptions{
		config: withKeys(keys...),
		wrap:   func(d api.Dialogues) api.Dialogues { erasers.Dialogues = d; return erasers },
	}, nil)
	botToken := iss.token(kidRS, clk, "service-account-chatbot", "chatbot")
	dpoToken := iss.token(kidES, clk, "f3c1e2a0-dpo", "data-admin")

	for _, c := range []struct {
		dialogue string
		cred     string
		want     string
	}{
		{"by-key", secret("bot"), "bot"},
		{"by-token", botToken, "oidc:service-account-chatbot"},
	} {
		if w := e.do("POST", "/data/c1/"+c.dialogue, `{"text": "hi", "language": "en"}`, bearer(c.cred)...); w.Code != 202 {
			t.Fatalf("ingest %s: %d %s", c.dialogue, w.Code, w.Body)
		}
		if w := e.do("POST", "/consents/"+c.dialogue, "true", bearer(c.cred)...); w.Code != 200 {
			t.Fatalf("consent %s: %d %s", c.dialogue, w.Code, w.Body)
		}
		d, err := e.svc.Decision(t.Context(), c.dialogue)
		if err != nil || d.KeyName != c.want {
			t.Errorf("ledger entry of %s: %+v, %v; want caller %q", c.dialogue, d, err, c.want)
		}
	}
	wantProblem(t, e.do("GET", "/data", "", bearer(secret("bot"))...), 403, "the API key bot lacks the analyst role")
	wantProblem(t, e.do("GET", "/data", "", bearer(botToken)...), 403, "the token does not grant the analyst role")

	for _, cred := range []string{secret("dpo"), dpoToken} {
		if w := e.do("DELETE", "/customers/c1/data", "", bearer(cred)...); w.Code != 200 {
			t.Fatalf("erasure: %d %s", w.Code, w.Body)
		}
	}
	if got, want := strings.Join(erasers.names(), ","), "dpo,oidc:f3c1e2a0-dpo"; got != want {
		t.Errorf("erasures recorded for %q, want %q", got, want)
	}
}

// erasureCallers records the caller the handler passes with each erasure;
// the repository's suite checks that the service stores it.
type erasureCallers struct {
	api.Dialogues
	mu      sync.Mutex
	callers []string
}

func (r *erasureCallers) Erase(ctx context.Context, customerID, caller string) (model.ErasureOutcome, error) {
	r.mu.Lock()
	r.callers = append(r.callers, caller)
	r.mu.Unlock()
	return r.Dialogues.Erase(ctx, customerID, caller)
}

func (r *erasureCallers) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.callers)
}

// TestTokenLeavesNoTraceInLogs runs tokens through every outcome, with the
// issuer up and down, and finds none of their parts, subjects or claims in
// the log.
func TestTokenLeavesNoTraceInLogs(t *testing.T) {
	e, iss, clk := newTokenEnv(t, envOptions{}, func(o *config.OIDC) {
		o.Roles.Analyst = append(o.Roles.Analyst, "ROLE-CANARY-77d2")
		o.FetchTimeout = 200 * time.Millisecond
	})
	canaries := []string{"SUBJECT-CANARY-3f9a", "EMAIL-CANARY-51c0@example.com", "ROLE-CANARY-77d2", "CLAIM-CANARY-e81b"}
	claims := func() map[string]any {
		c := iss.claims(clk, canaries[0], canaries[2])
		c["email"] = canaries[1]
		c[canaries[3]] = "x"
		return c
	}
	expired := claims()
	expired["exp"] = clk.Now().Add(-time.Hour).Unix()
	wrongAud := claims()
	wrongAud["aud"] = "elsewhere"
	noRole := claims()
	noRole["realm_access"] = map[string]any{"roles": []string{}}
	tokens := []string{
		iss.sign(kidRS, claims()),
		iss.sign(kidES, expired),
		iss.sign(kidRS, wrongAud),
		iss.sign(kidRS, noRole),
		iss.signWith(signingKey{jose.RS256, rsaKeys()[1]}, "unknown-kid", claims()),
	}
	send := func() {
		for _, tok := range tokens {
			e.do("GET", "/data", "", bearer(tok)...)
			e.do("POST", "/consents/d", "true", bearer(tok)...)
		}
	}
	// The start-up line logs the configuration, whose role mapping names
	// the role canary: only what the tokens brought counts.
	start := len(e.logs.String())
	send()
	iss.setMode(modeDown)
	clk.Advance(testRefresh)
	send()
	iss.setMode(modeHang)
	clk.Advance(testRefresh)
	send()

	logs := e.logs.String()[start:]
	if !strings.Contains(logs, `"status":401`) || !strings.Contains(logs, `"status":403`) {
		t.Fatalf("the requests did not reach the log:\n%s", logs)
	}
	for _, tok := range tokens {
		parts := strings.Split(tok, ".")
		for _, s := range append(parts[1:], tok) {
			if strings.Contains(logs, s) {
				t.Errorf("the log holds a token's part %.20q…", s)
			}
		}
	}
	for _, c := range canaries {
		if strings.Contains(logs, c) {
			t.Errorf("the log holds %q, from a token", c)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
