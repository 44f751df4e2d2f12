package api

import (
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// CORS answers for an allowed origin.
const (
	corsMethods = "GET, HEAD, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, X-Request-ID"
	corsExpose  = "Link, Retry-After, WWW-Authenticate, X-Request-ID"
	corsMaxAge  = "600"
)

// checkOrigin refuses a request that a web page made, unless its origin is
// one of Options.AllowedOrigins, before anything else looks at it. No
// legitimate caller of this API is a page, and a page can send a consent
// without a preflight (fetch(url, {method: "POST", mode: "no-cors", body:
// "false"})). A browser says a page made the request with Origin (always on
// a POST, including "null" from a sandboxed frame or a file) or with
// Sec-Fetch-Site cross-site or same-site (another origin of the same site);
// "same-origin" and "none" (the user opened the URL) pass. Clients that are
// not browsers send neither. An allowed origin gets CORS headers, and its
// preflight is answered here.
func (h *Handler) checkOrigin(c *gin.Context) {
	origin, hasOrigin := c.Request.Header["Origin"]
	site := c.GetHeader("Sec-Fetch-Site")
	switch {
	case hasOrigin && len(origin) == 1 && slices.Contains(h.o.AllowedOrigins, origin[0]):
	case hasOrigin:
		writeError(c, h.log, model.Errorf(errForbidden, "requests from web pages are refused: this Origin is not listed in server.allowed_origins"))
		return
	case site == "cross-site" || site == "same-site":
		writeError(c, h.log, model.Errorf(errForbidden, "requests from web pages of other sites are refused (Sec-Fetch-Site: "+site+"); list the page's origin in server.allowed_origins"))
		return
	default:
		return
	}
	hd := c.Writer.Header()
	hd.Set("Access-Control-Allow-Origin", origin[0])
	hd.Add("Vary", "Origin")
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		hd.Set("Access-Control-Allow-Methods", corsMethods)
		hd.Set("Access-Control-Allow-Headers", corsHeaders)
		hd.Set("Access-Control-Max-Age", corsMaxAge)
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	hd.Set("Access-Control-Expose-Headers", corsExpose)
}
