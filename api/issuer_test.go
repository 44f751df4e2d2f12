package api_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/fake"
)

// testIssuer is a real OpenID Connect issuer served over HTTP: its discovery
// document and its key set, whose keys the test adds and removes, and a
// signer of tokens with any of them.
type testIssuer struct {
	t   *testing.T
	srv *httptest.Server
	// URL is the issuer, as the tokens' iss and the discovery document say.
	URL string

	mu        sync.Mutex
	signers   map[string]signingKey // by kid, every key the test made
	published []string              // the kids the key set lists, in order
	mode      issuerMode
	// discovery and keys, when set, answer instead of the issuer's own
	// discovery document and key set.
	discovery, keys http.HandlerFunc
	// release unblocks the requests of modeHang.
	release chan struct{}

	discoveries atomic.Int32 // GETs of the discovery document
	keyFetches  atomic.Int32 // GETs of the key set
}

// issuerMode is how the issuer answers.
type issuerMode int

const (
	modeUp   issuerMode = iota
	modeDown            // drops every connection unanswered, as a dead host behind a proxy
	modeHang            // never answers until the test ends
)

type signingKey struct {
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

// Keys are costly to make under the race detector: one of each kind serves
// every test, under as many kids as a test wants.
var (
	rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
		keys := make([]*rsa.PrivateKey, 2)
		for i := range keys {
			keys[i], _ = rsa.GenerateKey(rand.Reader, 2048)
		}
		return keys
	})
	ecKeys = sync.OnceValue(func() []*ecdsa.PrivateKey {
		keys := make([]*ecdsa.PrivateKey, 2)
		for i := range keys {
			keys[i], _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		return keys
	})
)

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	iss := &testIssuer{t: t, signers: map[string]signingKey{}, release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss.discoveries.Add(1)
		if !iss.answer(w, r) {
			return
		}
		if h := iss.handler(&iss.discovery); h != nil {
			h(w, r)
			return
		}
		writeJSON(w, map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + "/keys",
			"authorization_endpoint":                iss.URL + "/auth",
			"token_endpoint":                        iss.URL + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		iss.keyFetches.Add(1)
		if !iss.answer(w, r) {
			return
		}
		if h := iss.handler(&iss.keys); h != nil {
			h(w, r)
			return
		}
		writeJSON(w, iss.keySet())
	})
	iss.srv = httptest.NewServer(mux)
	iss.URL = iss.srv.URL
	t.Cleanup(func() {
		close(iss.release)
		iss.srv.Close()
	})
	return iss
}

// answer handles modeDown and modeHang; it reports whether to answer.
func (iss *testIssuer) answer(w http.ResponseWriter, r *http.Request) bool {
	iss.mu.Lock()
	mode := iss.mode
	iss.mu.Unlock()
	switch mode {
	case modeDown:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return false
	case modeHang:
		select {
		case <-iss.release:
		case <-r.Context().Done():
		}
		return false
	}
	return true
}

func (iss *testIssuer) handler(h *http.HandlerFunc) http.HandlerFunc {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return *h
}

// serve makes h answer instead of the discovery document or key set that
// field points to.
func (iss *testIssuer) serve(field *http.HandlerFunc, h http.HandlerFunc) {
	iss.mu.Lock()
	*field = h
	iss.mu.Unlock()
}

func (iss *testIssuer) setMode(m issuerMode) {
	iss.mu.Lock()
	iss.mode = m
	iss.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// addKey publishes a key of alg (RS256 or ES256) under kid: of the two
// keys of its kind, the one the previous key of that kind did not use.
func (iss *testIssuer) addKey(kid string, alg jose.SignatureAlgorithm) {
	iss.t.Helper()
	iss.mu.Lock()
	defer iss.mu.Unlock()
	n := 0
	for _, k := range iss.signers {
		if k.alg == alg {
			n++
		}
	}
	n %= 2
	switch alg {
	case jose.RS256:
		iss.signers[kid] = signingKey{alg, rsaKeys()[n]}
	case jose.ES256:
		iss.signers[kid] = signingKey{alg, ecKeys()[n]}
	default:
		iss.t.Fatalf("addKey: %s is not a test algorithm", alg)
	}
	iss.published = append(iss.published, kid)
}

// removeKey takes kid out of the key set; tokens can still be signed with it.
func (iss *testIssuer) removeKey(kid string) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for i, k := range iss.published {
		if k == kid {
			iss.published = append(iss.published[:i], iss.published[i+1:]...)
			return
		}
	}
}

func (iss *testIssuer) keySet() jose.JSONWebKeySet {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, kid := range iss.published {
		k := iss.signers[kid]
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: kid, Algorithm: string(k.alg), Use: "sig"})
	}
	return set
}

// sign signs claims with the key of kid, naming kid in the header.
func (iss *testIssuer) sign(kid string, claims map[string]any) string {
	iss.t.Helper()
	iss.mu.Lock()
	k, ok := iss.signers[kid]
	iss.mu.Unlock()
	if !ok {
		iss.t.Fatalf("sign: no key %q", kid)
	}
	return iss.signWith(k, kid, claims)
}

// signWith signs claims with k, naming kid in the header unless it is "".
func (iss *testIssuer) signWith(k signingKey, kid string, claims map[string]any) string {
	iss.t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key}, opts)
	if err != nil {
		iss.t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		iss.t.Fatal(err)
	}
	return raw
}

// claims are those of a valid token of this issuer for audience data-api,
// issued now by clk, with realm roles as Keycloak puts them.
func (iss *testIssuer) claims(clk *fake.Clock, sub string, realmRoles ...string) map[string]any {
	now := clk.Now()
	return map[string]any{
		"iss":          iss.URL,
		"aud":          []string{"account", testAudience},
		"sub":          sub,
		"iat":          now.Unix(),
		"nbf":          now.Unix(),
		"exp":          now.Add(5 * time.Minute).Unix(),
		"azp":          "chatbot",
		"realm_access": map[string]any{"roles": realmRoles},
	}
}

// token signs a valid token for sub with realm roles.
func (iss *testIssuer) token(kid string, clk *fake.Clock, sub string, realmRoles ...string) string {
	iss.t.Helper()
	return iss.sign(kid, iss.claims(clk, sub, realmRoles...))
}

const testAudience = "data-api"

// testRefresh is the least time between two fetches in the tests.
const testRefresh = 10 * time.Second

// oidcConfig accepts tokens of iss with Keycloak realm roles mapped to the
// service's roles.
func oidcConfig(iss *testIssuer) config.OIDC {
	return config.OIDC{
		Issuer:     iss.URL,
		Audience:   testAudience,
		RolesClaim: "realm_access.roles",
		Roles: config.OIDCRoles{
			Ingest:  []string{"chatbot"},
			Analyst: []string{"data-analyst", "data-admin"},
			Admin:   []string{"data-admin"},
		},
		Leeway:          30 * time.Second,
		RefreshInterval: testRefresh,
		FetchTimeout:    2 * time.Second,
	}
}

// The keys a fresh test issuer publishes.
const (
	kidRS = "rs-1" // RS256
	kidES = "es-1" // ES256
)

// newTokenEnv is newEnv accepting the tokens of a fresh issuer, which
// publishes kidRS and kidES; tweak, when set, changes the OIDC settings.
// o's other settings are kept. The service reads the issuer at the first
// token, so a test may change the issuer until then.
func newTokenEnv(t *testing.T, o envOptions, tweak func(*config.OIDC)) (*testEnv, *testIssuer, *fake.Clock) {
	t.Helper()
	iss := newTestIssuer(t)
	iss.addKey(kidRS, jose.RS256)
	iss.addKey(kidES, jose.ES256)
	change := o.config
	o.config = func(c *config.Config) {
		if change != nil {
			change(c)
		}
		c.Auth.OIDC = oidcConfig(iss)
		if tweak != nil {
			tweak(&c.Auth.OIDC)
		}
	}
	e := newEnv(t, o)
	return e, iss, e.clock
}

func bearer(credential string) []string { return []string{"Authorization", "Bearer " + credential} }
