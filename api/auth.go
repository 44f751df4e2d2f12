package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// Roles an API key may hold.
const (
	roleIngest  = "ingest"  // POST /data, POST /consents
	roleAnalyst = "analyst" // GET /data, /data/export, /consents/{id}
	roleAdmin   = "admin"   // DELETE /customers/{id}/data
)

// Key is an accepted API key: its name (recorded in the ledger), the SHA-256
// of its secret, and its roles.
type Key struct {
	Name   string
	SHA256 [sha256.Size]byte
	Roles  []string
}

type authenticator struct {
	keys []Key
}

func newAuthenticator(keys []Key) *authenticator {
	return &authenticator{keys: keys}
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

const keyNameKey = "data-api.key"

// require lets a request through when it carries a key with role; role ""
// accepts any known key. Without configured keys every request passes.
func (h *Handler) require(role string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if len(h.auth.keys) == 0 {
			return
		}
		scheme, secret, found := strings.Cut(c.GetHeader("Authorization"), " ")
		if !found || !strings.EqualFold(scheme, "Bearer") || secret == "" {
			writeError(c, h.log, model.Errorf(errUnauthorized, "send an API key as Authorization: Bearer <key>"))
			return
		}
		k, ok := h.auth.lookup(secret)
		if !ok {
			writeError(c, h.log, model.Errorf(errUnauthorized, "the API key is not known"))
			return
		}
		if role != "" && !slices.Contains(k.Roles, role) {
			writeError(c, h.log, model.Errorf(errForbidden, "the API key "+k.Name+" lacks the "+role+" role this endpoint needs"))
			return
		}
		c.Set(keyNameKey, k.Name)
	}
}

// keyName is the name of the key that authenticated the request, or "".
func keyName(c *gin.Context) string {
	return c.GetString(keyNameKey)
}
