package api

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// parseQuery reads the filters of GET /data and /data/export, and with paged
// also limit and cursor. Unknown or repeated parameters are refused, so that
// a typo never silently widens a query; the service checks the values.
func parseQuery(c *gin.Context, paged bool) (model.Query, error) {
	q := model.Query{Limit: model.DefaultLimit}
	var v model.ValidationError
	params, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return q, model.Errorf(model.ErrInvalid, "the query string is malformed; escape reserved characters with %XX")
	}
	for name, values := range params {
		if len(values) > 1 {
			v.Add(name, "must be given at most once")
			continue
		}
		val := values[0]
		switch {
		case val == "" && name != "cursor" && name != "limit" && isKnown(name, paged):
			v.Add(name, "must not be empty; leave it out to match every value")
		case name == "language":
			q.Language = val
		case name == "customerId":
			q.CustomerID = val
		case name == "dialogId":
			q.DialogueID = val
		case name == "since":
			q.Since = parseTime(&v, name, val)
		case name == "until":
			q.Until = parseTime(&v, name, val)
		case name == "limit" && paged:
			n, err := strconv.Atoi(val)
			if err != nil {
				v.Add("limit", "must be an integer")
			}
			q.Limit = n
		case name == "cursor" && paged:
			q.Cursor = val
		default:
			v.Add(name, "is not a known query parameter; known: "+knownParams(paged))
		}
	}
	return q, v.Err()
}

var (
	filterParams = []string{"language", "customerId", "dialogId", "since", "until"}
	pageParams   = []string{"limit", "cursor"}
)

func isKnown(name string, paged bool) bool {
	return slices.Contains(filterParams, name) || paged && slices.Contains(pageParams, name)
}

func knownParams(paged bool) string {
	if paged {
		return strings.Join(append(slices.Clone(filterParams), pageParams...), ", ")
	}
	return strings.Join(filterParams, ", ")
}

// parseTime reads an RFC 3339 time with its offset, such as
// 2026-11-26T21:36:04Z or 2026-11-26T22:36:04.5+01:00, and adds a problem
// to v for anything else.
func parseTime(v *model.ValidationError, name, s string) time.Time {
	// RFC 3339 allows a lower-case t and z.
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	if err == nil {
		return t
	}
	detail := "must be an RFC 3339 time with its offset, such as 2026-11-26T21:36:04Z or 2026-11-26T22:36:04.5+01:00"
	if strings.Contains(s, " ") {
		// A + left unescaped in a query string arrives as a space.
		detail += "; in a URL, write the + of an offset as %2B"
	}
	v.Add(name, detail)
	return time.Time{}
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
