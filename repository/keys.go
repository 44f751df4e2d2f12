package repository

import (
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/keyring"
)

// Every stored text is sealed (AES-256-GCM) under a key of its own dialogue,
// created at the dialogue's first consent and kept in dialogue_keys only
// wrapped by a master key of the ring, which is configured and never in the
// database. Deleting a dialogue's key row destroys every copy of its texts
// that is not also a copy of the key row and of a master key that wrapped
// it: the write-ahead log, replicas and backups keep ciphertext that no key
// opens once those master keys are gone (see RotateKeys).

// MasterKey is one master key of the ring: its KeySize bytes, or the path of
// a file that holds them in base64.
type MasterKey struct {
	ID   string
	Key  []byte
	File string
}

// GeneratedKeyID is the id of the master key that Open generates into a key
// file beside a SQLite database when no master key is given.
const GeneratedKeyID = "generated"

// keyCacheSize is the most unwrapped dialogue keys held in memory. An entry
// costs about 1 KiB (AES round keys and GCM tables), so 4 MiB at most; a
// dialogue read again after its key left the cache costs one unwrap (~2 µs).
const keyCacheSize = 4096

// rotateBatch is the most dialogue keys RotateKeys rewraps per transaction.
const rotateBatch = 1000

// keyAD is the additional data a dialogue key is wrapped with: the key
// unwraps only for the dialogue and customer of its row.
func keyAD(dialogueID, customerID string) []byte {
	b := append(make([]byte, 0, 64), "data-api dialogue key v1"...)
	b = appendField(b, dialogueID)
	return appendField(b, customerID)
}

// messageAD appends to dst the additional data a text is sealed with: the
// identity of its row (dialogue, customer, language, creation time), so that
// a sealed text moved to another row does not open.
func messageAD(dst []byte, dialogueID, customerID, language string, createdAt int64) []byte {
	dst = append(dst, "data-api message v1"...)
	dst = appendField(dst, dialogueID)
	dst = appendField(dst, customerID)
	dst = appendField(dst, language)
	return binary.BigEndian.AppendUint64(dst, uint64(createdAt))
}

// appendField appends s with its length first, so that no two sequences of
// fields make the same bytes.
func appendField(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// keyCache holds unwrapped dialogue keys, the least recently used evicted
// past keyCacheSize. Reads take a key by its dialogue alone: a stale one (a
// key deleted and replaced through another process) fails GCM's check on
// the first text it is tried on, and the reader reads the key row again.
// Writes never seal under a cached key but for the very row it was
// unwrapped from (getRow): a key replaced meanwhile must not seal texts
// that its row cannot open.
type keyCache struct {
	mu      sync.Mutex
	order   list.List // of *cachedKey, the most recently used first
	entries map[string]*list.Element
}

type cachedKey struct {
	dialogueID, customerID string
	wrapped                []byte
	key                    *keyring.Key
}

func newKeyCache() *keyCache {
	return &keyCache{entries: make(map[string]*list.Element)}
}

// get returns the cached key of dialogueID, or nil.
func (c *keyCache) get(dialogueID string) *keyring.Key {
	if ck := c.entry(dialogueID); ck != nil {
		return ck.key
	}
	return nil
}

// getRow returns the key of dialogueID unwrapped from wrapped, bound to
// customerID, or nil.
func (c *keyCache) getRow(dialogueID, customerID string, wrapped []byte) *keyring.Key {
	if ck := c.entry(dialogueID); ck != nil && ck.customerID == customerID && bytes.Equal(ck.wrapped, wrapped) {
		return ck.key
	}
	return nil
}

func (c *keyCache) entry(dialogueID string) *cachedKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[dialogueID]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cachedKey)
}

func (c *keyCache) put(ck *cachedKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[ck.dialogueID]; ok {
		e.Value = ck
		c.order.MoveToFront(e)
		return
	}
	c.entries[ck.dialogueID] = c.order.PushFront(ck)
	if c.order.Len() > keyCacheSize {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cachedKey).dialogueID)
	}
}

// drop evicts the keys of dialogueIDs.
func (c *keyCache) drop(dialogueIDs ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range dialogueIDs {
		if e, ok := c.entries[id]; ok {
			c.order.Remove(e)
			delete(c.entries, id)
		}
	}
}

// dropCustomer evicts the keys of every dialogue of customerID.
func (c *keyCache) dropCustomer(customerID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		if ck := e.Value.(*cachedKey); ck.customerID == customerID {
			c.order.Remove(e)
			delete(c.entries, ck.dialogueID)
		}
		e = next
	}
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// unwrap returns the key a dialogue key row holds: from the cache, or
// unwrapped by the ring and then cached. wrapped may be reused by the caller
// once unwrap returns.
func (db *DB) unwrap(dialogueID, customerID string, wrapped []byte) (*keyring.Key, error) {
	if k := db.keys.getRow(dialogueID, customerID, wrapped); k != nil {
		return k, nil
	}
	k, err := db.ring.Unwrap(wrapped, keyAD(dialogueID, customerID))
	if err != nil {
		return nil, err
	}
	db.keys.put(&cachedKey{dialogueID: dialogueID, customerID: customerID, wrapped: slices.Clone(wrapped), key: k})
	return k, nil
}

// newKeys returns a new key, and its row, for each dialogue of owners
// (dialogue id → customer id).
func (db *DB) newKeys(owners map[string]string) (map[string]*keyring.Key, []dialogueKeyRow, error) {
	keys := make(map[string]*keyring.Key, len(owners))
	rows := make([]dialogueKeyRow, 0, len(owners))
	for d, c := range owners {
		k, wrapped, err := db.ring.NewKey(keyAD(d, c))
		if err != nil {
			return nil, nil, fmt.Errorf("new dialogue key: %w", err)
		}
		keys[d] = k
		rows = append(rows, dialogueKeyRow{DialogueID: d, CustomerID: c, MasterKey: db.ring.Active(), Wrapped: wrapped})
	}
	return keys, rows, nil
}

// storeKeys inserts the rows newKeys made, in tx, except for dialogues that
// have a key already: a dialogue consented again, or whose messages an
// earlier batch of the plaintext migration sealed. For those it replaces the
// new key in keys by the stored one and returns their ids; the texts sealed
// under the new key must be sealed again. A stored key is never replaced:
// texts of the dialogue may be sealed under it. Nor is a key deleted since
// ever put back, even from the cache: its deletion may be an erasure.
func (db *DB) storeKeys(ctx context.Context, tx *gorm.DB, keys map[string]*keyring.Key, rows []dialogueKeyRow) (resealed []string, err error) {
	inserted, err := db.inserts.insert(ctx, tx, insertKeys, len(rows), func(i int, dst []any) []any {
		r := &rows[i]
		return append(dst, r.DialogueID, r.CustomerID, r.MasterKey, r.Wrapped)
	})
	if err != nil {
		return nil, err
	}
	if int(inserted) == len(rows) {
		return nil, nil
	}
	fresh := make(map[string][]byte, len(rows))
	for _, r := range rows {
		fresh[r.DialogueID] = r.Wrapped
	}
	for chunk := range slices.Chunk(slices.Collect(maps.Keys(fresh)), insertBatch) {
		var stored []dialogueKeyRow
		if err := tx.Raw("SELECT dialogue_id, customer_id, master_key, wrapped FROM dialogue_keys WHERE dialogue_id IN ?", chunk).
			Scan(&stored).Error; err != nil {
			return nil, err
		}
		for _, s := range stored {
			if bytes.Equal(s.Wrapped, fresh[s.DialogueID]) {
				continue
			}
			k, err := db.unwrap(s.DialogueID, s.CustomerID, s.Wrapped)
			if err != nil {
				return nil, err
			}
			keys[s.DialogueID] = k
			resealed = append(resealed, s.DialogueID)
		}
	}
	return resealed, nil
}

// cacheNewKeys caches the keys of rows once they are committed, but for
// those of dialogues that had a key already.
func (db *DB) cacheNewKeys(keys map[string]*keyring.Key, rows []dialogueKeyRow, resealed []string) {
	for _, r := range rows {
		if !slices.Contains(resealed, r.DialogueID) {
			db.keys.put(&cachedKey{dialogueID: r.DialogueID, customerID: r.CustomerID, wrapped: r.Wrapped, key: keys[r.DialogueID]})
		}
	}
}

// openRing builds the key ring o names. On SQLite without master keys it
// uses the key in o.KeyFile (the DSN and ".key" when empty), generating it
// when the database holds no dialogue key that it wrapped; with no writer,
// it never generates one.
func openRing(ctx context.Context, writer *gorm.DB, o Options, log *slog.Logger) (*keyring.Ring, error) {
	keys := make(map[string][]byte, len(o.MasterKeys))
	for _, k := range o.MasterKeys {
		if _, dup := keys[k.ID]; dup {
			return nil, fmt.Errorf("master key %q is given twice", k.ID)
		}
		key := k.Key
		if k.File != "" {
			var err error
			if key, err = keyring.ReadFile(k.File); err != nil {
				return nil, fmt.Errorf("master key %q: %w", k.ID, err)
			}
		}
		keys[k.ID] = key
	}
	active := o.ActiveKey
	if len(keys) == 0 {
		if o.Driver != "sqlite" {
			return nil, errors.New("no master key: PostgreSQL needs at least one in the key ring (encryption.keys)")
		}
		path := o.KeyFile
		if path == "" {
			path = o.DSN + ".key"
		}
		var (
			key []byte
			err error
		)
		if writer == nil {
			if key, err = keyring.ReadFile(path); errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("the key file %s is missing: the stored texts cannot be read without it; put it back from where it is backed up, apart from the database", path)
			}
		} else {
			key, err = generatedKey(ctx, writer, path, log)
		}
		if err != nil {
			return nil, err
		}
		keys[GeneratedKeyID], active = key, GeneratedKeyID
	}
	return keyring.New(keys, active)
}

// generatedKey returns the key in the file at path, or a new key written
// there when the file does not exist and no dialogue key of the database
// needs it.
func generatedKey(ctx context.Context, writer *gorm.DB, path string, log *slog.Logger) ([]byte, error) {
	key, err := keyring.ReadFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	var n int
	if err := writer.WithContext(ctx).Raw("SELECT COUNT(*) FROM (SELECT 1 FROM dialogue_keys WHERE master_key = ? LIMIT 1) AS k", GeneratedKeyID).
		Scan(&n).Error; err != nil {
		return nil, err
	}
	if n > 0 {
		return nil, fmt.Errorf("the database's dialogue keys are wrapped by the master key of %s, which is missing: restore it from a backup, or no stored message can be read", path)
	}
	if key, err = keyring.CreateFile(path); err != nil {
		return nil, err
	}
	log.WarnContext(ctx, "no master key configured (encryption.keys): generated one in a key file beside the database; keep it safe and back it up apart from the database, without it no stored message can be read", "key_file", path)
	return key, nil
}

// checkMasterKeys makes sure that the ring unwraps every dialogue key of the
// database: each master key that wraps one is in the ring and unwraps a key
// it wrapped. It logs the master keys other than the active one still in
// use, which a rotation would retire.
func (db *DB) checkMasterKeys(ctx context.Context) error {
	ids, err := db.masterKeysInUse(ctx)
	if err != nil {
		return fmt.Errorf("list master keys in use: %w", err)
	}
	var missing, wrong, old []string
	for _, id := range ids {
		if !db.ring.Holds(id) {
			missing = append(missing, fmt.Sprintf("%q", id))
			continue
		}
		var r dialogueKeyRow
		if err := db.writer.WithContext(ctx).Raw("SELECT dialogue_id, customer_id, master_key, wrapped FROM dialogue_keys WHERE master_key = ? LIMIT 1", id).
			Scan(&r).Error; err != nil {
			return err
		}
		if _, err := db.ring.Unwrap(r.Wrapped, keyAD(r.DialogueID, r.CustomerID)); err != nil {
			wrong = append(wrong, fmt.Sprintf("%q", id))
		}
		if id != db.ring.Active() {
			old = append(old, id)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("the database holds dialogue keys wrapped by master key %s, which the key ring (encryption.keys) does not hold: add it, or no message of those dialogues can be read",
			strings.Join(missing, ", "))
	case len(wrong) > 0:
		return fmt.Errorf("master key %s of the key ring does not unwrap the dialogue keys it wrapped: the key given under that id is not the one that wrapped them",
			strings.Join(wrong, ", "))
	case len(old) > 0:
		db.log.InfoContext(ctx, "dialogue keys wrapped by master keys other than the active one remain; data-api rotate-key rewraps them", "master_keys", old, "active", db.ring.Active())
	}
	return nil
}

// masterKeysInUse returns the ids of the master keys that wrap a dialogue
// key, in order.
func (db *DB) masterKeysInUse(ctx context.Context) ([]string, error) {
	var ids []string
	err := db.writer.WithContext(ctx).Raw("SELECT DISTINCT master_key FROM dialogue_keys ORDER BY master_key").Scan(&ids).Error
	return ids, err
}

// RotateKeys rewraps every dialogue key that a master key other than the
// active one wraps under the active one, rotateBatch keys per transaction,
// logging its progress, and returns how many it rewrapped. It can stop at
// any point and run again: each batch commits whole, and the next run takes
// up what is left. Running services may go on meanwhile; those whose active
// key is another keep wrapping new keys under it, so switch them first.
//
// Once it has returned, the master keys other than the active one wrap no
// key of the live database, and destroying them makes every dialogue key
// deleted before the rotation unreadable in every copy that holds it.
func (db *DB) RotateKeys(ctx context.Context) (int, error) {
	active := db.ring.Active()
	var left int
	if err := db.writer.WithContext(ctx).Raw("SELECT COUNT(*) FROM dialogue_keys WHERE master_key <> ?", active).Scan(&left).Error; err != nil {
		return 0, unavailable(ctx, "count dialogue keys to rewrap", err)
	}
	db.log.InfoContext(ctx, "rotating: rewrapping dialogue keys under the active master key", "master_key", active, "dialogue_keys", left)
	var (
		done     int
		after    string
		lastLog  = time.Now()
		progress = func(msg string) {
			db.log.InfoContext(ctx, msg, "rewrapped", done, "left", max(left-done, 0))
		}
	)
	for {
		var n int
		err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var rows []dialogueKeyRow
			if err := tx.Raw("SELECT dialogue_id, customer_id, master_key, wrapped FROM dialogue_keys"+
				" WHERE dialogue_id > ? AND master_key <> ? ORDER BY dialogue_id LIMIT ?", after, active, rotateBatch).
				Scan(&rows).Error; err != nil {
				return err
			}
			for _, r := range rows {
				wrapped, err := db.ring.Rewrap(r.Wrapped, keyAD(r.DialogueID, r.CustomerID))
				if err != nil {
					return err
				}
				// Only the row as read: one deleted or replaced meanwhile
				// stays as it is now.
				res := tx.Exec("UPDATE dialogue_keys SET master_key = ?, wrapped = ? WHERE dialogue_id = ? AND wrapped = ?",
					active, wrapped, r.DialogueID, r.Wrapped)
				if res.Error != nil {
					return res.Error
				}
				n += int(res.RowsAffected)
				after = r.DialogueID
			}
			if len(rows) < rotateBatch {
				after = ""
			}
			return nil
		})
		if err != nil {
			return done, unavailable(ctx, "rewrap dialogue keys", err)
		}
		done += n
		if after == "" {
			break
		}
		if time.Since(lastLog) >= progressEvery {
			progress("rotating")
			lastLog = time.Now()
		}
	}
	progress("rotated: every dialogue key is wrapped by the active master key")
	if err := db.scrub(context.WithoutCancel(ctx), db.writer); err != nil {
		return done, unavailable(ctx, "rotate keys: the keys are rewrapped but the database files are not yet scrubbed of the old wrappings", err)
	}
	return done, nil
}
