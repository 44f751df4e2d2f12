package client

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// The problem types of the service (the README lists when each is
// answered).
const (
	TypeInvalidRequest   = "urn:data-api:problem:invalid-request"    // 400
	TypeUnauthorized     = "urn:data-api:problem:unauthorized"       // 401
	TypeForbidden        = "urn:data-api:problem:forbidden"          // 403
	TypeNotFound         = "urn:data-api:problem:not-found"          // 404: no pending dialogue, no decision, no dialogue stored
	TypeNoSuchRoute      = "urn:data-api:problem:no-such-route"      // 404: the URL names no endpoint (check the base URL)
	TypeMethodNotAllowed = "urn:data-api:problem:method-not-allowed" // 405
	TypeConflict         = "urn:data-api:problem:conflict"           // 409: the dialogue belongs to another customer
	TypeBodyTooLarge     = "urn:data-api:problem:body-too-large"     // 413
	TypeDialogueFull     = "urn:data-api:problem:dialogue-full"      // 422: send the dialogue's consent decision first
	TypeTooLarge         = "urn:data-api:problem:too-large"          // 422: ask for it in pages
	TypePendingStoreFull = "urn:data-api:problem:pending-store-full" // 503
	TypeUnavailable      = "urn:data-api:problem:unavailable"        // 503
	TypeInternal         = "urn:data-api:problem:internal"           // 500
)

// Problem is an error response of the service, an RFC 9457 problem. A
// response that is not a problem document (from a proxy, say) is a Problem
// of Type "about:blank" with the status's text as its Title.
type Problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail"` // what to fix
	Errors []FieldProblem `json:"errors"` // for an invalid request: every problem with it
	// RetryAfter is what the Retry-After header asked to wait, 0 if none.
	RetryAfter time.Duration `json:"-"`

	fromService bool // the body was the service's problem document
}

// FieldProblem is what is wrong with one field of an invalid request.
type FieldProblem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string {
	s := "data api: " + strconv.Itoa(p.Status) + " " + p.Title
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// maxProblemBytes bounds what is read of an error response.
const maxProblemBytes = 64 << 10

// readProblem reads resp, an error response, as a Problem and closes its
// body.
func readProblem(resp *http.Response) *Problem {
	defer resp.Body.Close()
	p := &Problem{RetryAfter: retryAfter(resp.Header)}
	media, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if media == "application/problem+json" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxProblemBytes))
		if err == nil && json.Unmarshal(body, p) == nil && p.Type != "" {
			p.fromService = true
		}
	}
	if !p.fromService {
		*p = Problem{Type: "about:blank", Title: http.StatusText(resp.StatusCode), RetryAfter: p.RetryAfter}
		// Read a little of what it is, so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProblemBytes))
	}
	p.Status = resp.StatusCode
	return p
}

// problemOf returns err's Problem, or nil.
func problemOf(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return nil
}

// IsNotFound reports whether err is the service's 404 not-found: no
// pending dialogue to consent to, no decision recorded, no dialogue stored.
// A 404 no-such-route (a wrong base URL) is not.
func IsNotFound(err error) bool {
	p := problemOf(err)
	return p != nil && p.Type == TypeNotFound
}

// IsInvalid reports whether err is a 400: the request must be fixed, as
// the Problem's Detail and Errors say.
func IsInvalid(err error) bool {
	p := problemOf(err)
	return p != nil && p.Status == http.StatusBadRequest
}

// IsConflict reports whether err is a 409: the dialogue belongs to another
// customer.
func IsConflict(err error) bool {
	p := problemOf(err)
	return p != nil && p.Type == TypeConflict
}

// IsUnavailable reports whether err is a 503 that outlasted the retries:
// the service asks to be called again later.
func IsUnavailable(err error) bool {
	p := problemOf(err)
	return p != nil && p.Status == http.StatusServiceUnavailable
}
