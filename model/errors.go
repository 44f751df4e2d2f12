// Package model holds Data API's domain types, their validation and the
// error vocabulary shared by every layer. It knows nothing of HTTP or SQL.
package model

import (
	"errors"
	"fmt"
	"strings"
)

// The error kinds every layer speaks. The api package maps each to one HTTP
// status; nothing else in the code base chooses a status.
var (
	ErrInvalid  = errors.New("invalid input")         // the caller must fix the request
	ErrNotFound = errors.New("not found")             // nothing matches
	ErrConflict = errors.New("conflict")              // the request contradicts recorded state
	ErrLimit    = errors.New("limit reached")         // a per-dialogue cap is reached
	ErrFull     = errors.New("pending store is full") // retry later
	// ErrFullBytes is the ErrFull of the cap on pending text bytes.
	ErrFullBytes   = fmt.Errorf("%w: of bytes", ErrFull)
	ErrUnavailable = errors.New("temporarily unavailable") // a dependency failed; retry later

	// ErrNewDialogue tells that a message would start a new pending
	// dialogue, whose owner must be checked against the decided dialogues
	// first. It never reaches a caller of the service.
	ErrNewDialogue = errors.New("new dialogue")
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

// The refusals of a pending store, worded once for every store.

// ErrOtherCustomer refuses a message for a dialogue of another customer.
var ErrOtherCustomer = Errorf(ErrConflict,
	"this dialogId belongs to another customer; a dialogue keeps the customer of its first message")

// TooManyMessages refuses a message to a dialogue holding max messages.
func TooManyMessages(max int) error {
	return Errorf(ErrLimit, fmt.Sprintf(
		"the dialogue already holds %d pending messages, the most allowed; send its consent decision first", max))
}

// TooManyDialogues refuses a new dialogue when max are pending.
func TooManyDialogues(max int64) error {
	return Errorf(ErrFull, fmt.Sprintf("the service holds %d pending dialogues, the most it can; retry later", max))
}

// TooManyBytes refuses a message that would take the pending text past max
// bytes, whatever its dialogue: memory, not the count of dialogues, is what
// runs out.
func TooManyBytes(max int64) error {
	return Errorf(ErrFullBytes, fmt.Sprintf("the service holds %d bytes of pending text, the most it can; retry later", max))
}
