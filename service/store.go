package service

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/data-api/data-api/model"
)

// store is the in-memory PendingStore: dialogues sharded by a hash of their
// id so that ingestion on different dialogues rarely contends. It is the only
// place unconsented text lives when no shared store is configured.
type store struct {
	seed        maphash.Seed
	mask        uint64
	shards      []shard
	ttl         int64 // nanoseconds
	clock       func() time.Time
	maxPending  int64
	maxMessages int
	maxBytes    int64

	dialogues    atomic.Int64 // pending dialogues in all shards
	messages     atomic.Int64 // pending messages in all shards
	bytes        atomic.Int64 // pending message text in all shards
	expiredTotal atomic.Int64 // dialogues dropped at their TTL, ever
}

type shard struct {
	mu sync.Mutex
	m  map[string]*dialogue
	_  [40]byte // keep neighbouring shard locks on separate cache lines
}

// dialogue is one pending dialogue. Languages are interned per dialogue and
// times kept as integers so that a message costs little more than its text.
type dialogue struct {
	customer string
	langs    []string
	msgs     []pending
	size     int   // bytes of text in msgs
	lastAt   int64 // receive time of the newest message, Unix ns

	// busy is non-nil while the dialogue is taken for a decision; it is
	// closed on release. Whoever else wants the dialogue meanwhile waits.
	busy chan struct{}
}

type pending struct {
	text string
	at   int64
	lang uint32
}

// storeOptions configures the in-memory store.
type storeOptions struct {
	shards, maxPending, maxMessages int
	maxBytes                        int64
	ttl                             time.Duration
	clock                           func() time.Time
}

func newStore(o storeOptions) *store {
	s := &store{
		seed:        maphash.MakeSeed(),
		mask:        uint64(o.shards - 1),
		shards:      make([]shard, o.shards),
		ttl:         int64(o.ttl),
		clock:       o.clock,
		maxPending:  int64(o.maxPending),
		maxMessages: o.maxMessages,
		maxBytes:    o.maxBytes,
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*dialogue)
	}
	return s
}

func (s *store) shard(dialogueID string) *shard {
	return &s.shards[maphash.String(s.seed, dialogueID)&s.mask]
}

// expired reports whether d has been idle for the TTL at now. A taken
// dialogue never expires: its decision was asked for before the deadline.
func (s *store) expired(d *dialogue, now int64) bool {
	return d.busy == nil && now-d.lastAt >= s.ttl
}

// lockLive locks the shard of id and returns the live pending dialogue id,
// dropping it when it has expired and waiting while it is taken. The caller
// must unlock the shard.
func (s *store) lockLive(ctx context.Context, id string) (*shard, *dialogue, error) {
	sh := s.shard(id)
	for {
		sh.mu.Lock()
		d := sh.m[id]
		if d != nil && s.expired(d, s.clock().UnixNano()) {
			s.remove(sh, id, d)
			s.expiredTotal.Add(1)
			d = nil
		}
		if d == nil || d.busy == nil {
			return sh, d, nil
		}
		busy := d.busy
		sh.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// remove deletes d from sh. The caller holds sh.mu.
func (s *store) remove(sh *shard, id string, d *dialogue) {
	delete(sh.m, id)
	s.dialogues.Add(-1)
	s.messages.Add(-int64(len(d.msgs)))
	s.bytes.Add(-int64(d.size))
}

func (s *store) Append(ctx context.Context, m model.Message, ownerChecked bool) (int, error) {
	sh, d, err := s.lockLive(ctx, m.DialogueID)
	if err != nil {
		return 0, err
	}
	defer sh.mu.Unlock()
	if d == nil {
		// A full store refuses before anyone asks the database about the
		// dialogue's owner, so that a flood of new dialogues costs little.
		if !ownerChecked {
			if s.dialogues.Load() >= s.maxPending {
				return 0, model.TooManyDialogues(s.maxPending)
			}
			if s.bytes.Load()+int64(len(m.Text)) > s.maxBytes {
				return 0, model.TooManyBytes(s.maxBytes)
			}
			return 0, model.ErrNewDialogue
		}
		if s.dialogues.Add(1) > s.maxPending {
			s.dialogues.Add(-1)
			return 0, model.TooManyDialogues(s.maxPending)
		}
		d = &dialogue{customer: m.CustomerID}
		sh.m[m.DialogueID] = d
	}
	if d.customer != m.CustomerID {
		return 0, model.ErrOtherCustomer
	}
	if len(d.msgs) >= s.maxMessages {
		return 0, model.TooManyMessages(s.maxMessages)
	}
	if s.bytes.Add(int64(len(m.Text))) > s.maxBytes {
		s.bytes.Add(-int64(len(m.Text)))
		if len(d.msgs) == 0 { // created above for this message
			s.remove(sh, m.DialogueID, d)
		}
		return 0, model.TooManyBytes(s.maxBytes)
	}
	d.size += len(m.Text)
	li := -1
	for i, l := range d.langs {
		if l == m.Language {
			li = i
			break
		}
	}
	if li < 0 {
		li = len(d.langs)
		d.langs = append(d.langs, m.Language)
	}
	at := m.CreatedAt.UnixNano()
	d.msgs = append(d.msgs, pending{text: m.Text, at: at, lang: uint32(li)})
	d.lastAt = at
	s.messages.Add(1)
	return len(d.msgs), nil
}

func (s *store) Take(ctx context.Context, id string) (*model.Handover, error) {
	sh, d, err := s.lockLive(ctx, id)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	if d == nil {
		return nil, nil
	}
	d.busy = make(chan struct{})
	h := &model.Handover{DialogueID: id, CustomerID: d.customer, Messages: make([]model.Message, len(d.msgs))}
	for i, p := range d.msgs {
		h.Messages[i] = model.Message{
			CustomerID: d.customer,
			DialogueID: id,
			Language:   d.langs[p.lang],
			Text:       p.text,
			CreatedAt:  time.Unix(0, p.at).UTC(),
		}
	}
	return h, nil
}

func (s *store) Release(_ context.Context, h *model.Handover, done bool) error {
	sh := s.shard(h.DialogueID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// A taken dialogue stays in place: nothing else may remove or replace it.
	d := sh.m[h.DialogueID]
	if done {
		s.remove(sh, h.DialogueID, d)
	}
	close(d.busy)
	d.busy = nil
	return nil
}

func (s *store) DropCustomer(ctx context.Context, customerID string) (dialogues, messages int, err error) {
	for i := range s.shards {
		sh := &s.shards[i]
		for {
			var busy chan struct{}
			sh.mu.Lock()
			for id, d := range sh.m {
				if d.customer != customerID {
					continue
				}
				if d.busy != nil {
					busy = d.busy
					continue
				}
				dialogues++
				messages += len(d.msgs)
				s.remove(sh, id, d)
			}
			sh.mu.Unlock()
			if busy == nil {
				break
			}
			select {
			case <-busy:
			case <-ctx.Done():
				return dialogues, messages, ctx.Err()
			}
		}
	}
	return dialogues, messages, nil
}

// Sweep walks one shard at a time, holding each shard's lock only for the
// walk over that shard.
func (s *store) Sweep(context.Context) error {
	now := s.clock().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, d := range sh.m {
			if s.expired(d, now) {
				s.remove(sh, id, d)
				s.expiredTotal.Add(1)
			}
		}
		sh.mu.Unlock()
	}
	return nil
}

func (s *store) Counts(context.Context) (model.PendingCounts, error) {
	return model.PendingCounts{
		Dialogues: s.dialogues.Load(),
		Messages:  s.messages.Load(),
		Bytes:     s.bytes.Load(),
		Expired:   s.expiredTotal.Load(),
	}, nil
}
