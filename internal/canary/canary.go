// Package canary finds known texts in the files a test left on disk. The
// tests that prove a text is gone (erasure, encryption at rest, backups)
// search every file of a database for it, as an auditor would with grep.
package canary

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Find returns "file: name", sorted, for each of needles (name → bytes)
// found in a regular file under dir. A file removed while the walk runs, as
// a database server's temporary files and recycled WAL segments are, is
// skipped.
func Find(dir string, needles map[string][]byte) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for name, n := range needles {
			if bytes.Contains(b, n) {
				found = append(found, filepath.Base(path)+": "+name)
			}
		}
		return nil
	})
	slices.Sort(found)
	return found, err
}
