package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
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

// The lines of the right-of-access document, each with its kind.
type (
	messageLine struct {
		Kind string `json:"kind"` // "message"
		messageJSON
	}
	consentLine struct {
		Kind string `json:"kind"` // "consent"
		decisionReply
	}
	erasureLine struct {
		Kind       string `json:"kind"` // "erasure"
		CustomerID string `json:"customerId"`
		ErasedAt   string `json:"erasedAt"`
		Messages   int    `json:"messages"`
	}
)

// customerData answers the right of access: everything stored about the
// customer as NDJSON, one record per line with its kind, streamed as the
// export is (the status line with the first line, a stall timeout, the
// connection cut if the stream fails half-way). The ledger's caller names
// (API keys, token subjects) are the operator's, not the customer's data,
// and are left out.
func (h *Handler) customerData(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	ctx, id := c.Request.Context(), c.Param("customerId")
	if c.Request.Method == http.MethodHead {
		err := h.svc.CustomerData(ctx, id, func(model.CustomerRecord) error { return errHeadOnly })
		if err != nil && !errors.Is(err, errHeadOnly) {
			return err
		}
		c.Header("Content-Type", ndjsonFormat.contentType)
		c.Status(http.StatusOK)
		return nil
	}
	st := h.newStream(c, map[string]string{"Content-Type": ndjsonFormat.contentType}, ndjsonFormat.start)
	err := h.svc.CustomerData(ctx, id, func(r model.CustomerRecord) error {
		var line any
		switch {
		case r.Message != nil:
			line = messageLine{"message", toJSON(*r.Message)}
		case r.Decision != nil:
			line = consentLine{"consent", toDecisionReply(*r.Decision)}
		default:
			e := r.Erasure
			line = erasureLine{"erasure", e.CustomerID, e.ErasedAt.UTC().Format(timeFormat), e.Messages}
		}
		if err := st.next().(*ndjsonRows).writeValue(line); err != nil {
			return err
		}
		return st.wrote()
	})
	return st.end(err, "right-of-access document ended early", "records")
}
