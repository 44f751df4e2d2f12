package repository

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/data-api/data-api/model"
)

// RedisOptions configures the shared store of pending dialogues.
type RedisOptions struct {
	URL         string // redis://[:password@]host:port/db
	Prefix      string // of every key, so that several deployments can share a server
	TTL         time.Duration
	MaxPending  int
	MaxMessages int
	MaxBytes    int64 // of pending message text, in all dialogues; 0: no cap
	// TakeTimeout is how long a dialogue taken for a decision stays taken
	// when its taker never releases it (the process died mid-decision);
	// after that any instance may take it again.
	TakeTimeout time.Duration
}

// RedisPending keeps pending dialogues in Redis so that every instance of
// the service sees the same dialogues. Each operation is one Lua script, so
// it is atomic across instances. Idle TTL is Redis key expiry, refreshed by
// every message; times are the Redis server's.
//
// Keys, below the prefix: d:{id} a hash (customer, deadline, take token),
// m:{id} the list of messages, c:{customer} the set of the customer's
// dialogues, and pending (a sorted set of dialogue ids by deadline), counts
// (messages per dialogue), total, sizes (text bytes per dialogue), bytes,
// expired and epoch for the caps and gauges.
type RedisPending struct {
	rdb *redis.Client
	o   RedisOptions
}

// OpenRedis connects to Redis and checks that it answers.
func OpenRedis(ctx context.Context, o RedisOptions) (*RedisPending, error) {
	opts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = math.MaxInt64
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, unavailable(ctx, "connect to redis", err)
	}
	return &RedisPending{rdb: rdb, o: o}, nil
}

// Close closes the connections.
func (r *RedisPending) Close() error { return r.rdb.Close() }

// Ping checks that Redis answers.
func (r *RedisPending) Ping(ctx context.Context) error {
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return unavailable(ctx, "ping redis", err)
	}
	return nil
}

func (r *RedisPending) key(parts ...string) string {
	return r.o.Prefix + strings.Join(parts, ":")
}

// keys are the keys every script gets, in this order.
func (r *RedisPending) keys(dialogueID, customerID string) []string {
	return []string{
		r.key("d", dialogueID), r.key("m", dialogueID), r.key("pending"), r.key("counts"),
		r.key("total"), r.key("expired"), r.key("c", customerID), r.key("epoch"),
		r.key("sizes"), r.key("bytes"),
	}
}

// prelude is shared by every script: KEYS are as keys() orders them, and
// live() settles the dialogue's state at the server's time — expired,
// abandoned by a taker that died, taken, or pending.
const prelude = `
local D, M, PENDING, COUNTS, TOTAL, EXPIRED, CUST, EPOCH, SIZES, BYTES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function forget(id)
  local n = tonumber(redis.call('HGET', COUNTS, id) or '0')
  local size = tonumber(redis.call('HGET', SIZES, id) or '0')
  redis.call('HDEL', COUNTS, id)
  redis.call('HDEL', SIZES, id)
  redis.call('ZREM', PENDING, id)
  redis.call('DECRBY', TOTAL, n)
  redis.call('DECRBY', BYTES, size)
  return n
end

local function expire(id)
  redis.call('DEL', D, M)
  forget(id)
  redis.call('INCR', EXPIRED)
end

-- live returns 'none', 'busy' or 'live' and the dialogue's customer.
local function live(id)
  local h = redis.call('HMGET', D, 'c', 'dl', 'busy', 'bu')
  if not h[1] then
    if redis.call('HEXISTS', COUNTS, id) == 1 then expire(id) end
    return 'none'
  end
  if h[3] then
    if tonumber(h[4]) > now then return 'busy', h[1] end
    redis.call('HDEL', D, 'busy', 'bu')
  end
  if tonumber(h[2]) <= now then
    expire(id)
    return 'none'
  end
  if h[3] then
    redis.call('PEXPIREAT', D, h[2])
    redis.call('PEXPIREAT', M, h[2])
  end
  return 'live', h[1]
end
`

// Script results that are not data.
const (
	resBusy     = -9
	resConflict = -1
	resLimit    = -2
	resNew      = -3
	resFull     = -4
	resBytes    = -5
)

// ARGV: id, customer, ttl ms, max pending, max messages, owner checked,
// encoded message, text bytes, max bytes.
var appendScript = redis.NewScript(prelude + `
local id, customer, size = ARGV[1], ARGV[2], tonumber(ARGV[8])
local state, owner = live(id)
if state == 'busy' then return {-9} end
local full = tonumber(redis.call('GET', BYTES) or '0') + size > tonumber(ARGV[9])
if state == 'live' then
  if owner ~= customer then return {-1} end
  if tonumber(redis.call('HGET', COUNTS, id) or '0') >= tonumber(ARGV[5]) then return {-2} end
  if full then return {-5} end
else
  if redis.call('ZCOUNT', PENDING, now, '+inf') >= tonumber(ARGV[4]) then return {-4} end
  if full then return {-5} end
  if ARGV[6] ~= '1' then return {-3} end
  redis.call('HSET', D, 'c', customer, 'ep', redis.call('INCR', EPOCH))
  redis.call('SADD', CUST, id)
end
local n = redis.call('HINCRBY', COUNTS, id, 1)
redis.call('INCR', TOTAL)
redis.call('HINCRBY', SIZES, id, size)
redis.call('INCRBY', BYTES, size)
local ep = redis.call('HGET', D, 'ep')
redis.call('RPUSH', M, ep .. ':' .. n .. '|' .. ARGV[7])
local dl = now + tonumber(ARGV[3])
redis.call('HSET', D, 'dl', dl)
redis.call('PEXPIREAT', D, dl)
redis.call('PEXPIREAT', M, dl)
redis.call('ZADD', PENDING, dl, id)
redis.call('PEXPIRE', CUST, ARGV[3])
return {n}
`)

// ARGV: id, token, take timeout ms.
var takeScript = redis.NewScript(prelude + `
local id = ARGV[1]
local state, owner = live(id)
if state == 'busy' then return {-9} end
if state == 'none' then return {0} end
local bu = now + tonumber(ARGV[3])
redis.call('HSET', D, 'busy', ARGV[2], 'bu', bu)
local keep = math.max(bu, tonumber(redis.call('HGET', D, 'dl')))
redis.call('PEXPIREAT', D, keep)
redis.call('PEXPIREAT', M, keep)
return {1, owner, redis.call('LRANGE', M, 0, -1)}
`)

// ARGV: id, token, done ("1" or "0").
var releaseScript = redis.NewScript(prelude + `
local id = ARGV[1]
if redis.call('HGET', D, 'busy') ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then
  redis.call('DEL', D, M)
  forget(id)
  redis.call('SREM', CUST, id)
  return 1
end
redis.call('HDEL', D, 'busy', 'bu')
local dl = redis.call('HGET', D, 'dl')
if tonumber(dl) <= now then
  expire(id)
else
  redis.call('PEXPIREAT', D, dl)
  redis.call('PEXPIREAT', M, dl)
end
return 1
`)

// KEYS as keys() with an empty dialogue; ARGV: customer, key prefix.
// Returns dialogues dropped, messages dropped, dialogues still taken.
var dropCustomerScript = redis.NewScript(prelude + `
local dropped, messages, busy = 0, 0, 0
for _, id in ipairs(redis.call('SMEMBERS', CUST)) do
  D, M = ARGV[2] .. 'd:' .. id, ARGV[2] .. 'm:' .. id
  local state, owner = live(id)
  if state == 'busy' then
    busy = busy + 1
  else
    if state == 'live' and owner == ARGV[1] then
      redis.call('DEL', D, M)
      messages = messages + forget(id)
      dropped = dropped + 1
    end
    redis.call('SREM', CUST, id)
  end
end
return {dropped, messages, busy}
`)

// ARGV: key prefix, most dialogues to look at. Returns how many it settled:
// a taken dialogue past its deadline stays, for its decision is under way.
var sweepScript = redis.NewScript(prelude + `
local settled = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', PENDING, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  D, M = ARGV[1] .. 'd:' .. id, ARGV[1] .. 'm:' .. id
  if live(id) ~= 'busy' then settled = settled + 1 end
end
return settled
`)

// encodeMessage packs what a pending message needs: its text goes last, so
// that it may hold any character.
func encodeMessage(m model.Message) string {
	return strconv.FormatInt(m.CreatedAt.UnixNano(), 10) + "|" + m.Language + "|" + m.Text
}

// decodeMessage reverses encodeMessage; the script put the message's key
// in front.
func decodeMessage(s, dialogueID, customerID string) (model.Message, error) {
	parts := strings.SplitN(s, "|", 4)
	if len(parts) != 4 {
		return model.Message{}, errors.New("malformed pending message")
	}
	ns, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return model.Message{}, fmt.Errorf("malformed pending message: %w", err)
	}
	return model.Message{
		CustomerID: customerID,
		DialogueID: dialogueID,
		Language:   parts[2],
		Text:       parts[3],
		CreatedAt:  time.Unix(0, ns).UTC(),
		Key:        dialogueID + ":" + parts[0],
	}, nil
}

// waitTaken waits a little before asking again about a dialogue that another
// caller has taken for a decision; the wait grows with each attempt.
func waitTaken(ctx context.Context, attempt int) error {
	d := time.Millisecond << min(attempt, 5)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *RedisPending) Append(ctx context.Context, m model.Message, ownerChecked bool) (int, error) {
	checked := "0"
	if ownerChecked {
		checked = "1"
	}
	for attempt := 0; ; attempt++ {
		res, err := appendScript.Run(ctx, r.rdb, r.keys(m.DialogueID, m.CustomerID),
			m.DialogueID, m.CustomerID, r.o.TTL.Milliseconds(), r.o.MaxPending, r.o.MaxMessages, checked, encodeMessage(m),
			len(m.Text), r.o.MaxBytes).Int64Slice()
		if err != nil {
			return 0, unavailable(ctx, "append pending message", err)
		}
		switch res[0] {
		case resBusy:
			if err := waitTaken(ctx, attempt); err != nil {
				return 0, err
			}
			continue
		case resConflict:
			return 0, model.ErrOtherCustomer
		case resLimit:
			return 0, model.TooManyMessages(r.o.MaxMessages)
		case resNew:
			return 0, model.ErrNewDialogue
		case resFull:
			return 0, model.TooManyDialogues(int64(r.o.MaxPending))
		case resBytes:
			return 0, model.TooManyBytes(r.o.MaxBytes)
		}
		return int(res[0]), nil
	}
}

func (r *RedisPending) Take(ctx context.Context, dialogueID string) (*model.Handover, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	for attempt := 0; ; attempt++ {
		res, err := takeScript.Run(ctx, r.rdb, r.keys(dialogueID, ""), dialogueID, token, r.o.TakeTimeout.Milliseconds()).Slice()
		if err != nil {
			return nil, unavailable(ctx, "take pending dialogue", err)
		}
		switch res[0].(int64) {
		case resBusy:
			if err := waitTaken(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		case 0:
			return nil, nil
		}
		customer := res[1].(string)
		raw := res[2].([]any)
		h := &model.Handover{DialogueID: dialogueID, CustomerID: customer, Token: token, Messages: make([]model.Message, len(raw))}
		for i, v := range raw {
			if h.Messages[i], err = decodeMessage(v.(string), dialogueID, customer); err != nil {
				return nil, err
			}
		}
		return h, nil
	}
}

func (r *RedisPending) Release(ctx context.Context, h *model.Handover, done bool) error {
	d := "0"
	if done {
		d = "1"
	}
	// A take that timed out may have been settled by another instance; the
	// script then leaves the dialogue alone. A consent retried after that
	// stores nothing twice, since every message has a unique key.
	err := releaseScript.Run(ctx, r.rdb, r.keys(h.DialogueID, h.CustomerID), h.DialogueID, h.Token, d).Err()
	if err != nil {
		return unavailable(ctx, "release pending dialogue", err)
	}
	return nil
}

func (r *RedisPending) DropCustomer(ctx context.Context, customerID string) (dialogues, messages int, err error) {
	for attempt := 0; ; attempt++ {
		res, err := dropCustomerScript.Run(ctx, r.rdb, r.keys("", customerID), customerID, r.o.Prefix).Int64Slice()
		if err != nil {
			return dialogues, messages, unavailable(ctx, "drop pending dialogues", err)
		}
		dialogues += int(res[0])
		messages += int(res[1])
		if res[2] == 0 {
			return dialogues, messages, nil
		}
		if err := waitTaken(ctx, attempt); err != nil {
			return dialogues, messages, err
		}
	}
}

// sweepBatch bounds the work of one sweep script, so that Redis never
// stalls other clients for long.
const sweepBatch = 500

func (r *RedisPending) Sweep(ctx context.Context) error {
	for {
		n, err := sweepScript.Run(ctx, r.rdb, r.keys("", ""), r.o.Prefix, sweepBatch).Int()
		if err != nil {
			return unavailable(ctx, "sweep pending dialogues", err)
		}
		// A batch with a taken dialogue in it settled fewer than it read:
		// stop there rather than read the same taken dialogues again.
		if n < sweepBatch {
			return nil
		}
	}
}

func (r *RedisPending) Counts(ctx context.Context) (model.PendingCounts, error) {
	pipe := r.rdb.Pipeline()
	dialogues := pipe.ZCard(ctx, r.key("pending"))
	messages := pipe.Get(ctx, r.key("total"))
	size := pipe.Get(ctx, r.key("bytes"))
	expired := pipe.Get(ctx, r.key("expired"))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return model.PendingCounts{}, unavailable(ctx, "read pending counts", err)
	}
	m, _ := messages.Int64()
	b, _ := size.Int64()
	e, _ := expired.Int64()
	return model.PendingCounts{Dialogues: dialogues.Val(), Messages: m, Bytes: b, Expired: e}, nil
}
