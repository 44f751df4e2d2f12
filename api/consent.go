package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

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
	out, err := h.svc.Consent(c.Request.Context(), c.Param("dialogId"), consent, callerName(c))
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

var errConsentBody = model.Errorf(model.ErrInvalid,
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
