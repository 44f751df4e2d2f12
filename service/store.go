package service

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/data-api/data-api/model"
)

// store holds pending dialogues in memory, sharded by a hash of the dialogue
// id so that ingestion on different dialogues rarely contends. It is the only
// place unconsented text lives.
type store struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
	ttl    int64 // nanoseconds

	dialogues atomic.Int64 // pending dialogues in all shards
	messages  atomic.Int64 // pending messages in all shards
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
	lastAt   int64 // receive time of the newest message, Unix ns

	// busy is non-nil while a decision on this dialogue is being written to
	// the database; it is closed when the write ends. Whoever else wants the
	// dialogue meanwhile waits for it, which linearizes them.
	busy chan struct{}
}

type pending struct {
	text string
	at   int64
	lang uint32
}

func newStore(shards int, ttl time.Duration) *store {
	s := &store{
		seed:   maphash.MakeSeed(),
		mask:   uint64(shards - 1),
		shards: make([]shard, shards),
		ttl:    int64(ttl),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*dialogue)
	}
	return s
}

func (s *store) shard(dialogueID string) *shard {
	return &s.shards[maphash.String(s.seed, dialogueID)&s.mask]
}

// expired reports whether d has been idle for the TTL at now. A dialogue being
// written never expires: its decision was taken before the deadline.
func (s *store) expired(d *dialogue, now int64) bool {
	return d.busy == nil && now-d.lastAt >= s.ttl
}

// live returns the pending dialogue id of sh at now, removing it when it has
// expired. The caller holds sh.mu. evicted reports a removal.
func (s *store) live(sh *shard, id string, now int64) (d *dialogue, evicted bool) {
	d = sh.m[id]
	if d != nil && s.expired(d, now) {
		s.remove(sh, id, d)
		return nil, true
	}
	return d, false
}

// remove deletes d from sh. The caller holds sh.mu.
func (s *store) remove(sh *shard, id string, d *dialogue) {
	delete(sh.m, id)
	s.dialogues.Add(-1)
	s.messages.Add(-int64(len(d.msgs)))
}

// append adds a message to d. The caller holds the shard lock.
func (s *store) append(d *dialogue, lang, text string, at int64) {
	li := -1
	for i, l := range d.langs {
		if l == lang {
			li = i
			break
		}
	}
	if li < 0 {
		li = len(d.langs)
		d.langs = append(d.langs, lang)
	}
	d.msgs = append(d.msgs, pending{text: text, at: at, lang: uint32(li)})
	d.lastAt = at
	s.messages.Add(1)
}

// snapshot copies d's messages out for a database write. The caller holds the
// shard lock; the strings are shared, not copied.
func (d *dialogue) snapshot(id string) []model.Message {
	out := make([]model.Message, len(d.msgs))
	for i, p := range d.msgs {
		out[i] = model.Message{
			CustomerID: d.customer,
			DialogueID: id,
			Language:   d.langs[p.lang],
			Text:       p.text,
			CreatedAt:  time.Unix(0, p.at).UTC(),
		}
	}
	return out
}

// sweep removes every expired dialogue, one shard at a time, holding each
// shard's lock only for the walk over that shard. It returns how many it
// removed.
func (s *store) sweep(now int64) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, d := range sh.m {
			if s.expired(d, now) {
				s.remove(sh, id, d)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}
