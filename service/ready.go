package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The rule readiness follows for writes (README, "Operating it").
const (
	// writeFailuresNotReady writes failed in a row, probes included, and
	// none committed since, make the service not ready: one failed consent
	// does not.
	writeFailuresNotReady = 3
	// probeEvery is the least time between two write probes.
	probeEvery = 5 * time.Second
	// probeIdle: when no write has committed for this long, readiness
	// probes, so that an idle instance finds out before traffic comes.
	probeIdle = time.Minute
)

// ErrNotCommitting is what Ready returns while the database refuses writes.
var ErrNotCommitting = errors.New("the database does not commit writes")

// writeHealth follows the outcomes of the database writes, probes included,
// to tell whether the database commits them now.
type writeHealth struct {
	clock func() time.Time

	mu        sync.Mutex
	failed    int       // writes failed in a row
	committed time.Time // when a write last committed
	probed    time.Time // when the last probe started
	probing   bool
}

// record takes the outcome of a write.
func (w *writeHealth) record(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failed++
		return
	}
	w.failed = 0
	w.committed = w.clock()
}

// probeDue reports whether a write probe is due, and if so marks it started:
// the caller then runs it and records its outcome with probeDone. A probe is
// due, at most once every probeEvery, after a failed write or when no write
// committed for probeIdle.
func (w *writeHealth) probeDue() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clock()
	if w.probing || now.Sub(w.probed) < probeEvery || (w.failed == 0 && now.Sub(w.committed) < probeIdle) {
		return false
	}
	w.probing, w.probed = true, now
	return true
}

func (w *writeHealth) probeDone(err error) {
	w.record(err)
	w.mu.Lock()
	w.probing = false
	w.mu.Unlock()
}

// err returns an error of ErrNotCommitting while writes fail.
func (w *writeHealth) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed >= writeFailuresNotReady {
		return fmt.Errorf("%w: the last %d writes failed", ErrNotCommitting, w.failed)
	}
	return nil
}

// Ready reports whether the service can serve: the database answers a
// query, the pending store answers, and the database commits writes, as the
// writes of the moment tell, or a write probe when they tell nothing (see
// writeHealth). A probe keeps ctx's deadline but not its cancellation, so
// that a client that hangs up does not make it fail.
func (d *Dialogues) Ready(ctx context.Context) error {
	if err := d.repo.Ping(ctx); err != nil {
		return err
	}
	if _, err := d.pending.Counts(ctx); err != nil {
		return err
	}
	if d.health.probeDue() {
		pctx := context.WithoutCancel(ctx)
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			pctx, cancel = context.WithDeadline(pctx, deadline)
			defer cancel()
		}
		err := d.repo.ProbeWrite(pctx)
		if err != nil {
			d.o.Logger.Warn("write probe failed", "err", err)
		}
		d.health.probeDone(err)
	}
	return d.health.err()
}

// wrote takes the outcome of a database write of op that started at start:
// for readiness, and for ObserveWrite.
func (d *Dialogues) wrote(op string, start time.Time, err error) {
	d.health.record(err)
	d.o.ObserveWrite(op, time.Since(start), err)
}
