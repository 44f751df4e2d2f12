// Package service holds Data API's rules: pending dialogues with their TTL
// (in its own sharded memory store, or a shared PendingStore), consent,
// queries, erasure and retention. It talks to persistence through the
// Repository and PendingStore interfaces it declares.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/data-api/data-api/model"
)

// Options configures Dialogues. Zero values take the documented defaults
// where one exists.
type Options struct {
	Clock         func() time.Time // defaults to time.Now
	TTL           time.Duration    // idle time after which a pending dialogue is dropped
	SweepInterval time.Duration    // how often expired dialogues are reclaimed
	MaxPending    int              // pending dialogues held at most
	MaxMessages   int              // pending messages per dialogue at most
	MaxBytes      int64            // pending message text in all dialogues at most, in bytes; 0: no cap
	Shards        int              // a power of two
	MaxTextBytes  int

	// Pending, when set, holds pending dialogues instead of this process's
	// memory; TTL, caps and shards are then its own business.
	Pending PendingStore

	RetentionMaxAge   time.Duration // 0 keeps consented messages forever
	RetentionInterval time.Duration
	RetentionBatch    int

	CommitBatch int // consents gathered into one transaction at most

	Logger *slog.Logger
	// ObserveWrite, if set, is told how long each database write took;
	// op is one of "consent", "withdraw", "erase", "retention".
	ObserveWrite func(op string, d time.Duration)
}

// Dialogues applies the rules of the contract. Create it with New and run its
// background work with Run.
type Dialogues struct {
	repo    Repository
	pending PendingStore
	commit  *committer
	o       Options
	stats   counters
}

// counters are monotonically increasing totals, read by Stats.
type counters struct {
	evictedErasure              atomic.Int64
	rejectedFull, rejectedLimit atomic.Int64
	rejectedBytes               atomic.Int64
	consentsTrue, consentsFalse atomic.Int64
	stored, withdrawn, erased   atomic.Int64
	retentionDeleted            atomic.Int64
}

// New returns Dialogues persisting through repo.
func New(repo Repository, o Options) *Dialogues {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CommitBatch < 1 {
		o.CommitBatch = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = math.MaxInt64
	}
	d := &Dialogues{repo: repo, pending: o.Pending, o: o}
	if d.pending == nil {
		d.pending = newStore(storeOptions{
			shards: o.Shards, maxPending: o.MaxPending, maxMessages: o.MaxMessages, maxBytes: o.MaxBytes,
			ttl: o.TTL, clock: o.Clock,
		})
	}
	d.commit = &committer{max: o.CommitBatch, save: d.saveConsents}
	return d
}

// Run reclaims expired dialogues and purges consented messages past their
// retention until ctx ends. It returns when its goroutines have stopped.
func (d *Dialogues) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { d.every(ctx, d.o.SweepInterval, d.Sweep) })
	if d.o.RetentionMaxAge > 0 {
		wg.Go(func() { d.every(ctx, d.o.RetentionInterval, d.Purge) })
	}
	wg.Wait()
}

func (d *Dialogues) every(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// Sweep drops every pending dialogue idle for the TTL. Run calls it
// periodically; correctness never depends on it, since expiry is also checked
// on every access.
func (d *Dialogues) Sweep(ctx context.Context) {
	if err := d.pending.Sweep(ctx); err != nil && ctx.Err() == nil {
		d.o.Logger.Warn("sweeping expired dialogues failed", "err", err)
	}
}

// Ingest holds a customer message until its dialogue's consent decision and
// returns how many messages the dialogue now holds. m's CreatedAt is set to
// the receive time.
func (d *Dialogues) Ingest(ctx context.Context, m model.Message) (int, error) {
	var v model.ValidationError
	if err := model.ValidateID(m.CustomerID); err != nil {
		v.Add("customerId", err.Error())
	}
	if err := model.ValidateID(m.DialogueID); err != nil {
		v.Add("dialogId", err.Error())
	}
	lang, err := model.CanonicalLanguage(m.Language)
	if err != nil {
		v.Add("language", err.Error())
	}
	if err := model.ValidateText(m.Text, d.o.MaxTextBytes); err != nil {
		v.Add("text", err.Error())
	}
	if len(v.Problems) > 0 {
		verr := v // only a failure pays for a heap copy
		return 0, &verr
	}
	m.Language = lang
	m.CreatedAt = d.o.Clock().UTC()
	n, err := d.pending.Append(ctx, m, false)
	if errors.Is(err, model.ErrNewDialogue) {
		// A decided dialogue keeps its customer for good.
		owner, ok, oerr := d.repo.DialogueOwner(ctx, m.DialogueID)
		if oerr != nil {
			return 0, fmt.Errorf("look up dialogue owner: %w", oerr)
		}
		if ok && owner != m.CustomerID {
			return 0, model.ErrOtherCustomer
		}
		n, err = d.pending.Append(ctx, m, true)
	}
	switch {
	case errors.Is(err, model.ErrFullBytes):
		d.stats.rejectedBytes.Add(1)
	case errors.Is(err, model.ErrFull):
		d.stats.rejectedFull.Add(1)
	case errors.Is(err, model.ErrLimit):
		d.stats.rejectedLimit.Add(1)
	}
	return n, err
}

// Consent records the customer's decision on a dialogue. keyName names the
// API key that made the call, for the ledger.
func (d *Dialogues) Consent(ctx context.Context, dialogueID string, consent bool, keyName string) (model.Outcome, error) {
	if err := model.ValidateID(dialogueID); err != nil {
		var v model.ValidationError
		v.Add("dialogId", err.Error())
		return model.Outcome{}, &v
	}
	h, err := d.pending.Take(ctx, dialogueID)
	if err != nil {
		return model.Outcome{}, fmt.Errorf("take pending dialogue: %w", err)
	}
	var out model.Outcome
	if consent {
		out, err = d.accept(ctx, dialogueID, h, keyName)
	} else {
		out, err = d.refuse(ctx, dialogueID, h, keyName)
	}
	if h != nil {
		// The decision's write is over, whatever came of it: let go of the
		// dialogue even if the caller has gone.
		if rerr := d.pending.Release(context.WithoutCancel(ctx), h, err == nil); rerr != nil {
			return model.Outcome{}, errors.Join(err, fmt.Errorf("release pending dialogue: %w", rerr))
		}
	}
	return out, err
}

func (d *Dialogues) accept(ctx context.Context, id string, h *model.Handover, keyName string) (model.Outcome, error) {
	if h == nil {
		latest, err := d.repo.LatestDecision(ctx, id)
		if err == nil && latest.Consent {
			return model.Outcome{CustomerID: latest.CustomerID}, nil
		}
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			return model.Outcome{}, fmt.Errorf("read latest decision: %w", err)
		}
		return model.Outcome{}, model.Errorf(model.ErrNotFound,
			"no pending messages for this dialogue: it was never seen, its messages expired, or it was refused; send its messages again before consenting")
	}
	c := model.Consent{
		Decision: model.Decision{
			DialogueID: id,
			CustomerID: h.CustomerID,
			Consent:    true,
			DecidedAt:  d.o.Clock().UTC(),
			Messages:   len(h.Messages),
			KeyName:    keyName,
		},
		Messages: h.Messages,
	}
	if err := d.commit.do(ctx, c); err != nil {
		return model.Outcome{}, fmt.Errorf("store consented dialogue: %w", err)
	}
	d.stats.consentsTrue.Add(1)
	d.stats.stored.Add(int64(len(c.Messages)))
	return model.Outcome{CustomerID: h.CustomerID, Stored: len(c.Messages)}, nil
}

func (d *Dialogues) refuse(ctx context.Context, id string, h *model.Handover, keyName string) (model.Outcome, error) {
	dec := model.Decision{DialogueID: id, DecidedAt: d.o.Clock().UTC(), KeyName: keyName}
	if h != nil {
		dec.CustomerID = h.CustomerID
		dec.Messages = len(h.Messages)
	} else {
		owner, _, err := d.repo.DialogueOwner(ctx, id)
		if err != nil {
			return model.Outcome{}, fmt.Errorf("look up dialogue owner: %w", err)
		}
		dec.CustomerID = owner
	}
	dropped := dec.Messages
	start := time.Now()
	deleted, err := d.repo.Withdraw(context.WithoutCancel(ctx), dec)
	d.observe("withdraw", start)
	if err != nil {
		return model.Outcome{}, fmt.Errorf("record refusal: %w", err)
	}
	d.stats.consentsFalse.Add(1)
	d.stats.withdrawn.Add(int64(deleted))
	return model.Outcome{CustomerID: dec.CustomerID, Dropped: dropped, Deleted: deleted}, nil
}

func (d *Dialogues) observe(op string, start time.Time) {
	if d.o.ObserveWrite != nil {
		d.o.ObserveWrite(op, time.Since(start))
	}
}

// saveConsents is the committer's write: one transaction for the batch.
func (d *Dialogues) saveConsents(ctx context.Context, cs []model.Consent) error {
	start := time.Now()
	err := d.repo.SaveConsents(ctx, cs)
	d.observe("consent", start)
	return err
}

// Decision returns the latest consent decision recorded for a dialogue.
func (d *Dialogues) Decision(ctx context.Context, dialogueID string) (model.Decision, error) {
	if err := model.ValidateID(dialogueID); err != nil {
		var v model.ValidationError
		v.Add("dialogId", err.Error())
		return model.Decision{}, &v
	}
	return d.repo.LatestDecision(ctx, dialogueID)
}

// Erase deletes every stored message of a customer and drops their pending
// dialogues. A decision being written for one of them finishes first, so a
// dialogue is either stored and then erased, or dropped before its consent.
func (d *Dialogues) Erase(ctx context.Context, customerID, keyName string) (model.ErasureOutcome, error) {
	if err := model.ValidateID(customerID); err != nil {
		var v model.ValidationError
		v.Add("customerId", err.Error())
		return model.ErasureOutcome{}, &v
	}
	dialogues, dropped, err := d.pending.DropCustomer(ctx, customerID)
	d.stats.evictedErasure.Add(int64(dialogues))
	if err != nil {
		return model.ErasureOutcome{}, fmt.Errorf("drop pending dialogues: %w", err)
	}
	start := time.Now()
	deleted, err := d.repo.EraseCustomer(context.WithoutCancel(ctx), model.Erasure{
		CustomerID: customerID,
		ErasedAt:   d.o.Clock().UTC(),
		KeyName:    keyName,
	})
	d.observe("erase", start)
	d.stats.erased.Add(int64(deleted))
	if err != nil {
		return model.ErasureOutcome{}, fmt.Errorf("erase customer: %w", err)
	}
	return model.ErasureOutcome{Dropped: dropped, Deleted: deleted}, nil
}

// Purge deletes consented messages older than the retention age, in bounded
// batches so that writers are never blocked for long. Run calls it
// periodically.
func (d *Dialogues) Purge(ctx context.Context) {
	before := d.o.Clock().Add(-d.o.RetentionMaxAge)
	for ctx.Err() == nil {
		start := time.Now()
		n, err := d.repo.DeleteCreatedBefore(ctx, before, d.o.RetentionBatch)
		d.observe("retention", start)
		d.stats.retentionDeleted.Add(int64(n))
		if err != nil {
			if ctx.Err() == nil {
				d.o.Logger.Error("retention purge failed", "err", err)
			}
			return
		}
		if n < d.o.RetentionBatch {
			return
		}
	}
}
