package api

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// routes builds the engine with the whole route table.
func (h *Handler) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	// Match on the path as sent, so that an encoded "/" in an id is part of
	// the id (and refused by its validation), never a separator that
	// splits it into the segments of another route.
	e.UseEscapedPath = true
	e.UnescapePathValues = true

	e.Use(h.requestID, h.logRequests, h.o.Metrics.instrument, h.recoverPanic, h.checkOrigin)

	ingest, analyst, admin := h.require(roleIngest), h.require(roleAnalyst), h.require(roleAdmin)
	metrics := h.require("")
	if h.o.MetricsOpen {
		metrics = func(*gin.Context) {}
	}
	h.withIDs(e, "POST", "/data/:customerId/:dialogId", ingest, h.handle(h.ingest))
	h.withIDs(e, "POST", "/consents/:dialogId", h.requireCaller(roleIngest), h.handle(h.consent))
	get(e, "/data", analyst, h.handle(h.query))
	get(e, "/data/", analyst, h.handle(h.query))
	get(e, "/data/export", analyst, h.handle(h.export))
	h.withIDs(e, "GET", "/consents/:dialogId", analyst, h.handle(h.decision))
	h.withIDs(e, "GET", "/dialogues/:dialogId", analyst, h.handle(h.dialogue))
	h.withIDs(e, "GET", "/customers/:customerId/data", admin, h.handle(h.customerData))
	h.withIDs(e, "DELETE", "/customers/:customerId/data", h.requireCaller(roleAdmin), h.handle(h.erase))
	none := h.handle(noQuery) // refuses any query parameter, as everywhere
	get(e, "/healthz", none, h.handle(h.healthz))
	get(e, "/readyz", none, h.handle(h.readyz))
	get(e, "/metrics", metrics, none, gin.WrapH(h.o.Metrics.handler()))
	get(e, "/openapi.json", none, h.openAPI)

	e.NoRoute(h.handle(h.noRoute))
	e.NoMethod(h.handle(noMethod))
	return e
}

// idRoute is a route whose path holds ids, kept to answer a path that
// matches it but for an empty id: gin matches no route then.
type idRoute struct {
	method   string
	segments []string // of the pattern: "data", ":customerId", …
	guard    gin.HandlerFunc
}

// get registers a GET route and its HEAD twin: HEAD is answered wherever GET
// is, by the same handlers, and net/http sends the status and headers
// without the body (a handler that streams, as the export, stops early).
func get(e *gin.Engine, pattern string, handlers ...gin.HandlerFunc) {
	e.GET(pattern, handlers...)
	e.HEAD(pattern, handlers...)
}

// withIDs registers a route whose path holds ids, guarded by guard, and for
// GET its HEAD twin.
func (h *Handler) withIDs(e *gin.Engine, method, pattern string, guard, handler gin.HandlerFunc) {
	methods := []string{method}
	if method == http.MethodGet {
		methods = append(methods, http.MethodHead)
	}
	for _, m := range methods {
		e.Handle(m, pattern, guard, handler)
		h.idRoutes = append(h.idRoutes, idRoute{m, strings.Split(pattern, "/"), guard})
	}
}

// pathID is an id in a path: its parameter's name and its value.
type pathID struct{ name, value string }

// ids returns the ids of the path segments when they match the route's
// pattern.
func (r idRoute) ids(segments []string) ([]pathID, bool) {
	if len(segments) != len(r.segments) {
		return nil, false
	}
	var ids []pathID
	for i, p := range r.segments {
		name, isParam := strings.CutPrefix(p, ":")
		switch {
		case isParam:
			v, err := url.PathUnescape(segments[i])
			if err != nil {
				return nil, false
			}
			ids = append(ids, pathID{name, v})
		case p != segments[i]:
			return nil, false
		}
	}
	return ids, true
}

// noRoute answers a path no route matches. One that a route's pattern
// matches but for an empty id, such as /consents/, gets what that id gets
// anywhere: the route's authentication, then a 400 naming the parameter
// (never a 404, which a client reads as "no decision recorded"); with
// another method, a 405.
func (h *Handler) noRoute(c *gin.Context) error {
	segments := strings.Split(c.Request.URL.EscapedPath(), "/")
	var allowed []string
	for _, r := range h.idRoutes {
		ids, ok := r.ids(segments)
		if !ok {
			continue
		}
		if r.method != c.Request.Method {
			allowed = append(allowed, r.method)
			continue
		}
		if r.guard(c); c.IsAborted() {
			return nil
		}
		var v model.ValidationError
		for _, id := range ids {
			if err := model.ValidateID(id.value); err != nil {
				v.Add(id.name, err.Error())
			}
		}
		if err := v.Err(); err != nil {
			return err
		}
	}
	if len(allowed) > 0 {
		c.Header("Allow", strings.Join(allowed, ", "))
		return noMethod(c)
	}
	return model.Errorf(errNoRoute, "no endpoint matches this path; see /openapi.json")
}

func noMethod(c *gin.Context) error {
	return model.Errorf(errMethodNotAllowed, "this path does not accept "+c.Request.Method+"; see /openapi.json")
}
