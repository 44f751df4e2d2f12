package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

type erasureReply struct {
	CustomerID      string `json:"customerId"`
	DeletedMessages int    `json:"deletedMessages"`
	DroppedMessages int    `json:"droppedMessages"`
}

func (h *Handler) erase(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	out, err := h.svc.Erase(c.Request.Context(), c.Param("customerId"), callerName(c))
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, erasureReply{c.Param("customerId"), out.Deleted, out.Dropped})
	return nil
}
