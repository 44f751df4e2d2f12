package api

import "github.com/gin-gonic/gin"

// Routes returns the route table of h's engine, for tests that compare it
// with the OpenAPI document.
func Routes(h *Handler) []gin.RouteInfo { return h.engine.Routes() }
