package model

import (
	"strings"
	"testing"
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
