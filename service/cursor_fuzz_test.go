package service

import (
	"errors"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
)

// FuzzCursor: no string decodes to a position but one the codec issued for
// the same filter; what it issues decodes to what it encoded.
func FuzzCursor(f *testing.F) {
	cc := cursorCodec{secret: []byte("a-cursor-secret-of-32-characters")}
	f.Fuzz(func(t *testing.T, s, language, customer string, ns, id int64) {
		// Cursors are checked against the canonical filter of a request
		// that passed validation: other filters cannot occur.
		if c, err := model.CanonicalLanguage(language); err != nil || c != language {
			language = ""
		}
		if model.ValidateID(customer) != nil {
			customer = ""
		}
		filter := model.Filter{Language: language, CustomerID: customer}

		if p, err := cc.decode(s, filter); err != nil {
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("decode(%q): %v, want an invalid-request error", s, err)
			}
		} else if q, err := cc.decode(cc.encode(filter, p), filter); err != nil || !q.CreatedAt.Equal(p.CreatedAt) || q.ID != p.ID {
			t.Fatalf("decode(%q) = %+v, which round-trips to %+v, %v", s, p, q, err)
		}

		p := model.Position{CreatedAt: time.Unix(0, ns).UTC(), ID: id}
		c := cc.encode(filter, p)
		if got, err := cc.decode(c, filter); err != nil || !got.CreatedAt.Equal(p.CreatedAt) || got.ID != p.ID {
			t.Fatalf("%+v with %+v: decodes to %+v, %v", p, filter, got, err)
		}
		for _, other := range []model.Filter{
			{Language: filter.Language, CustomerID: filter.CustomerID + "x"},
			{Language: filter.Language + "-x-a", CustomerID: filter.CustomerID},
			{Language: filter.CustomerID, CustomerID: filter.Language},
		} {
			if other == filter {
				continue
			}
			if got, err := cc.decode(c, other); err == nil {
				t.Fatalf("a cursor for %+v decodes for %+v to %+v", filter, other, got)
			}
		}
	})
}
