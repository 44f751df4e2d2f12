package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/data-api/data-api/model"
	"github.com/gin-gonic/gin"
)

// parseQuery reads the filters of GET /data and /data/export, and with paged
// also limit and cursor. Unknown or repeated parameters are refused, so that
// a typo never silently widens a query.
func (h *Handler) parseQuery(c *gin.Context, paged bool) (model.Query, error) {
	q := model.Query{Limit: model.DefaultLimit}
	var v model.ValidationError
	var cursor string
	params, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return q, fail(model.ErrInvalid, "the query string is malformed; escape reserved characters with %XX")
	}
	for name, values := range params {
		if len(values) > 1 {
			v.Add(name, "must be given at most once")
			continue
		}
		val := values[0]
		switch {
		case name == "language":
			q.Language = val
		case name == "customerId":
			q.CustomerID = val
		case name == "limit" && paged:
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > model.MaxLimit {
				v.Add("limit", "must be an integer between 1 and "+strconv.Itoa(model.MaxLimit))
			}
			q.Limit = n
		case name == "cursor" && paged:
			cursor = val
		default:
			v.Add(name, "is not a known query parameter; known: "+knownParams(paged))
		}
	}
	for _, p := range []struct{ name, val string }{{"language", q.Language}, {"customerId", q.CustomerID}} {
		if _, given := params[p.name]; given && p.val == "" {
			v.Add(p.name, "must not be empty; leave it out to match every value")
		}
	}
	if err := v.Err(); err != nil {
		return q, err
	}
	if cursor != "" {
		pos, err := h.cursors.decode(cursor, q.Filter)
		if err != nil {
			return q, err
		}
		q.After = &pos
	}
	return q, nil
}

func knownParams(paged bool) string {
	if paged {
		return "language, customerId, limit, cursor"
	}
	return "language, customerId"
}

// noQuery refuses any query parameter on endpoints that take none.
func noQuery(c *gin.Context) error {
	if c.Request.URL.RawQuery == "" {
		return nil
	}
	var v model.ValidationError
	params, _ := url.ParseQuery(c.Request.URL.RawQuery)
	for name := range params {
		v.Add(name, "is not a known query parameter; this endpoint takes none")
	}
	if len(v.Problems) == 0 {
		v.Add("query", "this endpoint takes no query parameters")
	}
	return &v
}

// cursorCodec makes opaque, tamper-evident cursors: a position signed with
// HMAC-SHA-256 together with the filters it was issued for, so that a cursor
// can be neither forged nor reused with other filters.
type cursorCodec struct {
	secret []byte
}

const (
	cursorPosLen = 16 // created_at (ns) and id, 8 bytes each
	cursorMACLen = 16
)

// mac signs pos for f. Languages are signed in canonical form, so that "EN"
// and "en" share cursors as they share results.
func (cc cursorCodec) mac(pos []byte, f model.Filter) []byte {
	if lang, err := model.CanonicalLanguage(f.Language); err == nil {
		f.Language = lang
	}
	m := hmac.New(sha256.New, cc.secret)
	m.Write(pos)
	m.Write([]byte(f.Language))
	m.Write([]byte{0})
	m.Write([]byte(f.CustomerID))
	return m.Sum(nil)[:cursorMACLen]
}

func (cc cursorCodec) encode(f model.Filter, p model.Position) string {
	b := make([]byte, cursorPosLen, cursorPosLen+cursorMACLen)
	binary.BigEndian.PutUint64(b, uint64(p.CreatedAt.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], uint64(p.ID))
	b = append(b, cc.mac(b, f)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errCursor = fail(model.ErrInvalid,
	"cursor was not issued by this service for these filters; use nextCursor of the previous page with the same language and customerId")

// decode checks that s was issued for f and returns its position.
func (cc cursorCodec) decode(s string, f model.Filter) (model.Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != cursorPosLen+cursorMACLen || !hmac.Equal(b[cursorPosLen:], cc.mac(b[:cursorPosLen], f)) {
		return model.Position{}, errCursor
	}
	return model.Position{
		CreatedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC(),
		ID:        int64(binary.BigEndian.Uint64(b[8:])),
	}, nil
}
