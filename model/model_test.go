package model

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/language"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"1", true},
		{"550e8400-e29b-41d4-a716-446655440000", true},
		{"A.b_c~d:e-f", true},
		{strings.Repeat("x", 128), true},
		{"..x", true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"a%20b", false},
		{"é", false},
		{"a\x00", false},
	} {
		if err := ValidateID(tc.id); (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok %v", tc.id, err, tc.ok)
		}
	}
}

func TestCanonicalLanguage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"EN", "en"},
		{"en", "en"},
		{"en-us", "en-US"},
		{"EN-US", "en-US"},
		{"zh-hant-tw", "zh-Hant-TW"},
		{"pt-br", "pt-BR"},
		{"sr-latn", "sr-Latn"},
	} {
		// Twice: the second answer comes from the cache.
		for range 2 {
			got, err := CanonicalLanguage(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("CanonicalLanguage(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		}
	}
	for _, bad := range []string{"", "english!", "en_US", "e", "en--us", "-en", "12", "en-", strings.Repeat("a", 300)} {
		if got, err := CanonicalLanguage(bad); err == nil {
			t.Errorf("CanonicalLanguage(%q) = %q, want an error", bad, got)
		}
	}
}

// longTag is a well-formed tag of n bytes: prefix, a tag that ends with a
// private-use subtag (e.g. "en-x"), and subtags of up to eight fill bytes.
func longTag(prefix string, n int, fill byte) string {
	b := []byte(prefix)
	for r := n - len(b); r > 0; r = n - len(b) {
		k := min(9, r) // "-" and up to eight characters
		if r-k == 1 {  // leave room for "-" and a character
			k--
		}
		b = append(b, '-')
		b = append(b, bytes.Repeat([]byte{fill}, k-1)...)
	}
	return string(b)
}

func TestCanonicalLanguageLength(t *testing.T) {
	for _, n := range []int{35, MaxLanguageLength} {
		tag := longTag("en-x", n, 'a')
		if len(tag) != n {
			t.Fatalf("longTag(%d) is %d bytes", n, len(tag))
		}
		if got, err := CanonicalLanguage(strings.ToUpper(tag)); err != nil || got != tag {
			t.Errorf("a tag of %d bytes: %q, %v; want %q", n, got, err, tag)
		}
	}
	for _, n := range []int{MaxLanguageLength + 1, 18 << 10} {
		_, err := CanonicalLanguage(longTag("en-x", n, 'b'))
		if err == nil || !strings.Contains(err.Error(), "at most 64 bytes") {
			t.Errorf("a tag of %d bytes: %v; want an error naming the bound", n, err)
		}
	}
}

// TestLanguageCacheIsBounded: however many distinct tags arrive, accepted
// or not, the cache holds at most its slots, and never a rejected tag.
func TestLanguageCacheIsBounded(t *testing.T) {
	for i := range 20_000 {
		tag := longTag("en-x-"+strconv.FormatInt(int64(i), 36), 16+i%48, 'a')
		if _, err := CanonicalLanguage(tag); err != nil {
			t.Fatalf("%q: %v", tag, err)
		}
		_, _ = CanonicalLanguage(tag + "!")                                       // malformed
		_, _ = CanonicalLanguage(longTag("en-x", MaxLanguageLength+1+i%100, 'b')) // too long
	}
	entries, bytes := canonicalTags.size()
	if entries > tagSlots || bytes > tagSlots*2*MaxLanguageLength {
		t.Fatalf("cache holds %d entries of %d bytes, want at most %d of %d", entries, bytes, tagSlots, tagSlots*2*MaxLanguageLength)
	}
	for _, tag := range canonicalTags.tags() {
		if _, err := language.Parse(tag); err != nil || len(tag) > MaxLanguageLength {
			t.Fatalf("cache holds a rejected tag %q", tag)
		}
	}
}

func TestValidateText(t *testing.T) {
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{"hello", true},
		{" padded ", true},
		{"日本語", true},
		{strings.Repeat("a", 16), true},
		{strings.Repeat("a", 17), false},
		{strings.Repeat("é", 9), false}, // 18 bytes
		{"", false},
		{" \t\r\n\u00a0\u2003", false},
		{"a\xffb", false},
		{"a\x00b", false},
	} {
		if err := ValidateText(tc.text, 16); (err == nil) != tc.ok {
			t.Errorf("ValidateText(%q) = %v, want ok %v", tc.text, err, tc.ok)
		}
	}
}

func TestValidationError(t *testing.T) {
	var v ValidationError
	if v.Err() != nil {
		t.Fatal("an empty ValidationError is an error")
	}
	v.Add("text", "is empty")
	v.Add("language", "is required")
	if got, want := v.Err().Error(), "text: is empty; language: is required"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

// size reports how many entries the cache holds and the bytes of their
// strings.
func (c *tagCache) size() (entries, bytes int) {
	for i := range c.slots {
		if e := c.slots[i].Load(); e != nil {
			entries++
			bytes += len(e.tag) + len(e.canonical)
		}
	}
	return entries, bytes
}

// tags returns the tags the cache holds, as given.
func (c *tagCache) tags() []string {
	var tags []string
	for i := range c.slots {
		if e := c.slots[i].Load(); e != nil {
			tags = append(tags, e.tag)
		}
	}
	return tags
}
