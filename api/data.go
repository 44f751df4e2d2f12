package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/data-api/data-api/model"
	"github.com/gin-gonic/gin"
)

// timeFormat is RFC 3339 in UTC with all nine digits of the nanoseconds.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// readBody reads the whole request body, refusing one over the limit while
// reading rather than after, and one that is not valid UTF-8.
func (h *Handler) readBody(c *gin.Context) ([]byte, error) {
	r := http.MaxBytesReader(c.Writer, c.Request.Body, h.o.MaxBodyBytes)
	body, err := io.ReadAll(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fail(errTooLarge, "the request body exceeds "+strconv.FormatInt(h.o.MaxBodyBytes, 10)+" bytes (limits.max_body_bytes)")
		}
		return nil, fail(model.ErrInvalid, "the request body could not be read")
	}
	if !utf8.Valid(body) {
		return nil, fail(model.ErrInvalid, "the request body is not valid UTF-8")
	}
	return body, nil
}

type messageBody struct {
	Text     string `json:"text"`
	Language string `json:"language"`
}

func (h *Handler) ingest(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	body, err := h.readBody(c)
	if err != nil {
		return err
	}
	var m messageBody
	if err := decodeObject(body, &m); err != nil {
		return err
	}
	if strings.ContainsRune(m.Text, utf8.RuneError) && hasLoneSurrogate(body) {
		return fail(model.ErrInvalid, `text contains a \u escape of an unpaired UTF-16 surrogate, which is not valid text`)
	}
	customer, dialogue := c.Param("customerId"), c.Param("dialogId")
	n, err := h.svc.Ingest(c.Request.Context(), model.Message{
		CustomerID: customer,
		DialogueID: dialogue,
		Language:   m.Language,
		Text:       m.Text,
	})
	if err != nil {
		return err
	}
	// Identifiers are validated to need no JSON escaping, so the reply of
	// the hottest endpoint is written without reflection.
	reply := make([]byte, 0, 64+len(customer)+len(dialogue))
	reply = append(reply, `{"customerId":"`...)
	reply = append(reply, customer...)
	reply = append(reply, `","dialogId":"`...)
	reply = append(reply, dialogue...)
	reply = append(reply, `","pendingMessages":`...)
	reply = strconv.AppendInt(reply, int64(n), 10)
	reply = append(reply, "}\n"...)
	c.Data(http.StatusAccepted, "application/json; charset=utf-8", reply)
	return nil
}

// decodeObject decodes a body that must be exactly one JSON object.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fail(model.ErrInvalid, `the body must be a JSON object such as {"text": "…", "language": "en"}`)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return fail(model.ErrInvalid, typeErr.Field+" must be a JSON "+jsonKind(typeErr.Type.Kind().String()))
		case errors.As(err, &syntaxErr) && strings.HasPrefix(syntaxErr.Error(), "invalid character") && strings.Contains(syntaxErr.Error(), "after top-level value"):
			return fail(model.ErrInvalid, "the body holds data after its JSON object")
		}
		return fail(model.ErrInvalid, "the body is not well-formed JSON")
	}
	return nil
}

func jsonKind(goKind string) string {
	if goKind == "bool" {
		return "boolean"
	}
	return goKind
}

// hasLoneSurrogate reports whether a JSON text holds a \u escape of a UTF-16
// surrogate that is not part of a pair: encoding/json would silently turn it
// into U+FFFD, and text is rejected rather than replaced.
func hasLoneSurrogate(body []byte) bool {
	for i := 0; i+6 <= len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if body[i+1] != 'u' {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		r := hex4(body[i+2 : i+6])
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 > len(body) || body[i+6] != '\\' || body[i+7] != 'u' {
				return true
			}
			if lo := hex4(body[i+8 : i+12]); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return -1
		}
	}
	return r
}

type consentReply struct {
	DialogueID      string `json:"dialogId"`
	CustomerID      string `json:"customerId,omitempty"`
	Consent         bool   `json:"consent"`
	StoredMessages  *int   `json:"storedMessages,omitempty"`
	DeletedMessages *int   `json:"deletedMessages,omitempty"`
	DroppedMessages *int   `json:"droppedMessages,omitempty"`
}

func (h *Handler) consent(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	body, err := h.readBody(c)
	if err != nil {
		return err
	}
	consent, err := parseConsent(body)
	if err != nil {
		return err
	}
	out, err := h.svc.Consent(c.Request.Context(), c.Param("dialogId"), consent, keyName(c))
	if err != nil {
		return err
	}
	r := consentReply{DialogueID: c.Param("dialogId"), CustomerID: out.CustomerID, Consent: consent}
	if consent {
		r.StoredMessages = &out.Stored
	} else {
		r.DeletedMessages, r.DroppedMessages = &out.Deleted, &out.Dropped
	}
	writeJSON(c, http.StatusOK, r)
	return nil
}

var errConsentBody = fail(model.ErrInvalid,
	`the body must be the JSON literal true or false, or {"consent": true} or {"consent": false}`)

// parseConsent reads a decision from the raw body. encoding/json alone would
// turn null into false, and false deletes data, so only the two literals, as
// such or as the "consent" member of an object, are accepted.
func parseConsent(body []byte) (bool, error) {
	switch string(bytes.Trim(body, " \t\r\n")) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	var obj map[string]json.RawMessage
	if err := decodeObject(body, &obj); err != nil {
		return false, errConsentBody
	}
	switch string(obj["consent"]) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errConsentBody
}

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
	q, err := h.parseQuery(c, true)
	if err != nil {
		return err
	}
	msgs, more, err := h.svc.Messages(c.Request.Context(), q)
	if err != nil {
		return err
	}
	r := pageReply{Data: make([]messageJSON, len(msgs))}
	for i, m := range msgs {
		r.Data[i] = toJSON(m)
	}
	if more {
		last := msgs[len(msgs)-1]
		next := h.cursors.encode(q.Filter, model.Position{CreatedAt: last.CreatedAt, ID: last.ID})
		r.NextCursor = &next
		c.Header("Link", "<"+nextURL(c, next)+`>; rel="next"`)
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
	q, err := h.parseQuery(c, false)
	if err != nil {
		return err
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

type erasureReply struct {
	CustomerID      string `json:"customerId"`
	DeletedMessages int    `json:"deletedMessages"`
	DroppedMessages int    `json:"droppedMessages"`
}

func (h *Handler) erase(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	out, err := h.svc.Erase(c.Request.Context(), c.Param("customerId"), keyName(c))
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, erasureReply{c.Param("customerId"), out.Deleted, out.Dropped})
	return nil
}

func (h *Handler) healthz(c *gin.Context) error {
	writeJSON(c, http.StatusOK, gin.H{"status": "ok"})
	return nil
}

// readyTimeout bounds the database check of /readyz.
const readyTimeout = 2 * time.Second

func (h *Handler) readyz(c *gin.Context) error {
	if h.draining.Load() {
		return fail(model.ErrUnavailable, "the server is shutting down")
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
	defer cancel()
	if err := h.svc.Ready(ctx); err != nil {
		h.log.WarnContext(c.Request.Context(), "not ready", "err", err)
		return fail(model.ErrUnavailable, "the database does not answer")
	}
	writeJSON(c, http.StatusOK, gin.H{"status": "ready"})
	return nil
}
