// Package pending keeps the dialogues that await a consent decision, and
// their rules: a dialogue belongs to the customer of its first message,
// holds at most a number of messages, and is dropped when idle for the TTL;
// the store holds at most a number of dialogues and of bytes; a dialogue
// taken for a decision stands still until the decision is written. Two
// stores keep the same contract: Memory, in this process's heap, and Redis,
// shared by every instance. One test suite runs on both.
package pending

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/data-api/data-api/model"
)

// Store is the contract of a pending store. Every method is atomic for a
// dialogue. While a dialogue is taken for a decision, Append, Start, Take and
// DropCustomer wait for the take to end, honouring ctx, so that decisions,
// messages and erasures of a dialogue are linearizable.
//
// A dialogue counts against the caps from its first message until it is
// dropped or expires; a taken dialogue never expires. A store about to
// refuse for a cap first reclaims the dialogues that expired, so that the
// caps count exactly the live dialogues whatever the sweeper has done.
type Store interface {
	// Append adds m, whose CreatedAt is set, to its live dialogue and returns
	// how many messages the dialogue holds. With no live dialogue it returns
	// an error of kind model.ErrNotFound, or model.ErrFull when a new one
	// could not be started anyway, so that a full store refuses before
	// anyone looks up the dialogue's owner. Other errors:
	// model.ErrOtherCustomer, model.ErrLimit (the dialogue holds the most
	// messages), model.ErrFull (the most dialogues or bytes are pending).
	Append(ctx context.Context, m model.Message) (int, error)
	// Start starts the dialogue of m, whose owner the caller has checked,
	// with m as its first message. Should the dialogue have been started
	// meanwhile, m is appended to it as by Append.
	Start(ctx context.Context, m model.Message) (int, error)
	// Take marks the live dialogue busy for a decision and returns it, or
	// nil when none is live. Every take ends with Drop or Restore.
	Take(ctx context.Context, dialogueID string) (*Taken, error)
	// Drop ends the take of a decided dialogue: it leaves the store.
	Drop(ctx context.Context, t *Taken) error
	// Restore ends the take of a dialogue whose decision could not be
	// written: it is pending again as it was, deadline included.
	Restore(ctx context.Context, t *Taken) error
	// DropCustomer drops every pending dialogue of a customer, each after
	// any decision being written on it, and returns how many dialogues and
	// messages it dropped.
	DropCustomer(ctx context.Context, customerID string) (dialogues, messages int, err error)
	// Sweep reclaims the memory of expired dialogues. Correctness never
	// depends on it: expired dialogues are ignored wherever they are read.
	Sweep(ctx context.Context) error
	// Counts reports what the store holds now and has expired so far.
	Counts(ctx context.Context) (Counts, error)
}

// Taken is a dialogue taken for a decision: its messages stay in the store,
// marked busy, until Drop or Restore.
type Taken struct {
	DialogueID string
	CustomerID string
	Messages   []model.Message
	token      string // identifies this take to the store that made it
}

// Counts is what a store holds and has expired.
type Counts struct {
	Dialogues, Messages int64
	Bytes               int64 // of messages, as size counts them
	Expired             int64 // dialogues dropped at their TTL, ever
	Lost                int64 // dialogues dropped at their decision for having lived through a failover of the store, ever
}

// Limits are the rules every store enforces.
type Limits struct {
	TTL          time.Duration // idle time after which a dialogue is dropped
	MaxDialogues int           // pending dialogues at most
	MaxMessages  int           // pending messages per dialogue at most
	MaxBytes     int64         // pending messages (text and language tag) in all dialogues at most, in bytes
}

func (l Limits) check() error {
	var errs []error
	if l.TTL <= 0 {
		errs = append(errs, fmt.Errorf("TTL must be positive, got %v", l.TTL))
	}
	if l.MaxDialogues < 1 {
		errs = append(errs, fmt.Errorf("MaxDialogues must be positive, got %d", l.MaxDialogues))
	}
	if l.MaxMessages < 1 {
		errs = append(errs, fmt.Errorf("MaxMessages must be positive, got %d", l.MaxMessages))
	}
	if l.MaxBytes < 1 {
		errs = append(errs, fmt.Errorf("MaxBytes must be positive, got %d", l.MaxBytes))
	}
	return errors.Join(errs...)
}

// ErrFullBytes is the model.ErrFull of the cap on pending bytes.
var ErrFullBytes = fmt.Errorf("%w: of bytes", model.ErrFull)

// The refusals of a store, worded once for both.

// errNotLive answers Append for a dialogue that is not live.
var errNotLive = model.Errorf(model.ErrNotFound, "no live pending dialogue")

func tooManyMessages(max int) error {
	return model.Errorf(model.ErrLimit, fmt.Sprintf(
		"the dialogue already holds %d pending messages, the most allowed; send its consent decision first", max))
}

func tooManyDialogues(max int) error {
	return model.Errorf(model.ErrFull, fmt.Sprintf("the service holds %d pending dialogues, the most it can; retry later", max))
}

// tooManyBytes refuses a message that would take the pending messages past
// max bytes, whatever its dialogue: memory, not the count of dialogues, is
// what runs out.
func tooManyBytes(max int64) error {
	return model.Errorf(ErrFullBytes, fmt.Sprintf("the service holds %d bytes of pending messages, the most it can; retry later", max))
}

// size is what a message counts against the byte cap: every byte of its own
// it holds, its text and its language tag. (Its dialogue's ids, and the few
// bytes of bookkeeping per message, are bounded by max_pending and
// max_messages instead.)
func size(m model.Message) int64 { return int64(len(m.Text) + len(m.Language)) }
