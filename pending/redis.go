package pending

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/data-api/data-api/internal/group"
	"github.com/data-api/data-api/model"
)

// RedisOptions configures the Redis store.
type RedisOptions struct {
	Limits
	// URL names a plain server: redis://[[user]:password@]host:port/db, or
	// rediss:// for TLS. Unused with Sentinel.
	URL      string
	Sentinel Sentinel
	Prefix   string // of every key, so that several deployments can share a server
	// TakeTimeout is how long a dialogue taken for a decision stays taken
	// when its taker never ends the take (the process died mid-decision);
	// after that any instance may take it again.
	TakeTimeout time.Duration
}

// Sentinel names a primary that Redis Sentinel watches: the store asks the
// sentinels where the primary is, and follows it when they fail it over.
type Sentinel struct {
	Master   string   // the name the sentinels know the primary by; empty: no Sentinel
	Addrs    []string // the sentinels, host:port
	Password string   // the sentinels' own password, if any
	// RedisPassword and DB are the primary's: its password (requirepass),
	// if any, and the database number.
	RedisPassword string
	DB            int
}

// Redis is the Store shared by every instance of the service, so that any
// instance serves any dialogue. Each operation is one Lua script, atomic
// across instances; messages added at the same moment share one (see
// adder), each added as a script of its own would add it. The idle TTL is
// key expiry, refreshed by every message; times are the Redis server's.
// Scripts of concurrent requests share a few connections and are pipelined
// (rueidis).
//
// Redis replicates asynchronously, so a failover (Sentinel's) may lose what
// the old primary acknowledged last, from any dialogue. A dialogue records
// the primary's replication history it started in, and one that lived
// through a failover is dropped when taken for its decision: its consent
// answers 404, never stores it in part.
//
// Keys, below the prefix: d:{id} a hash (customer, deadline, take token and
// its deadline, epoch, replication history), m:{id} the list of messages,
// c:{customer} the set of the customer's dialogues, and pending (a sorted
// set of dialogue ids by a time no later than when they may expire), counts
// (messages per dialogue), total, sizes (bytes per dialogue), bytes,
// expired, lost and epoch for the caps and gauges. The scripts name keys
// they compute, so Redis Cluster is not supported.
type Redis struct {
	c    rueidis.Client
	o    RedisOptions
	keys []string // the keys every script gets
	// adds gathers the messages added at the same moment into one script
	// (see package group), at most maxAddBatch: a script costs Redis a
	// call, its arguments and a reply, and the service a command and a
	// reply, whatever the messages in it. Each message is still added as a
	// script alone would add it, in arrival order.
	adds *group.Group[*addReq]
}

// sentinelRefresh is how often the store asks the sentinels where the
// primary is, beside following their failover announcements, so that one
// missed announcement cannot bind it to a demoted primary for long.
const sentinelRefresh = 2 * time.Second

// OpenRedis connects to Redis, through Sentinel when o.Sentinel.Master is
// set, and checks that it answers.
func OpenRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	err := o.Limits.check()
	if o.TakeTimeout <= 0 {
		err = errors.Join(err, fmt.Errorf("TakeTimeout must be positive, got %v", o.TakeTimeout))
	}
	if err != nil {
		return nil, err
	}
	opt, err := clientOption(o)
	if err != nil {
		return nil, err
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, unavailable(ctx, "connect to redis", err)
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, unavailable(ctx, "connect to redis", err)
	}
	k := []string{"pending", "counts", "total", "expired", "epoch", "sizes", "bytes", "lost"}
	for i := range k {
		k[i] = o.Prefix + k[i]
	}
	return &Redis{c: c, o: o, keys: k, adds: group.New[*addReq](maxAddBatch, 0)}, nil
}

// clientOption turns o into rueidis's options: a plain server from the URL,
// or the sentinels.
func clientOption(o RedisOptions) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	if s := o.Sentinel; s.Master != "" {
		if len(s.Addrs) == 0 {
			return opt, errors.New("redis sentinel: no sentinel address")
		}
		opt = rueidis.ClientOption{
			InitAddress: s.Addrs,
			Password:    s.RedisPassword,
			SelectDB:    s.DB,
			Sentinel: rueidis.SentinelOption{
				MasterSet:               s.Master,
				Password:                s.Password,
				TopologyRefreshInterval: sentinelRefresh,
			},
		}
	} else {
		var err error
		if opt, err = rueidis.ParseURL(o.URL); err != nil {
			return opt, fmt.Errorf("redis url: %w", err)
		}
		if opt.TLSConfig != nil {
			opt.TLSConfig.MinVersion = tls.VersionTLS12
		}
	}
	// No client-side cache (the store reads nothing twice), and a command
	// that cannot be written within this time fails rather than waits for
	// TCP keep-alives to give up.
	opt.DisableCache = true
	opt.ConnWriteTimeout = 3 * time.Second
	return opt, nil
}

// Close closes the connections.
func (r *Redis) Close() error {
	r.c.Close()
	return nil
}

// unavailable wraps a Redis error as model.ErrUnavailable for op, keeping
// the context's error detectable when ctx has ended.
func unavailable(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	return fmt.Errorf("%s: %w: %w", op, model.ErrUnavailable, err)
}

// newScript returns a script of the prelude and body, run by its SHA-1 and
// sent whole when the server does not know it yet (a new server, or a
// primary that failed over). The body runs as a function, after which the
// script writes the totals it changed, even when the body failed part-way:
// Redis keeps what a script wrote before an error, and the totals must
// match it.
func newScript(body string) *rueidis.Lua {
	return rueidis.NewLuaScript(prelude + "local function main()\n" + body + "\nend\n" +
		"local ok, result = pcall(main)\nflush()\nif not ok then error(result, 0) end\nreturn result\n")
}

// run runs s with the keys every script gets and args, the first of which
// is the prefix.
func (r *Redis) run(ctx context.Context, s *rueidis.Lua, args ...string) rueidis.RedisResult {
	return s.Exec(ctx, r.c, r.keys, append([]string{r.o.Prefix}, args...))
}

// What a script answers when it has no data to return.
const (
	resBusy      = -1 // the dialogue is taken: wait and ask again
	resConflict  = -2 // the dialogue belongs to another customer
	resLimit     = -3 // the dialogue holds the most messages
	resNotLive   = -4 // no live dialogue, and starting one was not asked for
	resFull      = -5 // the most dialogues are pending
	resFullBytes = -6 // the most bytes are pending
	resReclaim   = -7 // expired dialogues were reclaimed, more remain: ask again
)

// reclaimBatch bounds the expired dialogues one script reclaims, so that
// Redis never stalls other clients for long.
const reclaimBatch = 500

// prelude is shared by every script. live() settles a dialogue's state at
// the server's time: expired, abandoned by a taker that died, taken, or
// pending.
var prelude = fmt.Sprintf(`
local BUSY, CONFLICT, LIMIT, NOT_LIVE, FULL, FULL_BYTES, RECLAIM, RECLAIM_BATCH = %d, %d, %d, %d, %d, %d, %d, %d
local PENDING, COUNTS, TOTAL, EXPIRED, EPOCH, SIZES, BYTES, LOST = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local PREFIX = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function dkey(id) return PREFIX .. 'd:' .. id end
local function mkey(id) return PREFIX .. 'm:' .. id end
local function ckey(customer) return PREFIX .. 'c:' .. customer end

-- TOTAL and BYTES change by what a script adds and drops: the changes are
-- kept here and written once, when the script ends (see newScript), which
-- saves three commands a message.
local addedMessages, addedBytes, storedBytes = 0, 0, nil
local function pendingBytes()
  if not storedBytes then storedBytes = tonumber(redis.call('GET', BYTES) or '0') end
  return storedBytes + addedBytes
end
local function account(messages, size)
  addedMessages, addedBytes = addedMessages + messages, addedBytes + size
end
local function flush()
  if addedMessages ~= 0 then redis.call('INCRBY', TOTAL, addedMessages) end
  if addedBytes ~= 0 then redis.call('INCRBY', BYTES, addedBytes) end
end

local function forget(id)
  local n = tonumber(redis.call('HGET', COUNTS, id) or '0')
  local size = tonumber(redis.call('HGET', SIZES, id) or '0')
  redis.call('HDEL', COUNTS, id)
  redis.call('HDEL', SIZES, id)
  redis.call('ZREM', PENDING, id)
  account(-n, -size)
  return n
end

local function drop(id)
  redis.call('DEL', dkey(id), mkey(id))
  return forget(id)
end

local function expire(id)
  drop(id)
  redis.call('INCR', EXPIRED)
end

-- live returns 'none', 'busy' or 'live', the dialogue's customer, the time
-- it may expire (its deadline, or when its take may end if later), and its
-- epoch.
local function live(id)
  local D = dkey(id)
  local h = redis.call('HMGET', D, 'c', 'dl', 'busy', 'bu', 'ep')
  if not h[1] then
    if redis.call('HEXISTS', COUNTS, id) == 1 then expire(id) end
    return 'none'
  end
  local dl = tonumber(h[2])
  if h[3] then
    local bu = tonumber(h[4])
    if bu > now then return 'busy', h[1], math.max(bu, dl), h[5] end
    redis.call('HDEL', D, 'busy', 'bu')
  end
  if dl <= now then
    expire(id)
    return 'none'
  end
  if h[3] then
    redis.call('PEXPIREAT', D, dl)
    redis.call('PEXPIREAT', mkey(id), dl)
    redis.call('ZADD', PENDING, dl, id)
  end
  return 'live', h[1], dl, h[5]
end

-- history names the primary's replication history (its replication id). A
-- failover starts a new one: the promoted replica may lack what the old
-- primary acknowledged last, and takes a new id.
local replid
local function history()
  if not replid then replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%%w+)') end
  return replid
end

-- reclaim drops up to RECLAIM_BATCH expired dialogues and tells whether
-- more remain. Every dialogue is scored by a time no later than when it may
-- expire (a message to a live dialogue leaves its score behind, which saves
-- a command a message), so those scored in the past have expired, but for a
-- score left behind, which is set right.
local function reclaim()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', PENDING, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)) do
    local state, _, score = live(id)
    if state ~= 'none' then redis.call('ZADD', PENDING, score, id) end
  end
  return redis.call('ZCOUNT', PENDING, '-inf', now) > 0
end
`, resBusy, resConflict, resLimit, resNotLive, resFull, resFullBytes, resReclaim, reclaimBatch)

// ARGV: prefix, ttl ms, max dialogues, max messages, max bytes, then five
// for each message, in order: id, customer, start ("1" or "0"), encoded
// message, its size. It adds each message in turn, as a script of its own
// would, and answers an array of their outcomes.
var addScript = newScript(`
local TTL, MAX_DIALOGUES, MAX_MESSAGES, MAX_BYTES = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Every message of the script gets the same deadline. Numbers go to Redis
-- as strings made once per script, or as received: Lua turns a number into
-- an argument with printf's %.14g, which took 7% of Redis's CPU here when
-- done for several arguments of every message.
local DL = tostring(now + tonumber(TTL))
local function add(id, customer, start, msg, sizeArg)
  local size = tonumber(sizeArg)
  local state, owner, _, ep = live(id)
  if state == 'busy' then return BUSY end
  local n = 1
  if state == 'live' then
    if owner ~= customer then return CONFLICT end
    -- Counted before the caps are checked, rather than read first, and
    -- taken back if the message is refused.
    n = redis.call('HINCRBY', COUNTS, id, '1')
  end
  local function refusal()
    if state == 'live' then
      if n > MAX_MESSAGES then return LIMIT end
    elseif redis.call('ZCARD', PENDING) >= MAX_DIALOGUES then
      return FULL
    end
    if pendingBytes() + size > MAX_BYTES then return FULL_BYTES end
    if state ~= 'live' and not start then return NOT_LIVE end
    return nil
  end
  local r = refusal()
  if r == FULL or r == FULL_BYTES then
    if reclaim() then r = RECLAIM else r = refusal() end
  end
  if r then
    if state == 'live' then redis.call('HINCRBY', COUNTS, id, '-1') end
    return r
  end
  local D, M = dkey(id), mkey(id)
  if state == 'live' then
    redis.call('HSET', D, 'dl', DL)
  else
    ep = tostring(redis.call('INCR', EPOCH))
    redis.call('HSET', D, 'c', customer, 'ep', ep, 'h', history(), 'dl', DL)
    redis.call('SADD', ckey(customer), id)
    redis.call('HSET', COUNTS, id, '1')
  end
  redis.call('HINCRBY', SIZES, id, sizeArg)
  account(1, size)
  redis.call('RPUSH', M, ep .. ':' .. n .. '|' .. msg)
  redis.call('PEXPIREAT', D, DL)
  redis.call('PEXPIREAT', M, DL)
  if state ~= 'live' then redis.call('ZADD', PENDING, DL, id) end
  redis.call('PEXPIRE', ckey(customer), TTL)
  return n
end
local out = {}
for i = 6, #ARGV, 5 do
  -- A message that fails fails alone, as in a script of its own: its
  -- outcome is the error, and the others go on.
  local ok, r = pcall(add, ARGV[i], ARGV[i + 1], ARGV[i + 2] == '1', ARGV[i + 3], ARGV[i + 4])
  if not ok and type(r) ~= 'table' then r = {err = tostring(r)} end
  out[#out + 1] = r
end
return out
`)

// ARGV: prefix, id, token, take timeout ms.
var takeScript = newScript(`
local id = ARGV[2]
local state, owner = live(id)
if state == 'busy' then return {BUSY} end
if state == 'none' then return {0} end
local D, M = dkey(id), mkey(id)
-- A dialogue started in an earlier history lived through a failover, which
-- may have lost any of its messages: it is dropped, never stored in part.
-- (One started before the field existed is not known to have.)
local h = redis.call('HGET', D, 'h')
if h and h ~= history() then
  drop(id)
  redis.call('SREM', ckey(owner), id)
  redis.call('INCR', LOST)
  return {0}
end
local bu = now + tonumber(ARGV[4])
redis.call('HSET', D, 'busy', ARGV[3], 'bu', bu)
local keep = math.max(bu, tonumber(redis.call('HGET', D, 'dl')))
redis.call('PEXPIREAT', D, keep)
redis.call('PEXPIREAT', M, keep)
redis.call('ZADD', PENDING, keep, id)
return {1, owner, redis.call('LRANGE', M, 0, -1)}
`)

// ARGV: prefix, id, token, customer. A take that timed out may have been
// ended by another instance since: the script then leaves the dialogue
// alone.
var dropScript = newScript(`
local id = ARGV[2]
if redis.call('HGET', dkey(id), 'busy') ~= ARGV[3] then return 0 end
drop(id)
redis.call('SREM', ckey(ARGV[4]), id)
return 1
`)

// ARGV: prefix, id, token.
var restoreScript = newScript(`
local id = ARGV[2]
local D = dkey(id)
if redis.call('HGET', D, 'busy') ~= ARGV[3] then return 0 end
redis.call('HDEL', D, 'busy', 'bu')
local dl = redis.call('HGET', D, 'dl')
if tonumber(dl) <= now then
  expire(id)
else
  redis.call('PEXPIREAT', D, dl)
  redis.call('PEXPIREAT', mkey(id), dl)
  redis.call('ZADD', PENDING, dl, id)
end
return 1
`)

// ARGV: prefix, customer. Returns dialogues dropped, messages dropped,
// dialogues still taken.
var dropCustomerScript = newScript(`
local C = ckey(ARGV[2])
local dropped, messages, busy = 0, 0, 0
for _, id in ipairs(redis.call('SMEMBERS', C)) do
  local state, owner = live(id)
  if state == 'busy' then
    busy = busy + 1
  else
    if state == 'live' and owner == ARGV[2] then
      messages = messages + drop(id)
      dropped = dropped + 1
    end
    redis.call('SREM', C, id)
  end
end
return {dropped, messages, busy}
`)

// ARGV: prefix. Returns 1 when more expired dialogues remain.
var sweepScript = newScript(`
if reclaim() then return 1 end
return 0
`)

// encodeMessage packs what a pending message needs: its text goes last, so
// that it may hold any character.
func encodeMessage(m model.Message) string {
	return strconv.FormatInt(m.CreatedAt.UnixNano(), 10) + "|" + m.Language + "|" + m.Text
}

// decodeMessage reverses encodeMessage; the script put the message's key
// (epoch:number) in front.
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
	t := time.NewTimer(time.Millisecond << min(attempt, 5))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Redis) Append(ctx context.Context, m model.Message) (int, error) {
	return r.add(ctx, m, "0")
}

func (r *Redis) Start(ctx context.Context, m model.Message) (int, error) {
	return r.add(ctx, m, "1")
}

func (r *Redis) add(ctx context.Context, m model.Message, start string) (int, error) {
	l := r.o.Limits
	for attempt := 0; ; attempt++ {
		q := &addReq{args: [5]string{m.DialogueID, m.CustomerID, start, encodeMessage(m), itoa(size(m))}}
		r.adds.Do(q, func(batch []*addReq) { r.runAdds(context.WithoutCancel(ctx), batch) })
		res, err := q.res, q.err
		if err != nil {
			return 0, unavailable(ctx, "add pending message", err)
		}
		switch res {
		case resBusy:
			if err := waitTaken(ctx, attempt); err != nil {
				return 0, err
			}
			continue
		case resReclaim:
			continue
		case resConflict:
			return 0, model.ErrOtherCustomer
		case resLimit:
			return 0, tooManyMessages(l.MaxMessages)
		case resNotLive:
			return 0, errNotLive
		case resFull:
			return 0, tooManyDialogues(l.MaxDialogues)
		case resFullBytes:
			return 0, tooManyBytes(l.MaxBytes)
		}
		return int(res), nil
	}
}

// maxAddBatch bounds the messages one script adds (see Redis.adds).
const maxAddBatch = 64

// addTimeout bounds one script that adds messages. It runs detached from
// any one caller's context: a client that hangs up must not fail the
// messages of the others in the same script.
const addTimeout = 10 * time.Second

// addReq is a message to add: the script's five arguments for it, and its
// outcome.
type addReq struct {
	args [5]string // id, customer, start, encoded message, size
	res  int64
	err  error
}

// runAdds runs one script for the messages of batch and sets each one's
// outcome.
func (r *Redis) runAdds(ctx context.Context, batch []*addReq) {
	ctx, cancel := context.WithTimeout(ctx, addTimeout)
	defer cancel()
	l := r.o.Limits
	args := make([]string, 0, 4+5*len(batch))
	args = append(args, itoa(l.TTL.Milliseconds()), itoa(l.MaxDialogues), itoa(l.MaxMessages), itoa(l.MaxBytes))
	for _, b := range batch {
		args = append(args, b.args[:]...)
	}
	res, err := r.run(ctx, addScript, args...).ToArray()
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("the add script answered %d outcomes for %d messages", len(res), len(batch))
	}
	for i, b := range batch {
		if b.err = err; err == nil {
			b.res, b.err = res[i].AsInt64()
		}
	}
}

func (r *Redis) Take(ctx context.Context, dialogueID string) (*Taken, error) {
	token := rand.Text()
	for attempt := 0; ; attempt++ {
		res, err := r.run(ctx, takeScript, dialogueID, token, itoa(r.o.TakeTimeout.Milliseconds())).ToArray()
		if err != nil {
			return nil, unavailable(ctx, "take pending dialogue", err)
		}
		state, err := res[0].AsInt64()
		if err != nil {
			return nil, unavailable(ctx, "take pending dialogue", err)
		}
		switch state {
		case resBusy:
			if err := waitTaken(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		case 0:
			return nil, nil
		}
		customer, err := res[1].ToString()
		if err != nil {
			return nil, unavailable(ctx, "take pending dialogue", err)
		}
		raw, err := res[2].AsStrSlice()
		if err != nil {
			return nil, unavailable(ctx, "take pending dialogue", err)
		}
		t := &Taken{DialogueID: dialogueID, CustomerID: customer, token: token, Messages: make([]model.Message, len(raw))}
		for i, v := range raw {
			if t.Messages[i], err = decodeMessage(v, dialogueID, customer); err != nil {
				return nil, err
			}
		}
		return t, nil
	}
}

// Drop leaves the dialogue alone when its take timed out and another
// instance took it since; a consent retried after that stores nothing twice,
// since every message has a unique key.
func (r *Redis) Drop(ctx context.Context, t *Taken) error {
	if err := r.run(ctx, dropScript, t.DialogueID, t.token, t.CustomerID).Error(); err != nil {
		return unavailable(ctx, "drop decided dialogue", err)
	}
	return nil
}

func (r *Redis) Restore(ctx context.Context, t *Taken) error {
	if err := r.run(ctx, restoreScript, t.DialogueID, t.token).Error(); err != nil {
		return unavailable(ctx, "restore pending dialogue", err)
	}
	return nil
}

func (r *Redis) DropCustomer(ctx context.Context, customerID string) (dialogues, messages int, err error) {
	for attempt := 0; ; attempt++ {
		res, err := r.run(ctx, dropCustomerScript, customerID).AsIntSlice()
		if err == nil && len(res) != 3 {
			err = fmt.Errorf("unexpected reply of %d integers", len(res))
		}
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

func (r *Redis) Sweep(ctx context.Context) error {
	for {
		more, err := r.run(ctx, sweepScript).AsInt64()
		if err != nil {
			return unavailable(ctx, "sweep pending dialogues", err)
		}
		if more == 0 {
			return nil
		}
	}
}

func (r *Redis) Counts(ctx context.Context) (Counts, error) {
	b := r.c.B()
	res := r.c.DoMulti(ctx,
		b.Zcard().Key(r.o.Prefix+"pending").Build(),
		b.Get().Key(r.o.Prefix+"total").Build(),
		b.Get().Key(r.o.Prefix+"bytes").Build(),
		b.Get().Key(r.o.Prefix+"expired").Build(),
		b.Get().Key(r.o.Prefix+"lost").Build())
	var v [5]int64
	for i, x := range res {
		n, err := x.AsInt64()
		if err != nil && !rueidis.IsRedisNil(err) {
			return Counts{}, unavailable(ctx, "read pending counts", err)
		}
		v[i] = n
	}
	return Counts{Dialogues: v[0], Messages: v[1], Bytes: v[2], Expired: v[3], Lost: v[4]}, nil
}

func itoa[T int | int64](n T) string { return strconv.FormatInt(int64(n), 10) }
