package api

import (
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

	e.Use(h.requestID, h.logRequests, h.o.Metrics.instrument, h.recoverPanic)

	ingest, analyst, admin := h.require(roleIngest), h.require(roleAnalyst), h.require(roleAdmin)
	metrics := h.require("")
	if h.o.MetricsOpen {
		metrics = func(*gin.Context) {}
	}
	e.POST("/data/:customerId/:dialogId", ingest, h.handle(h.ingest))
	e.POST("/consents/:dialogId", ingest, h.handle(h.consent))
	e.GET("/data", analyst, h.handle(h.query))
	e.GET("/data/", analyst, h.handle(h.query))
	e.GET("/data/export", analyst, h.handle(h.export))
	e.GET("/consents/:dialogId", analyst, h.handle(h.decision))
	e.GET("/dialogues/:dialogId", analyst, h.handle(h.dialogue))
	e.DELETE("/customers/:customerId/data", admin, h.handle(h.erase))
	none := h.handle(noQuery) // refuses any query parameter, as everywhere
	e.GET("/healthz", none, h.handle(h.healthz))
	e.GET("/readyz", none, h.handle(h.readyz))
	e.GET("/metrics", metrics, none, gin.WrapH(h.o.Metrics.handler()))
	e.GET("/openapi.json", none, h.openAPI)

	e.NoRoute(h.handle(noRoute))
	e.NoMethod(h.handle(noMethod))
	return e
}

func noRoute(c *gin.Context) error {
	return model.Errorf(errNoRoute, "no endpoint matches this path; see /openapi.json")
}

func noMethod(c *gin.Context) error {
	return model.Errorf(errMethodNotAllowed, "this path does not accept "+c.Request.Method+"; see /openapi.json")
}
