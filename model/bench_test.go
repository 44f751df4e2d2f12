package model

import (
	"strconv"
	"testing"
)

// BenchmarkCanonicalLanguage: a tag seen before (the cache) and tags never
// seen (a parse each).
func BenchmarkCanonicalLanguage(b *testing.B) {
	b.Run("seen", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := CanonicalLanguage("en-US"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unseen", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := CanonicalLanguage("en-x-" + strconv.Itoa(i%1_000_000)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
