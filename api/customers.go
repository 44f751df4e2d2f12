package api

import (
	"bufio"
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
	const contentType = "application/x-ndjson"
	if c.Request.Method == http.MethodHead {
		err := h.svc.CustomerData(ctx, id, func(model.CustomerRecord) error { return errHeadOnly })
		if err != nil && !errors.Is(err, errHeadOnly) {
			return err
		}
		c.Header("Content-Type", contentType)
		c.Status(http.StatusOK)
		return nil
	}
	out := &stallWriter{w: c.Writer, rc: http.NewResponseController(c.Writer), stall: h.o.ExportStallTimeout}
	var (
		bw   *bufio.Writer
		rows ndjsonRows
		n    int
	)
	start := func() {
		c.Header("Content-Type", contentType)
		c.Status(http.StatusOK)
		bw = bufio.NewWriterSize(out, exportBuffer)
		rows = ndjsonFormat.start(bw).(ndjsonRows)
	}
	err := h.svc.CustomerData(ctx, id, func(r model.CustomerRecord) error {
		if bw == nil {
			start()
		}
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
		if err := rows.enc.Encode(line); err != nil {
			return err
		}
		if n++; n%exportFlushRows == 0 {
			return flushExport(rows, bw, out)
		}
		return nil
	})
	if bw == nil {
		if err != nil {
			return err
		}
		start()
	}
	if err == nil {
		err = flushExport(rows, bw, out)
	}
	if err != nil && !c.Writer.Written() {
		c.Writer.Header().Del("Content-Type")
		return err
	}
	if err != nil {
		// As an export's: the client must see a body cut short.
		h.log.WarnContext(ctx, "right-of-access document ended early", "records", n, "err", err)
		cutConnection(c.Writer)
	}
	return nil
}
