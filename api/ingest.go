package api

import (
	"encoding/json/jsontext"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

type messageBody struct {
	Text     string `json:"text"`
	Language string `json:"language"`
	// Unknown takes the members no field names: ignored, unless one is a
	// known name in another case.
	Unknown map[string]jsontext.Value `json:",embed"`
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
	if err := refuseCaseVariants(m.Unknown, "text", "language"); err != nil {
		return err
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
	// the hottest endpoint is written without reflection, into a pooled
	// buffer that the server copies.
	buf := lineBuffers.Get().(*[]byte)
	reply := append((*buf)[:0], `{"customerId":"`...)
	reply = append(reply, customer...)
	reply = append(reply, `","dialogId":"`...)
	reply = append(reply, dialogue...)
	reply = append(reply, `","pendingMessages":`...)
	reply = strconv.AppendInt(reply, int64(n), 10)
	reply = append(reply, "}\n"...)
	writeBytes(c, http.StatusAccepted, jsonContentType, reply)
	*buf = reply
	lineBuffers.Put(buf)
	return nil
}
