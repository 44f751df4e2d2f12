package service

import (
	"context"
	"fmt"
	"time"

	"github.com/data-api/data-api/model"
)

// checkFilter validates f and returns it in canonical form, so that a query
// for "EN" finds what was ingested as "en".
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

// Stats is a snapshot of the service's gauges and running totals, for
// metrics.
type Stats struct {
	PendingDialogues, PendingMessages, PendingBytes int64

	EvictedTTL, EvictedErasure  int64 // pending dialogues dropped, by cause
	RejectedFull, RejectedLimit int64 // messages refused by max_pending, max_messages
	RejectedBytes               int64 // messages refused by max_pending_bytes

	ConsentsTrue, ConsentsFalse int64

	StoredMessages, WithdrawnMessages, ErasedMessages, RetentionDeletedMessages int64
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
	s := &d.stats
	return Stats{
		PendingDialogues:         pc.Dialogues,
		PendingMessages:          pc.Messages,
		PendingBytes:             pc.Bytes,
		EvictedTTL:               pc.Expired,
		EvictedErasure:           s.evictedErasure.Load(),
		RejectedFull:             s.rejectedFull.Load(),
		RejectedLimit:            s.rejectedLimit.Load(),
		RejectedBytes:            s.rejectedBytes.Load(),
		ConsentsTrue:             s.consentsTrue.Load(),
		ConsentsFalse:            s.consentsFalse.Load(),
		StoredMessages:           s.stored.Load(),
		WithdrawnMessages:        s.withdrawn.Load(),
		ErasedMessages:           s.erased.Load(),
		RetentionDeletedMessages: s.retentionDeleted.Load(),
	}
}
