package api

import (
	_ "embed"

	"github.com/gin-gonic/gin"
)

// openAPIDocument is the OpenAPI 3 description of the contract.
//
//go:embed openapi.json
var openAPIDocument []byte

func (h *Handler) openAPI(c *gin.Context) {
	c.Data(200, "application/json", openAPIDocument)
}
