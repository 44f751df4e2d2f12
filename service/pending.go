package service

import (
	"context"

	"github.com/data-api/data-api/model"
)

// PendingStore keeps the dialogues that await a consent decision. By default
// the service keeps them in its own memory; a store shared by every instance
// (Redis) lets several instances serve one flow without sticky routing.
//
// Each method is atomic for a dialogue. While a dialogue is taken for a
// decision, Append, Take and DropCustomer wait for its release, honouring
// ctx, so that decisions, messages and erasures of a dialogue are
// linearizable.
type PendingStore interface {
	// Append adds m, whose CreatedAt is set, to its pending dialogue and
	// returns how many messages the dialogue holds. When the dialogue is not
	// pending it is created only if ownerChecked; otherwise Append returns
	// model.ErrNewDialogue. Other errors: model.ErrConflict (the dialogue
	// belongs to another customer), model.ErrLimit (max messages reached),
	// model.ErrFull (max pending dialogues, or max pending bytes, reached).
	Append(ctx context.Context, m model.Message, ownerChecked bool) (int, error)
	// Take marks the live pending dialogue busy and returns its messages, or
	// nil when none is pending.
	Take(ctx context.Context, dialogueID string) (*model.Handover, error)
	// Release ends a take: done drops the dialogue; otherwise it is pending
	// again as it was, deadline included.
	Release(ctx context.Context, h *model.Handover, done bool) error
	// DropCustomer drops every pending dialogue of a customer, each after
	// any decision being written on it, and returns how many dialogues and
	// messages it dropped.
	DropCustomer(ctx context.Context, customerID string) (dialogues, messages int, err error)
	// Sweep reclaims the memory of expired dialogues. Correctness never
	// depends on it: expired dialogues are ignored wherever they are read.
	Sweep(ctx context.Context) error
	// Counts reports what the store holds now and has expired so far.
	Counts(ctx context.Context) (model.PendingCounts, error)
}
