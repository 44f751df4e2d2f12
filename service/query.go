package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/data-api/data-api/model"
)

// checkFilter validates f and returns it in canonical form, so that a query
// for "EN" finds what was ingested as "en", and a cursor issued for a time
// in one zone works for the same instant written in another.
func checkFilter(f model.Filter, v *model.ValidationError) model.Filter {
	if f.Language != "" {
		lang, err := model.CanonicalLanguage(f.Language)
		if err != nil {
			v.Add("language", err.Error())
		}
		f.Language = lang
	}
	if f.CustomerID != "" {
		if err := model.ValidateID(f.CustomerID); err != nil {
			v.Add("customerId", err.Error())
		}
	}
	if f.DialogueID != "" {
		if err := model.ValidateID(f.DialogueID); err != nil {
			v.Add("dialogId", err.Error())
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		v.Add("until", "must be later than since: the range is since ≤ createdAt < until")
	}
	f.Since, f.Until = f.Since.UTC(), f.Until.UTC()
	return f
}

// Messages returns one page of consented messages, newest first, from the
// position q.Cursor names (the newest when empty), with the cursor of the
// next page when one follows. A cursor is valid only with the filter it was
// issued for.
func (d *Dialogues) Messages(ctx context.Context, q model.Query) (model.Page, error) {
	var v model.ValidationError
	f := checkFilter(q.Filter, &v)
	if q.Limit < 1 || q.Limit > model.MaxLimit {
		v.Add("limit", fmt.Sprintf("must be between 1 and %d", model.MaxLimit))
	}
	if err := v.Err(); err != nil {
		return model.Page{}, err
	}
	var after *model.Position
	if q.Cursor != "" {
		pos, err := d.cursors.decode(q.Cursor, f)
		if err != nil {
			return model.Page{}, err
		}
		after = &pos
	}
	// One more row tells whether a next page exists.
	msgs, err := d.repo.Messages(ctx, f, after, q.Limit+1)
	if err != nil {
		return model.Page{}, err
	}
	if len(msgs) <= q.Limit {
		return model.Page{Messages: msgs}, nil
	}
	msgs = msgs[:q.Limit]
	last := msgs[len(msgs)-1]
	return model.Page{
		Messages: msgs,
		Next:     d.cursors.encode(f, model.Position{CreatedAt: last.CreatedAt, ID: last.ID}),
	}, nil
}

// Export calls fn for every consented message matching f, newest first,
// streaming from the database.
func (d *Dialogues) Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error {
	var v model.ValidationError
	f = checkFilter(f, &v)
	if err := v.Err(); err != nil {
		return err
	}
	return d.repo.Export(ctx, f, fn)
}

// CustomerData calls fn for everything stored about a customer, for their
// right of access: their messages, newest first, then their consent ledger
// entries and their erasure records, oldest first, streaming from the
// database. Pending messages, held in memory until the decision, are not
// stored and not included.
func (d *Dialogues) CustomerData(ctx context.Context, customerID string, fn func(model.CustomerRecord) error) error {
	if err := model.ValidateID(customerID); err != nil {
		var v model.ValidationError
		v.Add("customerId", err.Error())
		return &v
	}
	return d.repo.CustomerData(ctx, customerID, fn)
}

// Dialogue returns a consented dialogue: its stored messages, oldest first,
// and its latest decision, a consent. It is an error of kind
// model.ErrNotFound when nothing is stored for the dialogue, and of kind
// model.ErrTooLarge when it holds more than Options.MaxDialogueMessages
// messages (its id reused by many consents): the reply is built in memory.
func (d *Dialogues) Dialogue(ctx context.Context, dialogueID string) (model.Dialogue, error) {
	if err := model.ValidateID(dialogueID); err != nil {
		var v model.ValidationError
		v.Add("dialogId", err.Error())
		return model.Dialogue{}, &v
	}
	limit := d.o.MaxDialogueMessages
	f := model.Filter{DialogueID: dialogueID}
	var (
		msgs  []model.StoredMessage
		after *model.Position
	)
	for {
		// One more row than the limit tells whether the dialogue holds more.
		want := min(model.MaxLimit, limit+1-len(msgs))
		page, err := d.repo.Messages(ctx, f, after, want)
		if err != nil {
			return model.Dialogue{}, err
		}
		msgs = append(msgs, page...)
		if len(msgs) > limit {
			return model.Dialogue{}, model.Errorf(model.ErrTooLarge, fmt.Sprintf(
				"this dialogue holds more than %d messages, more than one reply holds; read it in pages with GET /data?dialogId=", limit))
		}
		if len(page) < want {
			break
		}
		last := page[len(page)-1]
		after = &model.Position{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	// Read after the messages, the decision tells whether they still stand:
	// a withdrawal between the two reads leaves a refusal, and a 404.
	dec, err := d.repo.LatestDecision(ctx, dialogueID)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return model.Dialogue{}, err
	}
	if len(msgs) == 0 || err != nil || !dec.Consent {
		return model.Dialogue{}, errNoDialogue
	}
	slices.Reverse(msgs)
	return model.Dialogue{Decision: dec, Messages: msgs}, nil
}

var errNoDialogue = model.Errorf(model.ErrNotFound,
	"no consented message is stored for this dialogue: it was never consented to, or it was withdrawn, erased or purged by retention")

// Stats is a snapshot of the service's gauges and running totals, for
// metrics.
type Stats struct {
	PendingDialogues, PendingMessages, PendingBytes int64

	EvictedTTL, EvictedErasure  int64 // pending dialogues dropped, by cause
	EvictedFailover             int64 // pending dialogues dropped for having lived through a failover of the store
	RejectedFull, RejectedLimit int64 // messages refused by max_pending, max_messages
	RejectedBytes               int64 // messages refused by max_pending_bytes

	ConsentsTrue, ConsentsFalse int64

	StoredMessages, WithdrawnMessages, ErasedMessages, RetentionDeletedMessages int64

	// OldestMessage is when the oldest stored message was created: zero
	// when none is, or the database did not answer.
	OldestMessage time.Time
}

// statsTimeout bounds the read of a shared pending store's counts.
const statsTimeout = time.Second

// Stats returns the current gauges and totals.
func (d *Dialogues) Stats() Stats {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	pc, err := d.pending.Counts(ctx)
	if err != nil {
		d.o.Logger.Warn("reading pending counts failed", "err", err)
	}
	oldest, err := d.repo.OldestMessage(ctx)
	if err != nil {
		d.o.Logger.Warn("reading the oldest message's time failed", "err", err)
	}
	s := &d.stats
	return Stats{
		PendingDialogues:         pc.Dialogues,
		PendingMessages:          pc.Messages,
		PendingBytes:             pc.Bytes,
		EvictedTTL:               pc.Expired,
		EvictedErasure:           s.evictedErasure.Load(),
		EvictedFailover:          pc.Lost,
		RejectedFull:             s.rejectedFull.Load(),
		RejectedLimit:            s.rejectedLimit.Load(),
		RejectedBytes:            s.rejectedBytes.Load(),
		ConsentsTrue:             s.consentsTrue.Load(),
		ConsentsFalse:            s.consentsFalse.Load(),
		StoredMessages:           s.stored.Load(),
		WithdrawnMessages:        s.withdrawn.Load(),
		ErasedMessages:           s.erased.Load(),
		RetentionDeletedMessages: s.retentionDeleted.Load(),
		OldestMessage:            oldest,
	}
}
