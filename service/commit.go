package service

import (
	"context"
	"time"

	"github.com/data-api/data-api/internal/group"
	"github.com/data-api/data-api/model"
)

// commitTimeout bounds one group-commit transaction. The write runs detached
// from any one caller's context: a client that hangs up must not abort the
// consents of the others in the same transaction.
const commitTimeout = 30 * time.Second

// yieldAfter is how many consent transactions in a row a purge batch waits
// behind at most before it takes its turn (see group).
const yieldAfter = 8

// committer gathers the consents waiting at the same moment into one
// transaction (group commit, see package group), so that a burst of
// consents costs one durable commit rather than one each. The retention
// purge's batches take turns with those transactions, giving way to them.
type committer struct {
	repo Repository
	// wrote is told of each write: when it started and how it ended.
	wrote func(op string, start time.Time, err error)
	group *group.Group[*commitReq]
}

type commitReq struct {
	c   model.Consent
	err error
}

// do writes c durably, possibly together with other consents, and returns
// c's own outcome: a batch that fails is retried one consent at a time, so
// one bad dialogue never fails another.
func (cm *committer) do(ctx context.Context, c model.Consent) error {
	r := &commitReq{c: c}
	cm.group.Do(r, func(batch []*commitReq) { cm.write(context.WithoutCancel(ctx), batch) })
	return r.err
}

func (cm *committer) write(ctx context.Context, batch []*commitReq) {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	cs := make([]model.Consent, len(batch))
	for i, b := range batch {
		cs[i] = b.c
	}
	err := cm.save(ctx, cs)
	if err == nil || len(batch) == 1 {
		for _, b := range batch {
			b.err = err
		}
		return
	}
	for _, b := range batch {
		b.err = cm.save(ctx, []model.Consent{b.c})
	}
}

func (cm *committer) save(ctx context.Context, cs []model.Consent) error {
	start := time.Now()
	err := cm.repo.SaveConsents(ctx, cs)
	cm.wrote("consent", start, err)
	return err
}
