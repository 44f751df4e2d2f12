package api

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
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

// consentBody is the object form of a decision.
type consentBody struct {
	Consent *bool                     `json:"consent"`
	Unknown map[string]jsontext.Value `json:",embed"`
}

// parseConsent reads a decision from the raw body. encoding/json alone would
// turn null into false, and false deletes data, so only the two literals, as
// such or as the "consent" member of an object, are accepted; an object
// that names consent twice, in any spelling, is ambiguous and refused.
func parseConsent(body []byte) (bool, error) {
	switch string(bytes.Trim(body, " \t\r\n")) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	var obj consentBody
	err := decodeObject(body, &obj)
	if err == nil {
		err = refuseCaseVariants(obj.Unknown, "consent")
	}
	var ambiguous *model.Error
	switch {
	case errors.As(err, &ambiguous) && errors.Is(err, errAmbiguousMember):
		return false, model.Errorf(model.ErrInvalid, ambiguous.Detail+` (the body must be the JSON literal true or false, or {"consent": true} or {"consent": false})`)
	case err != nil || obj.Consent == nil:
		return false, errConsentBody
	}
	return *obj.Consent, nil
}
