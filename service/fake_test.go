package service

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/data-api/data-api/model"
)

// fakeRepo is an in-memory Repository for the service's own tests: it records
// what was written and fails on demand.
type fakeRepo struct {
	mu        sync.Mutex
	messages  []model.StoredMessage
	decisions []model.Decision
	erasures  []model.Erasure
	nextID    int64
	saveCalls int

	// failSave, when set, decides whether a SaveConsents call fails.
	failSave func(cs []model.Consent) bool
	// beforeSave, when set, runs at the start of SaveConsents, outside the lock.
	beforeSave func()
	// probeErr is what ProbeWrite returns; probes counts its calls.
	probeErr error
	probes   int
	// purges holds the cutoff of every DeleteCreatedBefore call; onPurge,
	// when set, runs at its start, outside the lock.
	purges  []time.Time
	onPurge func()
}

var errDisk = errors.Join(model.ErrUnavailable, errors.New("disk on fire"))

func (r *fakeRepo) SaveConsents(_ context.Context, cs []model.Consent) error {
	if r.beforeSave != nil {
		r.beforeSave()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.saveCalls++
	if r.failSave != nil && r.failSave(cs) {
		return errDisk
	}
	for _, c := range cs {
		for _, m := range c.Messages {
			r.nextID++
			r.messages = append(r.messages, model.StoredMessage{ID: r.nextID, Message: m})
		}
		r.decisions = append(r.decisions, c.Decision)
	}
	return nil
}

func (r *fakeRepo) Withdraw(_ context.Context, d model.Decision) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.messages)
	r.messages = slices.DeleteFunc(r.messages, func(m model.StoredMessage) bool { return m.DialogueID == d.DialogueID })
	deleted := n - len(r.messages)
	d.Messages += deleted
	r.decisions = append(r.decisions, d)
	return deleted, nil
}

func (r *fakeRepo) LatestDecision(_ context.Context, id string) (model.Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.decisions) - 1; i >= 0; i-- {
		if r.decisions[i].DialogueID == id {
			return r.decisions[i], nil
		}
	}
	return model.Decision{}, model.Errorf(model.ErrNotFound, "no decision")
}

func (r *fakeRepo) DialogueOwner(_ context.Context, id string) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.decisions) - 1; i >= 0; i-- {
		if d := r.decisions[i]; d.DialogueID == id && d.CustomerID != "" {
			return d.CustomerID, true, nil
		}
	}
	return "", false, nil
}

func (r *fakeRepo) Messages(context.Context, model.Filter, *model.Position, int) ([]model.StoredMessage, error) {
	return nil, errors.New("not used")
}

func (r *fakeRepo) Export(context.Context, model.Filter, func(model.StoredMessage) error) error {
	return errors.New("not used")
}

func (r *fakeRepo) CustomerData(context.Context, string, func(model.CustomerRecord) error) error {
	return errors.New("not used")
}

func (r *fakeRepo) EraseCustomer(_ context.Context, e model.Erasure) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.messages)
	r.messages = slices.DeleteFunc(r.messages, func(m model.StoredMessage) bool { return m.CustomerID == e.CustomerID })
	e.Messages = n - len(r.messages)
	r.erasures = append(r.erasures, e)
	return e.Messages, nil
}

func (r *fakeRepo) DeleteCreatedBefore(_ context.Context, t time.Time, limit int) (int, error) {
	if r.onPurge != nil {
		r.onPurge()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purges = append(r.purges, t)
	var deleted int
	r.messages = slices.DeleteFunc(r.messages, func(m model.StoredMessage) bool {
		if deleted < limit && m.CreatedAt.Before(t) {
			deleted++
			return true
		}
		return false
	})
	return deleted, nil
}

func (r *fakeRepo) OldestMessage(context.Context) (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var oldest time.Time
	for _, m := range r.messages {
		if oldest.IsZero() || m.CreatedAt.Before(oldest) {
			oldest = m.CreatedAt
		}
	}
	return oldest, nil
}

func (r *fakeRepo) Ping(context.Context) error { return nil }

func (r *fakeRepo) ProbeWrite(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probes++
	return r.probeErr
}

// stored returns the texts stored for a dialogue, in order.
func (r *fakeRepo) stored(dialogueID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.messages {
		if m.DialogueID == dialogueID {
			out = append(out, m.Text)
		}
	}
	return out
}

// purged returns the cutoffs of the DeleteCreatedBefore calls so far.
func (r *fakeRepo) purged() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.purges)
}

// calls returns how many times SaveConsents was called.
func (r *fakeRepo) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveCalls
}

// backgroundWaits reports whether a background write waits for its turn.
func (cm *committer) backgroundWaits() bool {
	_, waits := cm.group.Waiting()
	return waits
}

// queued returns how many consents wait for the committer.
func (cm *committer) queued() int {
	n, _ := cm.group.Waiting()
	return n
}
