package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	master1 = bytes.Repeat([]byte{1}, KeySize)
	master2 = bytes.Repeat([]byte{2}, KeySize)
)

func newRing(t *testing.T, keys map[string][]byte, active string) *Ring {
	t.Helper()
	r, err := New(keys, active)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func TestSealOpen(t *testing.T) {
	r := newRing(t, map[string][]byte{"k1": master1}, "k1")
	k, _, err := r.NewKey([]byte("dialogue d1"))
	if err != nil {
		t.Fatal(err)
	}
	text, ad := []byte("héllo, wörld"), []byte("row 1")
	sealed, err := k.Seal(nil, text, ad)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(text)+Overhead {
		t.Errorf("sealed %d bytes into %d, want %d", len(text), len(sealed), len(text)+Overhead)
	}
	if bytes.Contains(sealed, text) {
		t.Error("the sealed text holds the text")
	}
	got, err := k.Open(nil, sealed, ad)
	if err != nil || !bytes.Equal(got, text) {
		t.Fatalf("Open: got %q, %v; want %q", got, err, text)
	}
	// The same text twice seals differently: random nonces.
	again, _ := k.Seal(nil, text, ad)
	if bytes.Equal(again, sealed) {
		t.Error("sealing the same text twice gave the same bytes")
	}
	// Seal appends.
	prefixed, _ := k.Seal([]byte("prefix"), text, ad)
	if got, err := k.Open(nil, prefixed[len("prefix"):], ad); err != nil || !bytes.Equal(got, text) {
		t.Errorf("Open of an appended seal: got %q, %v", got, err)
	}

	other, _, _ := r.NewKey([]byte("dialogue d1"))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"other additional data": func() ([]byte, error) { return k.Open(nil, sealed, []byte("row 2")) },
		"other key":             func() ([]byte, error) { return other.Open(nil, sealed, ad) },
		"altered byte":          func() ([]byte, error) { return k.Open(nil, flipped, ad) },
		"truncated":             func() ([]byte, error) { return k.Open(nil, sealed[:Overhead-1], ad) },
		"empty":                 func() ([]byte, error) { return k.Open(nil, nil, ad) },
	} {
		if got, err := open(); !errors.Is(err, ErrOpen) || got != nil {
			t.Errorf("%s: got %q, %v; want ErrOpen", name, got, err)
		}
	}
}

func TestWrapUnwrapRewrap(t *testing.T) {
	old := newRing(t, map[string][]byte{"k1": master1}, "k1")
	k, wrapped, err := old.NewKey([]byte("d1/c1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != 1+len("k1")+KeySize+Overhead {
		t.Errorf("wrapped key of %d bytes, want %d", len(wrapped), 1+len("k1")+KeySize+Overhead)
	}
	if m, err := MasterOf(wrapped); m != "k1" || err != nil {
		t.Errorf("MasterOf: got %q, %v; want k1", m, err)
	}
	sealed, _ := k.Seal(nil, []byte("text"), nil)

	both := newRing(t, map[string][]byte{"k1": master1, "k2": master2}, "k2")
	rewrapped, err := both.Rewrap(wrapped, []byte("d1/c1"))
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if m, _ := MasterOf(rewrapped); m != "k2" {
		t.Errorf("the rewrapped key names master key %q, want k2", m)
	}
	onlyNew := newRing(t, map[string][]byte{"k2": master2}, "k2")
	k2, err := onlyNew.Unwrap(rewrapped, []byte("d1/c1"))
	if err != nil {
		t.Fatalf("Unwrap of the rewrapped key: %v", err)
	}
	if got, err := k2.Open(nil, sealed, nil); err != nil || string(got) != "text" {
		t.Errorf("the rewrapped key opens %q, %v; want text", got, err)
	}

	// Without k1, the key as it was wrapped before is lost.
	if _, err := onlyNew.Unwrap(wrapped, []byte("d1/c1")); !errors.Is(err, ErrNotInRing) || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("Unwrap by a key not in the ring: got %v, want ErrNotInRing naming k1", err)
	}
	if _, err := onlyNew.Rewrap(wrapped, []byte("d1/c1")); !errors.Is(err, ErrNotInRing) {
		t.Errorf("Rewrap by a key not in the ring: got %v, want ErrNotInRing", err)
	}
	// Another key under the same id, another dialogue, or a header naming
	// another master key (even one with k1's bytes) does not unwrap it.
	impostor := newRing(t, map[string][]byte{"k1": master2}, "k1")
	if _, err := impostor.Unwrap(wrapped, []byte("d1/c1")); !errors.Is(err, ErrOpen) {
		t.Errorf("Unwrap by another key named k1: got %v, want ErrOpen", err)
	}
	if _, err := old.Unwrap(wrapped, []byte("d2/c1")); !errors.Is(err, ErrOpen) {
		t.Errorf("Unwrap for another dialogue: got %v, want ErrOpen", err)
	}
	renamed := bytes.Clone(wrapped)
	renamed[2] = '3' // "k1" → "k3"
	alias := newRing(t, map[string][]byte{"k3": master1}, "k3")
	if _, err := alias.Unwrap(renamed, []byte("d1/c1")); !errors.Is(err, ErrOpen) {
		t.Errorf("Unwrap of a key whose header was altered: got %v, want ErrOpen", err)
	}
	for _, bad := range [][]byte{nil, {}, {5, 'k'}} {
		if _, err := old.Unwrap(bad, nil); !errors.Is(err, ErrOpen) {
			t.Errorf("Unwrap(%q): got %v, want ErrOpen", bad, err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		keys   map[string][]byte
		active string
	}{
		"active not in the ring": {map[string][]byte{"k1": master1}, "k2"},
		"empty ring":             {nil, ""},
		"short key":              {map[string][]byte{"k1": master1[:16]}, "k1"},
		"empty id":               {map[string][]byte{"": master1}, ""},
		"id too long":            {map[string][]byte{strings.Repeat("k", 256): master1}, strings.Repeat("k", 256)},
	} {
		if _, err := New(tc.keys, tc.active); err == nil {
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
	r := newRing(t, map[string][]byte{"k1": master1, "k2": master2}, "k2")
	if r.Active() != "k2" || !r.Holds("k1") || r.Holds("k3") {
		t.Errorf("Active %q, Holds k1 %v, k3 %v; want k2, true, false", r.Active(), r.Holds("k1"), r.Holds("k3"))
	}
}

func TestNoncesNeverRepeat(t *testing.T) {
	seen := make(map[[nonceSize]byte]bool)
	for range 3 * len(nonces.buf) / nonceSize { // past several refills
		var n [nonceSize]byte
		if err := nonces.read(n[:]); err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatalf("nonce %x handed out twice", n)
		}
		seen[n] = true
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	key, err := CreateFile(path)
	if err != nil {
		t.Fatalf("CreateFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: got %v, %v; want -rw-------", info.Mode(), err)
	}
	if got, err := ReadFile(path); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadFile: got %x, %v; want the key written", got, err)
	}
	if _, err := CreateFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateFile over an existing file: got %v, want fs.ErrExist", err)
	}
	if got, _ := ReadFile(path); !bytes.Equal(got, key) {
		t.Error("CreateFile over an existing file changed it")
	}

	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	b64 := base64.StdEncoding.EncodeToString(master1)
	if got, err := ReadFile(write("group.key", b64+"\n", 0o640)); err != nil || !bytes.Equal(got, master1) {
		t.Errorf("a key file its group may read: got %x, %v; want it read", got, err)
	}
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"readable by others": {b64, 0o644, "mode 0644: others may read it; chmod 600 it"},
		"writable by group":  {b64, 0o660, "mode 0660"},
		"short key":          {base64.StdEncoding.EncodeToString(master1[:16]), 0o600, "must hold the base64 of 32 random bytes"},
		"not base64":         {"not a key at all", 0o600, "must hold the base64 of 32 random bytes"},
		"raw bytes":          {string(master1), 0o600, "must hold the base64 of 32 random bytes"},
	} {
		p := write(strings.ReplaceAll(name, " ", "-")+".key", tc.content, tc.mode)
		_, err := ReadFile(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", name, err, tc.want)
		} else if strings.Contains(err.Error(), tc.content) && tc.content != "" {
			t.Errorf("%s: the error %q quotes the file", name, err)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing key file: got %v, want fs.ErrNotExist", err)
	}
}
