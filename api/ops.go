package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

func (h *Handler) healthz(c *gin.Context) error {
	writeJSON(c, http.StatusOK, gin.H{"status": "ok"})
	return nil
}

// readyTimeout bounds the database check of /readyz.
const readyTimeout = 2 * time.Second

func (h *Handler) readyz(c *gin.Context) error {
	if h.draining.Load() {
		return model.Errorf(model.ErrUnavailable, "the server is shutting down")
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
	defer cancel()
	if err := h.svc.Ready(ctx); err != nil {
		h.log.WarnContext(c.Request.Context(), "not ready", "err", err)
		return model.Errorf(model.ErrUnavailable, "the database does not answer")
	}
	writeJSON(c, http.StatusOK, gin.H{"status": "ready"})
	return nil
}
