// Package service holds Data API's rules: the in-memory store of pending
// dialogues with its TTL, consent, queries, erasure and retention. It talks to
// persistence through the Repository interface it declares.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	Shards        int              // a power of two
	MaxTextBytes  int

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
	repo   Repository
	store  *store
	commit *committer
	o      Options
	stats  counters
}

// counters are monotonically increasing totals, read by Stats.
type counters struct {
	evictedTTL, evictedErasure              atomic.Int64
	rejectedFull, rejectedLimit             atomic.Int64
	consentsTrue, consentsFalse             atomic.Int64
	stored, withdrawn, erased, retentionDel atomic.Int64
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
	d := &Dialogues{repo: repo, store: newStore(o.Shards, o.TTL), o: o}
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
func (d *Dialogues) Sweep(context.Context) {
	n := d.store.sweep(d.o.Clock().UnixNano())
	d.stats.evictedTTL.Add(int64(n))
}

// Ingest holds a customer message in memory until its dialogue's consent
// decision and returns how many messages the dialogue now holds. m's
// CreatedAt is set to the receive time.
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
	if err := v.Err(); err != nil {
		return 0, err
	}

	sh := d.store.shard(m.DialogueID)
	ownerChecked := false
	for {
		now := d.o.Clock().UnixNano()
		sh.mu.Lock()
		dl, evicted := d.store.live(sh, m.DialogueID, now)
		if evicted {
			d.stats.evictedTTL.Add(1)
		}
		switch {
		case dl != nil && dl.busy != nil:
			busy := dl.busy
			sh.mu.Unlock()
			<-busy
			continue
		case dl != nil:
			if dl.customer != m.CustomerID {
				sh.mu.Unlock()
				return 0, errOtherCustomer
			}
			if len(dl.msgs) >= d.o.MaxMessages {
				sh.mu.Unlock()
				d.stats.rejectedLimit.Add(1)
				return 0, model.Errorf(model.ErrLimit, fmt.Sprintf(
					"the dialogue already holds %d pending messages, the most allowed; send its consent decision first", d.o.MaxMessages))
			}
			d.store.append(dl, lang, m.Text, now)
			n := len(dl.msgs)
			sh.mu.Unlock()
			return n, nil
		case !ownerChecked:
			// A new dialogue: a decided dialogue keeps its customer for good.
			// Ask the database without holding the shard lock, then look again.
			sh.mu.Unlock()
			owner, ok, err := d.repo.DialogueOwner(ctx, m.DialogueID)
			if err != nil {
				return 0, fmt.Errorf("look up dialogue owner: %w", err)
			}
			if ok && owner != m.CustomerID {
				return 0, errOtherCustomer
			}
			ownerChecked = true
			continue
		}
		if d.store.dialogues.Add(1) > int64(d.o.MaxPending) {
			d.store.dialogues.Add(-1)
			sh.mu.Unlock()
			d.stats.rejectedFull.Add(1)
			return 0, model.Errorf(model.ErrFull, fmt.Sprintf(
				"the service holds %d pending dialogues, the most it can; retry later", d.o.MaxPending))
		}
		dl = &dialogue{customer: m.CustomerID}
		sh.m[m.DialogueID] = dl
		d.store.append(dl, lang, m.Text, now)
		sh.mu.Unlock()
		return 1, nil
	}
}

var errOtherCustomer = model.Errorf(model.ErrConflict,
	"this dialogId belongs to another customer; a dialogue keeps the customer of its first message")

// acquire marks the live pending dialogue id as busy and returns it, waiting
// for a decision already being written. It returns nil when no dialogue is
// pending. The caller must call release.
func (d *Dialogues) acquire(id string) (*dialogue, *shard) {
	sh := d.store.shard(id)
	for {
		sh.mu.Lock()
		dl, evicted := d.store.live(sh, id, d.o.Clock().UnixNano())
		if evicted {
			d.stats.evictedTTL.Add(1)
		}
		if dl == nil {
			sh.mu.Unlock()
			return nil, sh
		}
		if busy := dl.busy; busy != nil {
			sh.mu.Unlock()
			<-busy
			continue
		}
		dl.busy = make(chan struct{})
		sh.mu.Unlock()
		return dl, sh
	}
}

// release ends a decision on dl. When done, dl leaves memory; otherwise it
// stays pending as it was, deadline included.
func (d *Dialogues) release(sh *shard, id string, dl *dialogue, done bool) {
	sh.mu.Lock()
	if done {
		d.store.remove(sh, id, dl)
	}
	close(dl.busy)
	dl.busy = nil
	sh.mu.Unlock()
}

// Consent records the customer's decision on a dialogue. keyName names the
// API key that made the call, for the ledger.
func (d *Dialogues) Consent(ctx context.Context, dialogueID string, consent bool, keyName string) (model.Outcome, error) {
	if err := model.ValidateID(dialogueID); err != nil {
		var v model.ValidationError
		v.Add("dialogId", err.Error())
		return model.Outcome{}, &v
	}
	if consent {
		return d.accept(ctx, dialogueID, keyName)
	}
	return d.refuse(ctx, dialogueID, keyName)
}

func (d *Dialogues) accept(ctx context.Context, id, keyName string) (model.Outcome, error) {
	dl, sh := d.acquire(id)
	if dl == nil {
		latest, err := d.repo.LatestDecision(ctx, id)
		if err == nil && latest.Consent {
			return model.Outcome{CustomerID: latest.CustomerID, Consent: true}, nil
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
			CustomerID: dl.customer,
			Consent:    true,
			DecidedAt:  d.o.Clock().UTC(),
			Messages:   len(dl.msgs),
			KeyName:    keyName,
		},
		Messages: dl.snapshot(id),
	}
	err := d.commit.do(ctx, c)
	d.release(sh, id, dl, err == nil)
	if err != nil {
		return model.Outcome{}, fmt.Errorf("store consented dialogue: %w", err)
	}
	d.stats.consentsTrue.Add(1)
	d.stats.stored.Add(int64(len(c.Messages)))
	return model.Outcome{CustomerID: dl.customer, Consent: true, Stored: len(c.Messages)}, nil
}

func (d *Dialogues) refuse(ctx context.Context, id, keyName string) (model.Outcome, error) {
	dl, sh := d.acquire(id)
	dec := model.Decision{DialogueID: id, DecidedAt: d.o.Clock().UTC(), KeyName: keyName}
	if dl != nil {
		dec.CustomerID = dl.customer
		dec.Messages = len(dl.msgs)
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
	if dl != nil {
		d.release(sh, id, dl, err == nil)
	}
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
	dropped := 0
	for i := range d.store.shards {
		sh := &d.store.shards[i]
		for {
			var busy chan struct{}
			sh.mu.Lock()
			for id, dl := range sh.m {
				if dl.customer != customerID {
					continue
				}
				if dl.busy != nil {
					busy = dl.busy
					continue
				}
				dropped += len(dl.msgs)
				d.store.remove(sh, id, dl)
				d.stats.evictedErasure.Add(1)
			}
			sh.mu.Unlock()
			if busy == nil {
				break
			}
			<-busy
		}
	}
	start := time.Now()
	deleted, err := d.repo.EraseCustomer(context.WithoutCancel(ctx), model.Erasure{
		CustomerID: customerID,
		ErasedAt:   d.o.Clock().UTC(),
		KeyName:    keyName,
	})
	d.observe("erase", start)
	if err != nil {
		return model.ErasureOutcome{}, fmt.Errorf("erase customer: %w", err)
	}
	d.stats.erased.Add(int64(deleted))
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
		d.stats.retentionDel.Add(int64(n))
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
