package service

import (
	"context"
	"time"

	"github.com/data-api/data-api/model"
)

// Repository is the persistence the service needs. Every method returns
// errors of the model vocabulary (model.ErrNotFound, model.ErrUnavailable),
// wrapped with context.
type Repository interface {
	// SaveConsents writes the messages and the ledger entry of every consent
	// in one transaction, all or nothing, committed durably before it returns.
	SaveConsents(ctx context.Context, cs []model.Consent) error
	// Withdraw hard-deletes every stored message of d.DialogueID and appends
	// d to the ledger in one transaction. The ledger entry's Messages is
	// d.Messages plus the number deleted; Withdraw returns the number deleted.
	Withdraw(ctx context.Context, d model.Decision) (deleted int, err error)
	// LatestDecision returns the newest ledger entry of a dialogue, or an
	// error of kind model.ErrNotFound.
	LatestDecision(ctx context.Context, dialogueID string) (model.Decision, error)
	// DialogueOwner returns the customer a decided dialogue belongs to; ok is
	// false when no decision names a customer for it.
	DialogueOwner(ctx context.Context, dialogueID string) (customerID string, ok bool, err error)
	// Messages returns at most limit (at least 1) consented messages
	// matching f, newest first, from the one after position after (from
	// the newest when nil). f is valid and in canonical form.
	Messages(ctx context.Context, f model.Filter, after *model.Position, limit int) ([]model.StoredMessage, error)
	// Export calls fn for every consented message matching f, newest first,
	// reading from a database cursor. It stops at fn's first error or when
	// ctx ends. f is valid and in canonical form.
	Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error
	// CustomerData calls fn for everything stored about a customer: their
	// messages, newest first, then their consent ledger entries and their
	// erasure records, oldest first, in pages as Export reads. It stops at fn's
	// first error, which it returns as is, or when ctx ends.
	CustomerData(ctx context.Context, customerID string, fn func(model.CustomerRecord) error) error
	// EraseCustomer hard-deletes every stored message of e.CustomerID,
	// records e with Messages set to the number deleted in the same
	// transaction, and returns that number. Afterwards no trace of the text
	// is left in the database files.
	EraseCustomer(ctx context.Context, e model.Erasure) (deleted int, err error)
	// DeleteCreatedBefore hard-deletes at most limit stored messages created
	// before t, oldest first, and returns how many it deleted.
	DeleteCreatedBefore(ctx context.Context, t time.Time, limit int) (int, error)
	// OldestMessage returns the creation time of the oldest stored message,
	// the zero time when none is.
	OldestMessage(ctx context.Context) (time.Time, error)
	// Ping checks that the database answers a query.
	Ping(ctx context.Context) error
	// ProbeWrite checks that the database commits a write of the size of
	// a small dialogue, changing no data.
	ProbeWrite(ctx context.Context) error
}
