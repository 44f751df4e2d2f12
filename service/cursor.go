package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/data-api/data-api/model"
)

// cursorCodec makes opaque, tamper-evident cursors: a position signed with
// HMAC-SHA-256 together with the canonical filter it was issued for, so that
// a cursor can be neither forged nor reused with another filter.
type cursorCodec struct {
	secret []byte
}

const (
	cursorPosLen = 16 // created_at (ns) and id, 8 bytes each
	cursorMACLen = 16
)

// mac signs pos with f. No field of a valid filter holds a NUL byte, so
// NULs separate them; the fields added after language and customer are
// signed only when set, so that cursors issued before they existed stay
// valid.
func (cc cursorCodec) mac(pos []byte, f model.Filter) []byte {
	m := hmac.New(sha256.New, cc.secret)
	m.Write(pos)
	m.Write([]byte(f.Language))
	m.Write([]byte{0})
	m.Write([]byte(f.CustomerID))
	if f.DialogueID != "" || !f.Since.IsZero() || !f.Until.IsZero() {
		for _, field := range []string{f.DialogueID, formatBound(f.Since), formatBound(f.Until)} {
			m.Write([]byte{0})
			m.Write([]byte(field))
		}
	}
	return m.Sum(nil)[:cursorMACLen]
}

// formatBound returns t in UTC to the nanosecond, or "" for no bound.
func formatBound(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (cc cursorCodec) encode(f model.Filter, p model.Position) string {
	b := make([]byte, cursorPosLen, cursorPosLen+cursorMACLen)
	binary.BigEndian.PutUint64(b, uint64(p.CreatedAt.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], uint64(p.ID))
	b = append(b, cc.mac(b, f)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errCursor = model.Errorf(model.ErrInvalid,
	"cursor was not issued by this service for these filters; use nextCursor of the previous page with the same language, customerId, dialogId, since and until")

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
