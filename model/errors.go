// Package model holds Data API's domain types, their validation and the
// error vocabulary shared by every layer. It knows nothing of HTTP or SQL.
package model

import (
	"errors"
	"strings"
)

// The error kinds every layer speaks. The api package maps each to one HTTP
// status; nothing else in the code base chooses a status.
var (
	ErrInvalid     = errors.New("invalid input")           // the caller must fix the request
	ErrNotFound    = errors.New("not found")               // nothing matches
	ErrConflict    = errors.New("conflict")                // the request contradicts recorded state
	ErrLimit       = errors.New("limit reached")           // a per-dialogue cap is reached
	ErrTooLarge    = errors.New("too large to answer")     // the answer exceeds what one response holds; ask for less
	ErrFull        = errors.New("pending store is full")   // retry later
	ErrUnavailable = errors.New("temporarily unavailable") // a dependency failed; retry later
)

// Error is an error of one of the kinds above with a sentence for the caller.
// Detail is safe to show to a client: it never holds message text or
// internal error strings.
type Error struct {
	Kind   error
	Detail string
}

// Errorf returns an *Error of kind with detail.
func Errorf(kind error, detail string) *Error {
	return &Error{Kind: kind, Detail: detail}
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Detail }

// Unwrap lets errors.Is match the kind.
func (e *Error) Unwrap() error { return e.Kind }

// FieldProblem says what is wrong with one field of a request.
type FieldProblem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError lists every problem found in a request, so that the caller
// can fix them all at once. It is of kind ErrInvalid.
type ValidationError struct {
	Problems []FieldProblem
}

// Add records a problem with field.
func (v *ValidationError) Add(field, detail string) {
	v.Problems = append(v.Problems, FieldProblem{Field: field, Detail: detail})
}

// Err returns v as an error when it holds problems, nil otherwise.
func (v *ValidationError) Err() error {
	if len(v.Problems) == 0 {
		return nil
	}
	return v
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Problems))
	for i, p := range v.Problems {
		parts[i] = p.Field + ": " + p.Detail
	}
	return strings.Join(parts, "; ")
}

// Unwrap makes a ValidationError match ErrInvalid.
func (v *ValidationError) Unwrap() error { return ErrInvalid }

// ErrOtherCustomer refuses a message for a dialogue of another customer: a
// dialogue belongs for good to the customer of its first message.
var ErrOtherCustomer = Errorf(ErrConflict,
	"this dialogId belongs to another customer; a dialogue keeps the customer of its first message")
