package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// timeFormat is RFC 3339 in UTC with all nine digits of the nanoseconds.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

type messageJSON struct {
	CustomerID string `json:"customerId"`
	DialogueID string `json:"dialogId"`
	Language   string `json:"language"`
	Text       string `json:"text"`
	CreatedAt  string `json:"createdAt"`
}

func toJSON(m model.StoredMessage) messageJSON {
	return messageJSON{m.CustomerID, m.DialogueID, m.Language, m.Text, m.CreatedAt.UTC().Format(timeFormat)}
}

type pageReply struct {
	Data       []messageJSON `json:"data"`
	NextCursor *string       `json:"nextCursor"`
}

func (h *Handler) query(c *gin.Context) error {
	q, err := parseQuery(c, true)
	if err != nil {
		return err
	}
	page, err := h.svc.Messages(c.Request.Context(), q)
	if err != nil {
		return err
	}
	r := pageReply{Data: make([]messageJSON, len(page.Messages))}
	for i, m := range page.Messages {
		r.Data[i] = toJSON(m)
	}
	if page.Next != "" {
		r.NextCursor = &page.Next
		c.Header("Link", "<"+nextURL(c, page.Next)+`>; rel="next"`)
	}
	writeJSON(c, http.StatusOK, r)
	return nil
}

// nextURL is the request's own URL with cursor replaced by next.
func nextURL(c *gin.Context, next string) string {
	v := c.Request.URL.Query()
	v.Set("cursor", next)
	return c.Request.URL.Path + "?" + v.Encode()
}

// exportFlushRows is how many rows the export buffers before flushing.
const exportFlushRows = 256

func (h *Handler) export(c *gin.Context) error {
	q, err := parseQuery(c, false)
	if err != nil {
		return err
	}
	if c.Request.Method == http.MethodHead {
		return h.exportHead(c, q.Filter)
	}
	// An export runs as long as it takes; the server's write timeout is for
	// ordinary requests.
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Time{})
	var (
		bw      *bufio.Writer
		enc     *json.Encoder
		pending int
	)
	err = h.svc.Export(c.Request.Context(), q.Filter, func(m model.StoredMessage) error {
		if bw == nil {
			c.Header("Content-Type", "application/x-ndjson")
			c.Status(http.StatusOK)
			bw = bufio.NewWriterSize(c.Writer, 64<<10)
			enc = json.NewEncoder(bw)
			enc.SetEscapeHTML(false)
		}
		if err := enc.Encode(toJSON(m)); err != nil {
			return err
		}
		if pending++; pending == exportFlushRows {
			pending = 0
			if err := bw.Flush(); err != nil {
				return err
			}
			c.Writer.Flush()
		}
		return nil
	})
	if bw == nil {
		if err != nil {
			return err
		}
		c.Data(http.StatusOK, "application/x-ndjson", nil)
		return nil
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// The status line is sent: all that is left is to log and cut the
		// stream short, which the client sees as a truncated last line.
		h.log.WarnContext(c.Request.Context(), "export ended early", "err", err)
		return nil
	}
	c.Writer.Flush()
	return nil
}

// errHeadOnly stops the export of a HEAD request at its first row.
var errHeadOnly = errors.New("HEAD: headers only")

// exportHead answers HEAD as GET would, without the stream: the filters are
// checked and the database asked for the first row, so that a bad filter or
// a database down answer as they would to GET.
func (h *Handler) exportHead(c *gin.Context, f model.Filter) error {
	err := h.svc.Export(c.Request.Context(), f, func(model.StoredMessage) error { return errHeadOnly })
	if err != nil && !errors.Is(err, errHeadOnly) {
		return err
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	return nil
}

type decisionReply struct {
	DialogueID string `json:"dialogId"`
	CustomerID string `json:"customerId"`
	Consent    bool   `json:"consent"`
	DecidedAt  string `json:"decidedAt"`
	Messages   int    `json:"messages"`
}

func (h *Handler) decision(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	d, err := h.svc.Decision(c.Request.Context(), c.Param("dialogId"))
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, decisionReply{d.DialogueID, d.CustomerID, d.Consent, d.DecidedAt.UTC().Format(timeFormat), d.Messages})
	return nil
}
