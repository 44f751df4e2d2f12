package api

import (
	"net/url"
	"strconv"

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
		case name == "language":
			q.Language = val
		case name == "customerId":
			q.CustomerID = val
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
	for _, p := range []struct{ name, val string }{{"language", q.Language}, {"customerId", q.CustomerID}} {
		if _, given := params[p.name]; given && p.val == "" {
			v.Add(p.name, "must not be empty; leave it out to match every value")
		}
	}
	return q, v.Err()
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
