package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// Errors the HTTP layer itself raises, beside the model vocabulary.
var (
	errTooLarge         = errors.New("request body too large")
	errUnauthorized     = errors.New("unauthorized")
	errForbidden        = errors.New("forbidden")
	errNoRoute          = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed")
)

// kind is how one error kind is answered.
type kind struct {
	status int
	slug   string // the last part of the problem type URI
	title  string
}

// kinds is the one table that maps errors to HTTP statuses.
var kinds = []struct {
	err error
	kind
}{
	{model.ErrInvalid, kind{http.StatusBadRequest, "invalid-request", "Invalid request"}},
	{errTooLarge, kind{http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large"}},
	{errUnauthorized, kind{http.StatusUnauthorized, "unauthorized", "Authentication required"}},
	{errForbidden, kind{http.StatusForbidden, "forbidden", "Not allowed for this credential"}},
	{model.ErrNotFound, kind{http.StatusNotFound, "not-found", "Not found"}},
	{errNoRoute, kind{http.StatusNotFound, "no-such-route", "No such route"}},
	{errMethodNotAllowed, kind{http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed"}},
	{model.ErrConflict, kind{http.StatusConflict, "conflict", "Conflict"}},
	{model.ErrLimit, kind{http.StatusUnprocessableEntity, "dialogue-full", "Dialogue holds the most pending messages allowed"}},
	{model.ErrTooLarge, kind{http.StatusUnprocessableEntity, "too-large", "Too large for one reply"}},
	{model.ErrFull, kind{http.StatusServiceUnavailable, "pending-store-full", "Too many pending dialogues"}},
	{model.ErrUnavailable, kind{http.StatusServiceUnavailable, "unavailable", "Service unavailable"}},
}

var internal = kind{http.StatusInternalServerError, "internal", "Internal server error"}

// problemTypePrefix starts every problem type URI; the README lists them.
const problemTypePrefix = "urn:data-api:problem:"

// retryAfterSeconds is what a 503 asks the caller to wait.
const retryAfterSeconds = 1

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string               `json:"type"`
	Title  string               `json:"title"`
	Status int                  `json:"status"`
	Detail string               `json:"detail"`
	Errors []model.FieldProblem `json:"errors,omitempty"`
}

// handle adapts a handler that returns an error: the one place where an
// error becomes a status code and a problem response.
func (h *Handler) handle(f func(*gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := f(c); err != nil {
			writeError(c, h.log, err)
		}
	}
}

// writeError answers err as problem+json. 5xx details are fixed sentences;
// the error chain goes to the log, which never holds message text.
func writeError(c *gin.Context, log *slog.Logger, err error) {
	if errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		c.Abort()
		return
	}
	k, detail := classify(err)
	p := problem{Type: problemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: detail}
	var v *model.ValidationError
	if errors.As(err, &v) {
		p.Errors = v.Problems
		if len(v.Problems) == 1 {
			p.Detail = v.Problems[0].Field + " " + v.Problems[0].Detail
		} else {
			p.Detail = "the request has " + strconv.Itoa(len(v.Problems)) + " problems, listed in errors"
		}
	}
	switch {
	case k.status >= 500:
		log.ErrorContext(c.Request.Context(), "request failed", "route", route(c), "status", k.status, "err", err)
	case errors.Is(err, errInvalidToken):
		c.Header("WWW-Authenticate", `Bearer realm="data-api", error="invalid_token"`)
	case k.status == http.StatusUnauthorized:
		c.Header("WWW-Authenticate", `Bearer realm="data-api"`)
	}
	if k.status == http.StatusServiceUnavailable {
		c.Header("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	writeProblem(c, p)
}

func writeProblem(c *gin.Context, p problem) {
	body, _ := json.Marshal(p)
	c.Abort()
	writeBytes(c, p.Status, problemContentType, append(body, '\n'))
}

// writeJSON answers v as JSON ended by a newline, as every JSON reply and
// problem is; gin's c.JSON writes none. Like c.JSON, it panics if v does not
// marshal, which the reply types always do.
func writeJSON(c *gin.Context, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	writeBytes(c, status, jsonContentType, append(body, '\n'))
}

// The Content-Type headers of the replies, shared: a reply's header holds
// the slice, which nothing changes in place.
var (
	jsonContentType    = []string{"application/json; charset=utf-8"}
	problemContentType = []string{"application/problem+json"}
)

// writeBytes answers status with body, as gin's c.Data does but without its
// render value and header slice per reply.
func writeBytes(c *gin.Context, status int, contentType []string, body []byte) {
	c.Writer.Header()["Content-Type"] = contentType
	c.Writer.WriteHeader(status)
	_, _ = c.Writer.Write(body)
}

// classify finds err's kind and the detail to show for it.
func classify(err error) (kind, string) {
	for _, k := range kinds {
		if !errors.Is(err, k.err) {
			continue
		}
		var me *model.Error
		if errors.As(err, &me) {
			return k.kind, me.Detail
		}
		return k.kind, defaultDetail(k.kind)
	}
	return internal, defaultDetail(internal)
}

func defaultDetail(k kind) string {
	switch k.status {
	case http.StatusServiceUnavailable:
		return "the service cannot answer right now; retry after the Retry-After delay"
	case http.StatusInternalServerError:
		return "the server failed to handle the request; it has been logged, retry later"
	}
	return k.title
}
