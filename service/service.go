// Package service holds Data API's rules: ingestion into the pending store,
// consent, queries, erasure and retention. It talks to the database through
// the Repository interface it declares, and to the dialogues awaiting a
// decision through a pending.Store.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/data-api/data-api/internal/group"
	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/pending"
)

// Options configures Dialogues. New rejects a zero value where the
// configuration must say how much; Clock, Logger, ObserveWrite,
// CursorSecret and MaxDialogueMessages have defaults of their own.
type Options struct {
	Clock         func() time.Time // nil: time.Now
	Logger        *slog.Logger     // nil discards
	MaxTextBytes  int              // longest message text
	SweepInterval time.Duration    // how often expired pending dialogues are reclaimed
	CommitBatch   int              // consents gathered into one transaction at most

	RetentionMaxAge   time.Duration // 0 keeps consented messages forever
	RetentionInterval time.Duration // how often the purge runs, when RetentionMaxAge is set
	RetentionBatch    int           // rows per purge transaction, when RetentionMaxAge or RetentionOwed is set
	// RetentionOwed is a retention cutoff a purge cut short left to finish
	// (the repository's RetentionOwed): Run purges it first, in the
	// background, whatever RetentionMaxAge says. Zero: none.
	RetentionOwed time.Time

	// CursorSecret signs pagination cursors; instances behind one load
	// balancer need the same one. Empty: a random secret of this process.
	CursorSecret []byte
	// FreeMemory, if set, is called by Sweep once pending dialogues of
	// freeMemoryAfter bytes of heap have left since the peak, to hand the
	// memory back to the operating system (debug.FreeOSMemory, for a store
	// in this process's heap).
	FreeMemory func()
	// ObserveWrite, if set, is told how long each database write took and
	// its error, nil when it committed; op is one of "consent", "withdraw",
	// "erase", "retention".
	ObserveWrite func(op string, d time.Duration, err error)
	// MaxDialogueMessages is the most messages Dialogue returns, at least
	// model.MaxLimit: pass dialogues.max_messages, so that whatever one
	// consent stores fits.
	MaxDialogueMessages int
}

func (o *Options) fill() error {
	var errs []error
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	positive("MaxTextBytes", int64(o.MaxTextBytes))
	positive("SweepInterval", int64(o.SweepInterval))
	positive("CommitBatch", int64(o.CommitBatch))
	if o.RetentionMaxAge < 0 {
		errs = append(errs, fmt.Errorf("RetentionMaxAge must not be negative, got %v", o.RetentionMaxAge))
	}
	if o.RetentionMaxAge > 0 {
		positive("RetentionInterval", int64(o.RetentionInterval))
	}
	if o.RetentionMaxAge > 0 || !o.RetentionOwed.IsZero() {
		positive("RetentionBatch", int64(o.RetentionBatch))
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ObserveWrite == nil {
		o.ObserveWrite = func(string, time.Duration, error) {}
	}
	if len(o.CursorSecret) == 0 {
		o.CursorSecret = []byte(rand.Text())
	}
	o.MaxDialogueMessages = max(o.MaxDialogueMessages, model.MaxLimit)
	return errors.Join(errs...)
}

// Dialogues applies the rules of the contract. Create it with New and run its
// background work with Run.
type Dialogues struct {
	repo    Repository
	pending pending.Store
	commit  *committer
	cursors cursorCodec
	o       Options
	stats   counters
	health  writeHealth
	// heapPeak is the largest pending heap that Sweep saw since it last
	// called FreeMemory.
	heapPeak int64
	// owed is Options.RetentionOwed in Unix ns until a purge has finished
	// it, then 0.
	owed atomic.Int64
	// purging is held by a purge: the committer's group takes one
	// background write at a time.
	purging sync.Mutex
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

// New returns Dialogues that hold pending dialogues in store and persist
// through repo, or an error naming every option out of range.
func New(repo Repository, store pending.Store, o Options) (*Dialogues, error) {
	if err := o.fill(); err != nil {
		return nil, fmt.Errorf("service options: %w", err)
	}
	d := &Dialogues{
		repo:    repo,
		pending: store,
		cursors: cursorCodec{secret: o.CursorSecret},
		o:       o,
		health:  writeHealth{clock: o.Clock},
	}
	d.commit = &committer{repo: repo, wrote: d.wrote, group: group.New[*commitReq](o.CommitBatch, yieldAfter)}
	if !o.RetentionOwed.IsZero() {
		d.owed.Store(o.RetentionOwed.UnixNano())
	}
	return d, nil
}

// Run reclaims expired dialogues and purges consented messages past their
// retention until ctx ends, having first finished the purge that
// Options.RetentionOwed names. It returns when its goroutines have stopped.
func (d *Dialogues) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { every(ctx, d.o.SweepInterval, d.Sweep) })
	if owed := d.owed.Load(); owed != 0 || d.o.RetentionMaxAge > 0 {
		wg.Go(func() {
			if owed != 0 {
				d.o.Logger.Info("finishing a retention purge that was cut short, in the background", "before", time.Unix(0, owed).UTC())
				d.Purge(ctx)
			}
			if d.o.RetentionMaxAge > 0 {
				every(ctx, d.o.RetentionInterval, d.Purge)
			}
		})
	}
	wg.Wait()
}

func every(ctx context.Context, interval time.Duration, f func(context.Context)) {
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
// on every access. Once the pending heap has shrunk to half its peak or
// less, by freeMemoryAfter at least, over one sweep or several, it calls
// FreeMemory. Sweeps do not run concurrently.
func (d *Dialogues) Sweep(ctx context.Context) {
	if d.o.FreeMemory != nil {
		if c, err := d.pending.Counts(ctx); err == nil {
			d.heapPeak = max(d.heapPeak, pendingHeap(c))
		}
	}
	if err := d.pending.Sweep(ctx); err != nil {
		if ctx.Err() == nil {
			d.o.Logger.Warn("sweeping expired dialogues failed", "err", err)
		}
		return
	}
	if d.o.FreeMemory == nil {
		return
	}
	if c, err := d.pending.Counts(ctx); err == nil && d.heapPeak-pendingHeap(c) >= freeMemoryAfter && pendingHeap(c) <= d.heapPeak/2 {
		d.o.FreeMemory()
		d.heapPeak = pendingHeap(c)
	}
}

// freeMemoryAfter is how much the pending heap must shrink from its peak for
// Sweep to call FreeMemory, which costs a full garbage collection: a flood
// that expired, not the trickle of abandoned dialogues, nor the churn of a
// large pending set (the heap must also have halved). The runtime holds
// about twice the live heap, so this returns 30 MiB or more.
const freeMemoryAfter = 16 << 20

// pendingHeap estimates the heap that pending dialogues hold: their text,
// and about 65 bytes per message and 280 per dialogue (BENCHMARKS.md).
func pendingHeap(c pending.Counts) int64 {
	return c.Bytes + 65*c.Messages + 280*c.Dialogues
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
	n, err := d.pending.Append(ctx, m)
	if errors.Is(err, model.ErrNotFound) {
		n, err = d.start(ctx, m)
	}
	switch {
	case errors.Is(err, pending.ErrFullBytes):
		d.stats.rejectedBytes.Add(1)
	case errors.Is(err, model.ErrFull):
		d.stats.rejectedFull.Add(1)
	case errors.Is(err, model.ErrLimit):
		d.stats.rejectedLimit.Add(1)
	}
	return n, err
}

// start starts the dialogue of m once its owner is checked: a decided
// dialogue keeps its customer for good.
func (d *Dialogues) start(ctx context.Context, m model.Message) (int, error) {
	owner, ok, err := d.repo.DialogueOwner(ctx, m.DialogueID)
	if err != nil {
		return 0, fmt.Errorf("look up dialogue owner: %w", err)
	}
	if ok && owner != m.CustomerID {
		return 0, model.ErrOtherCustomer
	}
	return d.pending.Start(ctx, m)
}

// Consent records the customer's decision on a dialogue. keyName names the
// API key that made the call, for the ledger.
func (d *Dialogues) Consent(ctx context.Context, dialogueID string, consent bool, keyName string) (model.Outcome, error) {
	if err := model.ValidateID(dialogueID); err != nil {
		var v model.ValidationError
		v.Add("dialogId", err.Error())
		return model.Outcome{}, &v
	}
	t, err := d.pending.Take(ctx, dialogueID)
	if err != nil {
		return model.Outcome{}, fmt.Errorf("take pending dialogue: %w", err)
	}
	var out model.Outcome
	if consent {
		out, err = d.accept(ctx, dialogueID, t, keyName)
	} else {
		out, err = d.refuse(ctx, dialogueID, t, keyName)
	}
	if t == nil {
		return out, err
	}
	// The decision's write is over, whatever came of it: end the take even
	// if the caller has gone.
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		if rerr := d.pending.Restore(ctx, t); rerr != nil {
			return model.Outcome{}, errors.Join(err, fmt.Errorf("restore pending dialogue: %w", rerr))
		}
		return model.Outcome{}, err
	}
	if err := d.pending.Drop(ctx, t); err != nil {
		// The decision is committed, so the answer is its outcome. The take
		// stands until the store's take timeout ends it; a consent retried
		// meanwhile waits for that, then stores nothing twice.
		d.o.Logger.Warn("a decision is stored but its pending dialogue could not be released: it is released when its take times out", "err", err)
	}
	return out, nil
}

func (d *Dialogues) accept(ctx context.Context, id string, t *pending.Taken, keyName string) (model.Outcome, error) {
	if t == nil {
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
			CustomerID: t.CustomerID,
			Consent:    true,
			DecidedAt:  d.o.Clock().UTC(),
			Messages:   len(t.Messages),
			KeyName:    keyName,
		},
		Messages: t.Messages,
	}
	if err := d.commit.do(ctx, c); err != nil {
		return model.Outcome{}, fmt.Errorf("store consented dialogue: %w", err)
	}
	d.stats.consentsTrue.Add(1)
	d.stats.stored.Add(int64(len(c.Messages)))
	return model.Outcome{CustomerID: t.CustomerID, Stored: len(c.Messages)}, nil
}

func (d *Dialogues) refuse(ctx context.Context, id string, t *pending.Taken, keyName string) (model.Outcome, error) {
	dec := model.Decision{DialogueID: id, DecidedAt: d.o.Clock().UTC(), KeyName: keyName}
	if t != nil {
		dec.CustomerID = t.CustomerID
		dec.Messages = len(t.Messages)
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
	d.wrote("withdraw", start, err)
	if err != nil {
		return model.Outcome{}, fmt.Errorf("record refusal: %w", err)
	}
	d.stats.consentsFalse.Add(1)
	d.stats.withdrawn.Add(int64(deleted))
	return model.Outcome{CustomerID: dec.CustomerID, Dropped: dropped, Deleted: deleted}, nil
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
	d.wrote("erase", start, err)
	d.stats.erased.Add(int64(deleted))
	if err != nil {
		return model.ErasureOutcome{}, fmt.Errorf("erase customer: %w", err)
	}
	return model.ErasureOutcome{Dropped: dropped, Deleted: deleted}, nil
}

// Purge deletes consented messages older than the retention age, and
// those before the cutoff it owes (Options.RetentionOwed), in batches of
// RetentionBatch that take turns with consents on the database writer (see
// committer): a consent waits for one batch at most. Run calls it; a
// purge called meanwhile waits for the running one.
func (d *Dialogues) Purge(ctx context.Context) {
	d.purging.Lock()
	defer d.purging.Unlock()
	owed := d.owed.Load()
	cutoff := owed
	if d.o.RetentionMaxAge > 0 {
		cutoff = max(cutoff, d.o.Clock().Add(-d.o.RetentionMaxAge).UnixNano())
	}
	if cutoff == 0 {
		return
	}
	before := time.Unix(0, cutoff)
	for {
		var (
			n     int
			err   error
			start time.Time
		)
		if !d.commit.group.InTurn(ctx, func() {
			start = time.Now()
			n, err = d.repo.DeleteCreatedBefore(ctx, before, d.o.RetentionBatch)
		}) {
			return // stopped while waiting for its turn
		}
		d.stats.retentionDeleted.Add(int64(n))
		if ctx.Err() != nil {
			return // stopped, not failed
		}
		d.wrote("retention", start, err)
		if err != nil {
			d.o.Logger.Error("retention purge failed", "err", err)
			return
		}
		if n < d.o.RetentionBatch {
			d.owed.CompareAndSwap(owed, 0)
			return
		}
	}
}
