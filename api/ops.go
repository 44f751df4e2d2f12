package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/service"
)

func (h *Handler) healthz(c *gin.Context) error {
	writeJSON(c, http.StatusOK, gin.H{"status": "ok"})
	return nil
}

// readyTimeout bounds the checks of /readyz.
const readyTimeout = 2 * time.Second

var errDraining = errors.New("the server is shutting down")

// ready is the check of /readyz (and of the data_api_ready gauge): nil when
// the server is not draining and the service is ready.
func (h *Handler) ready(ctx context.Context) error {
	if h.draining.Load() {
		return errDraining
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	return h.svc.Ready(ctx)
}

func (h *Handler) readyz(c *gin.Context) error {
	err := h.ready(c.Request.Context())
	switch {
	case err == nil:
		writeJSON(c, http.StatusOK, gin.H{"status": "ready"})
		return nil
	case errors.Is(err, errDraining):
		return model.Errorf(model.ErrUnavailable, errDraining.Error())
	}
	h.log.WarnContext(c.Request.Context(), "not ready", "err", err)
	if errors.Is(err, service.ErrNotCommitting) {
		return model.Errorf(model.ErrUnavailable, "the database does not commit writes: the last writes failed")
	}
	return model.Errorf(model.ErrUnavailable, "the database does not answer")
}
