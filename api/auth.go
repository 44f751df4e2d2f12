package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// Roles an API key or a token may hold.
const (
	roleIngest  = "ingest"  // POST /data, POST /consents
	roleAnalyst = "analyst" // GET /data, /data/export, /consents/{id}
	roleAdmin   = "admin"   // GET and DELETE /customers/{id}/data
)

// Key is an accepted API key: its name (recorded in the ledger), the SHA-256
// of its secret, and its roles.
type Key struct {
	Name   string
	SHA256 [sha256.Size]byte
	Roles  []string
}

// caller is who sent a request: the name the ledger records and its roles.
type caller struct {
	name  string
	roles []string
	token bool // authenticated by a token rather than an API key
}

type authenticator struct {
	keys   []Key
	tokens *tokenIssuer // nil without an OpenID Connect issuer
}

func newAuthenticator(keys []Key, o OIDC, now func() time.Time, log *slog.Logger) *authenticator {
	a := &authenticator{keys: keys}
	if o.Issuer != "" {
		a.tokens = newTokenIssuer(o, now, log)
	}
	return a
}

// enabled reports whether requests need a credential.
func (a *authenticator) enabled() bool { return len(a.keys) > 0 || a.tokens != nil }

// authenticate finds the caller whose credential is secret: an API key, or
// else a token of the issuer.
func (a *authenticator) authenticate(ctx context.Context, secret string) (caller, error) {
	if k, ok := a.lookup(secret); ok {
		return caller{name: k.Name, roles: k.Roles}, nil
	}
	if a.tokens == nil {
		return caller{}, model.Errorf(errInvalidToken, "the API key is not known")
	}
	return a.tokens.verify(ctx, secret)
}

// lookup finds the key whose hash matches secret. Every key is compared, in
// constant time, so the time taken says nothing about the keys.
func (a *authenticator) lookup(secret string) (Key, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found Key
	ok := 0
	for _, k := range a.keys {
		eq := subtle.ConstantTimeCompare(sum[:], k.SHA256[:])
		if eq == 1 {
			found = k
		}
		ok |= eq
	}
	return found, ok == 1
}

const callerKey = "data-api.caller"

// require lets a request through when it carries an API key or a token with
// role; role "" accepts any known key or valid token. Without configured keys
// or issuer every request passes.
func (h *Handler) require(role string) gin.HandlerFunc {
	return func(c *gin.Context) { h.authorize(c, role) }
}

// requireCaller is require for the routes whose calls the ledger records:
// it keeps the caller's name for callerName. (Keeping it costs a map of the
// request's own, which ingestion, the hottest route, does without.)
func (h *Handler) requireCaller(role string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if who, ok := h.authorize(c, role); ok {
			c.Set(callerKey, who.name)
		}
	}
}

// authorize answers 401 or 403 and returns false unless the request carries
// a credential with role, or authentication is off.
func (h *Handler) authorize(c *gin.Context, role string) (caller, bool) {
	if !h.auth.enabled() {
		return caller{}, true
	}
	scheme, secret, found := strings.Cut(c.Request.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		writeError(c, h.log, model.Errorf(errUnauthorized, h.auth.howToAuthenticate()))
		return caller{}, false
	}
	who, err := h.auth.authenticate(c.Request.Context(), secret)
	if err != nil {
		writeError(c, h.log, err)
		return caller{}, false
	}
	if role != "" && !slices.Contains(who.roles, role) {
		writeError(c, h.log, model.Errorf(errForbidden, h.auth.lacks(who, role)))
		return caller{}, false
	}
	return who, true
}

func (a *authenticator) howToAuthenticate() string {
	if a.tokens == nil {
		return "send an API key as Authorization: Bearer <key>"
	}
	return "send an API key or a token of " + a.tokens.o.Issuer + " as Authorization: Bearer <credential>"
}

// lacks says that who lacks role, naming the key, or for a token the claim
// its roles come from; never the token's subject or claims.
func (a *authenticator) lacks(who caller, role string) string {
	if who.token {
		return "the token does not grant the " + role + " role this endpoint needs; its " +
			a.tokens.o.RolesClaim + " claim holds no value mapped to " + role
	}
	return "the API key " + who.name + " lacks the " + role + " role this endpoint needs"
}

// callerName is the name of who authenticated the request, as the ledger
// records it: the API key's name, or "oidc:" and a token's subject; "" when
// authentication is off.
func callerName(c *gin.Context) string {
	return c.GetString(callerKey)
}
