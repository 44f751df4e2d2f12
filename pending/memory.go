package pending

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/data-api/data-api/model"
)

// Memory is the Store in this process's heap: dialogues sharded by a hash of
// their id, so that ingestion on different dialogues rarely contends. Expiry
// is checked on every read with the injected clock.
type Memory struct {
	limits Limits
	clock  func() time.Time
	seed   maphash.Seed
	mask   uint64
	shards []shard

	dialogues    atomic.Int64 // pending dialogues in all shards, expired but unswept ones included
	messages     atomic.Int64 // their messages
	bytes        atomic.Int64 // their messages, as size counts them
	expiredTotal atomic.Int64 // dialogues dropped at their TTL, ever

	// walking serialises the walks over every shard that drop expired
	// dialogues. expiresFrom is the earliest time at which a dialogue can
	// expire, as the last walk found it (Unix ns): before then a walk would
	// find nothing to drop.
	walking     sync.Mutex
	expiresFrom atomic.Int64
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
	msgs     []message
	size     int64 // what msgs count against the byte cap
	lastAt   int64 // receive time of the newest message, Unix ns

	// busy is non-nil while the dialogue is taken for a decision; it is
	// closed when the take ends. Whoever else wants the dialogue meanwhile
	// waits.
	busy chan struct{}
}

type message struct {
	text string
	at   int64
	lang uint32
}

// MemoryOptions configures a Memory store.
type MemoryOptions struct {
	Limits
	Shards int              // lock shards, a power of two
	Clock  func() time.Time // nil: time.Now
}

// NewMemory returns an empty Memory store, or an error naming every option
// out of range.
func NewMemory(o MemoryOptions) (*Memory, error) {
	err := o.Limits.check()
	if o.Shards < 1 || o.Shards&(o.Shards-1) != 0 {
		err = errors.Join(err, fmt.Errorf("the shard count must be a power of two, got %d", o.Shards))
	}
	if err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	s := &Memory{
		limits: o.Limits,
		clock:  o.Clock,
		seed:   maphash.MakeSeed(),
		mask:   uint64(o.Shards - 1),
		shards: make([]shard, o.Shards),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*dialogue)
	}
	s.expiresFrom.Store(math.MaxInt64) // nothing is pending
	return s, nil
}

func (s *Memory) shard(dialogueID string) *shard {
	return &s.shards[maphash.String(s.seed, dialogueID)&s.mask]
}

func (s *Memory) deadline(d *dialogue) int64 { return d.lastAt + int64(s.limits.TTL) }

// expired reports whether d has been idle for the TTL at now. A taken
// dialogue never expires: its decision was asked for before the deadline.
func (s *Memory) expired(d *dialogue, now int64) bool {
	return d.busy == nil && now >= s.deadline(d)
}

// lockLive locks the shard of id and returns the live dialogue id, dropping
// it when it has expired and waiting while it is taken. The caller must
// unlock the shard.
func (s *Memory) lockLive(ctx context.Context, id string) (*shard, *dialogue, error) {
	sh := s.shard(id)
	for {
		sh.mu.Lock()
		d := sh.m[id]
		if d != nil && s.expired(d, s.clock().UnixNano()) {
			s.expire(sh, id, d)
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
func (s *Memory) remove(sh *shard, id string, d *dialogue) {
	delete(sh.m, id)
	s.dialogues.Add(-1)
	s.messages.Add(-int64(len(d.msgs)))
	s.bytes.Add(-d.size)
}

func (s *Memory) expire(sh *shard, id string, d *dialogue) {
	s.remove(sh, id, d)
	s.expiredTotal.Add(1)
}

func (s *Memory) Append(ctx context.Context, m model.Message) (int, error) {
	return s.add(ctx, m, false)
}

func (s *Memory) Start(ctx context.Context, m model.Message) (int, error) {
	return s.add(ctx, m, true)
}

// add appends m to its live dialogue, starting one if start is set. Before
// it refuses for a cap, it drops what has expired and tries once more.
func (s *Memory) add(ctx context.Context, m model.Message, start bool) (int, error) {
	n, err := s.tryAdd(ctx, m, start)
	if errors.Is(err, model.ErrFull) && s.dropExpired() {
		n, err = s.tryAdd(ctx, m, start)
	}
	return n, err
}

func (s *Memory) tryAdd(ctx context.Context, m model.Message, start bool) (int, error) {
	sh, d, err := s.lockLive(ctx, m.DialogueID)
	if err != nil {
		return 0, err
	}
	defer sh.mu.Unlock()
	sz := size(m)
	if d == nil {
		switch {
		case s.dialogues.Load() >= int64(s.limits.MaxDialogues):
			return 0, tooManyDialogues(s.limits.MaxDialogues)
		case s.bytes.Load()+sz > s.limits.MaxBytes:
			return 0, tooManyBytes(s.limits.MaxBytes)
		case !start:
			return 0, errNotLive
		}
		if s.dialogues.Add(1) > int64(s.limits.MaxDialogues) {
			s.dialogues.Add(-1)
			return 0, tooManyDialogues(s.limits.MaxDialogues)
		}
		d = &dialogue{customer: m.CustomerID}
		sh.m[m.DialogueID] = d
		s.mayExpireAt(m.CreatedAt.UnixNano() + int64(s.limits.TTL))
	}
	if d.customer != m.CustomerID {
		return 0, model.ErrOtherCustomer
	}
	if len(d.msgs) >= s.limits.MaxMessages {
		return 0, tooManyMessages(s.limits.MaxMessages)
	}
	if s.bytes.Add(sz) > s.limits.MaxBytes {
		s.bytes.Add(-sz)
		if len(d.msgs) == 0 { // started above for this message
			s.remove(sh, m.DialogueID, d)
		}
		return 0, tooManyBytes(s.limits.MaxBytes)
	}
	d.size += sz
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
	d.msgs = append(d.msgs, message{text: m.Text, at: at, lang: uint32(li)})
	d.lastAt = at
	s.messages.Add(1)
	return len(d.msgs), nil
}

// dropExpired walks every shard to drop the expired dialogues when any can
// have expired, and reports whether it walked (or waited for a walk that
// another caller made meanwhile).
func (s *Memory) dropExpired() bool {
	if s.clock().UnixNano() < s.expiresFrom.Load() {
		return false
	}
	s.walk()
	return true
}

// mayExpireAt notes that a dialogue may expire at t (Unix ns).
func (s *Memory) mayExpireAt(t int64) {
	for {
		from := s.expiresFrom.Load()
		if t >= from || s.expiresFrom.CompareAndSwap(from, t) {
			return
		}
	}
}

// walk drops the expired dialogues, holding each shard's lock only for the
// walk over that shard, and notes when the next one can expire.
func (s *Memory) walk() {
	s.walking.Lock()
	defer s.walking.Unlock()
	now := s.clock().UnixNano()
	// A dialogue started after this walk expires after now+TTL; one taken
	// now may be restored with its deadline, so it counts as it stands.
	next := now + int64(s.limits.TTL)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, d := range sh.m {
			if s.expired(d, now) {
				s.expire(sh, id, d)
			} else {
				next = min(next, s.deadline(d))
			}
		}
		sh.mu.Unlock()
	}
	s.expiresFrom.Store(next)
}

func (s *Memory) Take(ctx context.Context, id string) (*Taken, error) {
	sh, d, err := s.lockLive(ctx, id)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	if d == nil {
		return nil, nil
	}
	d.busy = make(chan struct{})
	t := &Taken{DialogueID: id, CustomerID: d.customer, Messages: make([]model.Message, len(d.msgs))}
	for i, p := range d.msgs {
		t.Messages[i] = model.Message{
			CustomerID: d.customer,
			DialogueID: id,
			Language:   d.langs[p.lang],
			Text:       p.text,
			CreatedAt:  time.Unix(0, p.at).UTC(),
		}
	}
	return t, nil
}

func (s *Memory) Drop(_ context.Context, t *Taken) error {
	s.endTake(t, true)
	return nil
}

func (s *Memory) Restore(_ context.Context, t *Taken) error {
	s.endTake(t, false)
	return nil
}

func (s *Memory) endTake(t *Taken, drop bool) {
	sh := s.shard(t.DialogueID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// A taken dialogue stays in place: nothing else may remove or replace it.
	d := sh.m[t.DialogueID]
	if drop {
		s.remove(sh, t.DialogueID, d)
	}
	close(d.busy)
	d.busy = nil
}

func (s *Memory) DropCustomer(ctx context.Context, customerID string) (dialogues, messages int, err error) {
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
func (s *Memory) Sweep(context.Context) error {
	s.walk()
	return nil
}

func (s *Memory) Counts(context.Context) (Counts, error) {
	return Counts{
		Dialogues: s.dialogues.Load(),
		Messages:  s.messages.Load(),
		Bytes:     s.bytes.Load(),
		Expired:   s.expiredTotal.Load(),
	}, nil
}
