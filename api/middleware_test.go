package api

import (
	"testing"
	"time"
)

// TestAppendTimeFormatsAsRFC3339Nano: the request line writes times as
// slog's JSON handler does.
func TestAppendTimeFormatsAsRFC3339Nano(t *testing.T) {
	base := time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC)
	for _, d := range []time.Duration{0, 1, 10, 120 * time.Millisecond, 123456789, 999999999, time.Second, time.Second + 5*time.Microsecond} {
		for _, at := range []time.Time{base.Add(d), base.Add(d).In(time.FixedZone("CET", 3600))} {
			if got, want := string(appendTime(nil, at)), at.UTC().Format(time.RFC3339Nano); got != want {
				t.Errorf("appendTime(%v) = %s, want %s", at, got, want)
			}
		}
	}
}
