package model

import (
	"regexp"
	"strings"
	"testing"
)

// validID is the rule of ValidateID written another way.
var validID = regexp.MustCompile(`^[A-Za-z0-9._~:-]{1,128}$`)

func FuzzValidateID(f *testing.F) {
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID(id)
		want := validID.MatchString(id) && id != "." && id != ".."
		if (err == nil) != want {
			t.Fatalf("ValidateID(%q) = %v; want valid %v", id, err, want)
		}
	})
}

func FuzzCanonicalLanguage(f *testing.F) {
	f.Fuzz(func(t *testing.T, tag string) {
		c, err := CanonicalLanguage(tag)
		again, errAgain := CanonicalLanguage(tag) // from the cache, when it parsed
		if again != c || (err == nil) != (errAgain == nil) {
			t.Fatalf("%q: %q, %v, then %q, %v", tag, c, err, again, errAgain)
		}
		if err != nil {
			if c != "" {
				t.Fatalf("%q: refused, yet gave %q", tag, c)
			}
			return
		}
		if len(tag) > MaxLanguageLength || len(c) > MaxLanguageLength || c == "" {
			t.Fatalf("%q (%d bytes): accepted as %q", tag, len(tag), c)
		}
		// Canonical: stable, and the same whatever the case of the input.
		for _, in := range []string{c, strings.ToUpper(tag), strings.ToLower(tag)} {
			if got, err := CanonicalLanguage(in); err != nil || got != c {
				t.Fatalf("%q is %q, but %q is %q, %v", tag, c, in, got, err)
			}
		}
	})
}
