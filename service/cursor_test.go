package service

import (
	"errors"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
)

// TestCursorIsBoundToEveryFilter checks that a cursor is valid with the
// canonical filter it was issued for, and with no other.
func TestCursorIsBoundToEveryFilter(t *testing.T) {
	cc := cursorCodec{secret: []byte("a secret of the test, 32 bytes.")}
	t0 := time.Date(2026, 11, 26, 21, 36, 4, 123456789, time.UTC)
	pos := model.Position{CreatedAt: t0, ID: 42}
	issued := model.Filter{Language: "en", CustomerID: "c1", DialogueID: "d1", Since: t0.Add(-time.Hour), Until: t0.Add(time.Hour)}
	var v model.ValidationError
	c := cc.encode(checkFilter(issued, &v), pos)

	paris := time.FixedZone("CET", 3600)
	same := issued
	same.Since, same.Until = issued.Since.In(paris), issued.Until.In(paris)
	if got, err := cc.decode(c, checkFilter(same, &v)); err != nil || got != pos {
		t.Errorf("the same instants in another zone: got %v, %v; want %v", got, err, pos)
	}
	for name, change := range map[string]func(*model.Filter){
		"no dialogue":          func(f *model.Filter) { f.DialogueID = "" },
		"another dialogue":     func(f *model.Filter) { f.DialogueID = "d2" },
		"no since":             func(f *model.Filter) { f.Since = time.Time{} },
		"since 1ns later":      func(f *model.Filter) { f.Since = f.Since.Add(1) },
		"no until":             func(f *model.Filter) { f.Until = time.Time{} },
		"until 1ns earlier":    func(f *model.Filter) { f.Until = f.Until.Add(-1) },
		"since as until":       func(f *model.Filter) { f.Since, f.Until = time.Time{}, f.Since },
		"another language":     func(f *model.Filter) { f.Language = "de" },
		"no customer":          func(f *model.Filter) { f.CustomerID = "" },
		"dialogue in customer": func(f *model.Filter) { f.CustomerID, f.DialogueID = "c1\x00d1", "" },
	} {
		f := issued
		change(&f)
		if _, err := cc.decode(c, f); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("%s: got %v, want the cursor refused", name, err)
		}
	}
	// Cursors issued for language and customer alone read as before the
	// other filters existed.
	old := model.Filter{Language: "en", CustomerID: "c1"}
	if got, err := cc.decode(cc.encode(old, pos), old); err != nil || got != pos {
		t.Errorf("language and customer only: got %v, %v", got, err)
	}
}
