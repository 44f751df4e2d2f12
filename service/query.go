package service

import (
	"context"
	"time"

	"github.com/data-api/data-api/model"
)

// checkFilter validates f and returns it with its language canonicalized, so
// that a query for "EN" finds what was ingested as "en".
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

// Messages returns one page of consented messages, newest first, and whether
// more follow it.
func (d *Dialogues) Messages(ctx context.Context, q model.Query) ([]model.StoredMessage, bool, error) {
	var v model.ValidationError
	q.Filter = checkFilter(q.Filter, &v)
	if q.Limit < 1 || q.Limit > model.MaxLimit {
		v.Add("limit", "must be between 1 and 1000")
	}
	if err := v.Err(); err != nil {
		return nil, false, err
	}
	q.Limit++ // one more tells whether a next page exists
	msgs, err := d.repo.Messages(ctx, q)
	if err != nil {
		return nil, false, err
	}
	if len(msgs) == q.Limit {
		return msgs[:len(msgs)-1], true, nil
	}
	return msgs, false, nil
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

// Ready reports whether the database and the pending store answer.
func (d *Dialogues) Ready(ctx context.Context) error {
	if err := d.repo.Ping(ctx); err != nil {
		return err
	}
	_, err := d.pending.Counts(ctx)
	return err
}

// statsTimeout bounds the read of a shared pending store's counts.
const statsTimeout = time.Second

// Stats returns the current gauges and totals.
func (d *Dialogues) Stats() model.Stats {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	pc, err := d.pending.Counts(ctx)
	if err != nil {
		d.o.Logger.Warn("reading pending counts failed", "err", err)
	}
	s := &d.stats
	return model.Stats{
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
