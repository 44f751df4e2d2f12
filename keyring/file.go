package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// fileModeRefused are the permission bits a key file must not have: any
// for others, and write or execute for its group. A file readable by its
// group passes, as a Kubernetes secret mounted for a group (fsGroup) is.
const fileModeRefused fs.FileMode = 0o037

// ReadFile returns the key in the file at path: the base64 of KeySize
// bytes, as `openssl rand -base64 32` writes it. It refuses a file that
// others may read (see fileModeRefused).
func ReadFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if m := info.Mode().Perm(); m&fileModeRefused != 0 {
		return nil, fmt.Errorf("key file %s has mode %#o: others may read it; chmod 600 it", path, m)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	clear(data)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("key file %s must hold the base64 of %d random bytes (openssl rand -base64 %d)", path, KeySize, KeySize)
	}
	return key, nil
}

// CreateFile writes a new random key to a new file at path, readable by its
// owner only, syncs it and its directory, and returns the key. It fails if
// the file exists.
func CreateFile(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("write key file %s: %w", path, err), os.Remove(path))
	}
	return key, nil
}

// syncDir makes a new entry of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
