package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/data-api/data-api/model"
)

// OIDC configures the acceptance of tokens issued by an OpenID Connect
// provider. With Issuer empty no token is accepted.
type OIDC struct {
	// Issuer is the issuer URL exactly as the tokens' iss claim writes it;
	// its discovery document is Issuer + "/.well-known/openid-configuration".
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// RolesClaim names the claim that holds the caller's roles: a claim
	// name, or a dotted path into nested objects (realm_access.roles). The
	// claim holds a list of strings or one space-separated string (scope).
	RolesClaim string
	// Roles maps each role of the service (ingest, analyst, admin) to the
	// claim values that grant it.
	Roles map[string][]string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// RefreshInterval is the least time between two fetches from the
	// provider, however many tokens with an unknown kid arrive.
	RefreshInterval time.Duration
	// FetchTimeout bounds each fetch of the discovery document or the keys.
	FetchTimeout time.Duration
}

// tokenPrefix starts the name under which the ledger records a token's
// caller: "oidc:" and the token's sub, so that an auditor tells it from the
// name of an API key, which config refuses to start so.
const tokenPrefix = "oidc:"

// signingAlgs are the algorithms a token may be signed with: public-key
// ones only, so that neither "none" nor an HMAC keyed with a public key can
// pass.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// maxFetchBytes bounds a discovery document or key set read from the
// provider.
const maxFetchBytes = 1 << 20

// errInvalidToken is a 401 for a token that was presented and refused; the
// WWW-Authenticate header then says error="invalid_token" (RFC 6750).
var errInvalidToken = fmt.Errorf("invalid token: %w", errUnauthorized)

func invalidToken(detail string) error { return model.Errorf(errInvalidToken, detail) }

// tokenIssuer verifies the tokens of one OpenID Connect issuer. It reads the
// discovery document and the key set lazily, when a token needs a key it
// does not hold, and at most once per RefreshInterval; a failed fetch keeps
// the keys it holds, so that the provider being down stops only the
// acceptance of keys not yet seen.
type tokenIssuer struct {
	o      OIDC
	now    func() time.Time
	client *http.Client
	log    *slog.Logger

	mu        sync.Mutex
	jwksURL   string            // from the discovery document; "" until it has been read
	keys      []jose.JSONWebKey // the signing keys of the last key set read
	lastFetch time.Time         // when the last fetch began; zero before the first
	fetching  chan struct{}     // closed when the fetch in flight ends; nil when none
	fetchErr  error             // how the last fetch failed, or nil
}

func newTokenIssuer(o OIDC, now func() time.Time, log *slog.Logger) *tokenIssuer {
	return &tokenIssuer{
		o:   o,
		now: now,
		log: log,
		client: &http.Client{
			Timeout:   o.FetchTimeout,
			Transport: limitedBodies{http.DefaultTransport},
		},
	}
}

// limitedBodies fails the reading of a response body past maxFetchBytes,
// whoever reads it (go-oidc reads the discovery document whole).
type limitedBodies struct{ next http.RoundTripper }

func (l limitedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err == nil {
		resp.Body = http.MaxBytesReader(nil, resp.Body, maxFetchBytes)
	}
	return resp, err
}

// verify checks raw, a credential that is not an API key, as a JWT and
// returns its caller: the signature against the issuer's keys, then iss,
// aud, exp, nbf and iat, then sub; its roles come from RolesClaim.
func (t *tokenIssuer) verify(ctx context.Context, raw string) (caller, error) {
	jws, err := jose.ParseSignedCompact(raw, signingAlgs)
	if err != nil {
		return caller{}, invalidToken("the credential is neither a known API key nor a JWT signed with one of " + algNames())
	}
	payload, err := t.signedPayload(ctx, jws)
	if err != nil {
		return caller{}, err
	}

	// go-jose's JSON reads claim names case-sensitively, as JWT requires.
	var claims jwt.Claims
	var all map[string]any
	if josejson.Unmarshal(payload, &claims) != nil || josejson.Unmarshal(payload, &all) != nil {
		return caller{}, invalidToken("the token's claims are not a JSON object of JWT claims")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      t.o.Issuer,
		AnyAudience: jwt.Audience{t.o.Audience},
		Time:        t.now(),
	}, t.o.Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return caller{}, invalidToken("the token was not issued by " + t.o.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return caller{}, invalidToken("the token's audience (aud) does not include " + t.o.Audience)
	case errors.Is(err, jwt.ErrExpired):
		return caller{}, invalidToken("the token has expired; get a new one")
	case errors.Is(err, jwt.ErrNotValidYet):
		return caller{}, invalidToken("the token is not valid yet (nbf)")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return caller{}, invalidToken("the token was issued in the future (iat)")
	case err != nil:
		return caller{}, invalidToken("the token's claims are not valid")
	case claims.Expiry == nil:
		return caller{}, invalidToken("the token has no expiry (exp)")
	case claims.Subject == "":
		return caller{}, invalidToken("the token has no subject (sub)")
	}

	held := claimValues(all, t.o.RolesClaim)
	var roles []string
	for _, role := range []string{roleIngest, roleAnalyst, roleAdmin} {
		if slices.ContainsFunc(t.o.Roles[role], func(v string) bool { return slices.Contains(held, v) }) {
			roles = append(roles, role)
		}
	}
	return caller{name: tokenPrefix + claims.Subject, roles: roles, token: true}, nil
}

// signedPayload returns jws's payload once a held key verifies its
// signature. A token whose kid names no held key, or without a kid and
// verified by no held key, first makes the keys refresh, as the issuer's
// rotation of its keys needs.
func (t *tokenIssuer) signedPayload(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	h := jws.Signatures[0].Header
	keys := t.candidates(h.KeyID)
	if payload, ok := verifiedPayload(jws, h.Algorithm, keys); ok {
		return payload, nil
	}
	if len(keys) > 0 && h.KeyID != "" {
		return nil, invalidToken("the token's signature does not verify")
	}
	t.refresh(ctx)
	keys = t.candidates(h.KeyID)
	if payload, ok := verifiedPayload(jws, h.Algorithm, keys); ok {
		return payload, nil
	}
	t.mu.Lock()
	discovered, fetchErr := t.jwksURL != "", t.fetchErr
	t.mu.Unlock()
	switch {
	case !discovered:
		return nil, invalidToken("the identity provider could not be reached for its keys yet; retry later")
	case len(keys) > 0:
		return nil, invalidToken("the token's signature does not verify")
	case fetchErr != nil:
		return nil, invalidToken("the token's signing key (kid) is not among the keys held, and the identity provider could not be reached for new ones; retry later")
	}
	return nil, invalidToken("the token's signing key (kid) is not among the identity provider's keys")
}

// verifiedPayload returns jws's payload if one of keys, used with alg,
// verifies its signature.
func verifiedPayload(jws *jose.JSONWebSignature, alg string, keys []jose.JSONWebKey) ([]byte, bool) {
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if payload, err := jws.Verify(&k); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// candidates returns the held keys that may have signed a token with kid:
// the keys with that kid, or every key for a token without one.
func (t *tokenIssuer) candidates(kid string) []jose.JSONWebKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	if kid == "" {
		return t.keys
	}
	var keys []jose.JSONWebKey
	for _, k := range t.keys {
		if k.KeyID == kid {
			keys = append(keys, k)
		}
	}
	return keys
}

// refresh fetches the discovery document (until it has been read once) and
// the key set, unless a fetch began less than RefreshInterval ago. A caller
// that finds a fetch in flight waits for it, or for ctx to end.
func (t *tokenIssuer) refresh(ctx context.Context) {
	t.mu.Lock()
	if done := t.fetching; done != nil {
		t.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		return
	}
	if !t.lastFetch.IsZero() && t.now().Sub(t.lastFetch) < t.o.RefreshInterval {
		t.mu.Unlock()
		return
	}
	t.lastFetch = t.now()
	done := make(chan struct{})
	t.fetching = done
	t.mu.Unlock()

	var err error
	defer func() { // even if fetch panics, lest every later caller wait
		t.mu.Lock()
		t.fetchErr, t.fetching = err, nil
		close(done)
		t.mu.Unlock()
	}()
	// The fetch serves every caller waiting for it: it outlives this
	// caller's cancellation, bounded by FetchTimeout.
	err = t.fetch(context.WithoutCancel(ctx))
}

// fetch reads the discovery document if it has not been read yet, then the
// key set, and keeps the keys when it holds at least one signing key. The
// log names the issuer and the failure, never a token.
func (t *tokenIssuer) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.o.FetchTimeout)
	defer cancel()
	t.mu.Lock()
	jwksURL := t.jwksURL
	t.mu.Unlock()
	if jwksURL == "" {
		var err error
		if jwksURL, err = t.discover(ctx); err != nil {
			t.log.Warn("oidc: cannot read the identity provider's discovery document; tokens get 401 until it answers",
				"issuer", t.o.Issuer, "err", shorten(err))
			return err
		}
		t.mu.Lock()
		t.jwksURL = jwksURL
		t.mu.Unlock()
	}
	keys, err := t.fetchKeys(ctx, jwksURL)
	if err != nil {
		t.log.Warn("oidc: cannot read the identity provider's keys; keeping those held",
			"issuer", t.o.Issuer, "jwks_uri", jwksURL, "err", shorten(err))
		return err
	}
	t.mu.Lock()
	t.keys = keys
	t.mu.Unlock()
	t.log.Info("oidc: identity provider's keys read", "issuer", t.o.Issuer, "keys", len(keys))
	return nil
}

// discover reads the issuer's discovery document, which go-oidc checks
// names the configured issuer, and returns its jwks_uri.
func (t *tokenIssuer) discover(ctx context.Context) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, t.client), t.o.Issuer)
	if err != nil {
		return "", err
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return "", err
	}
	if err := fetchableURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document: jwks_uri %q: %w", doc.JWKSURI, err)
	}
	return doc.JWKSURI, nil
}

// fetchKeys reads the key set at jwksURL and returns its public signing keys,
// skipping keys of a type it does not know (RFC 7517 §5).
func (t *tokenIssuer) fetchKeys(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("key set: %s", resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil || !k.Valid() || !k.IsPublic() || k.Use != "" && k.Use != "sig" {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key set: no public signing key among its %d keys", len(set.Keys))
	}
	return keys, nil
}

// fetchableURL checks that u can be fetched safely: an https URL, or http
// to a loopback host (for tests and a provider on the same machine).
func fetchableURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return errors.New("must be a URL")
	case p.Host == "":
		return errors.New("must be an absolute URL with a host")
	case p.Scheme == "https":
		return nil
	case p.Scheme == "http" && loopback(p.Hostname()):
		return nil
	}
	return errors.New("must be an https URL (http only for a loopback host)")
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// claimValues returns the strings held by the claim named path in claims: a
// top-level claim of that exact name (such as Auth0's URL-named claims), or
// else a dotted path into nested objects. A list yields its strings, a
// string its space-separated words (as scope); anything else nothing.
func claimValues(claims map[string]any, path string) []string {
	v, ok := claims[path]
	if !ok {
		var at any = claims
		for name := range strings.SplitSeq(path, ".") {
			m, isObject := at.(map[string]any)
			if !isObject {
				return nil
			}
			at = m[name]
		}
		v = at
	}
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func algNames() string {
	names := make([]string, len(signingAlgs))
	for i, a := range signingAlgs {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// shorten bounds an error for the log: go-oidc quotes a failed response's
// body whole.
func shorten(err error) string {
	const max = 300
	s := err.Error()
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
