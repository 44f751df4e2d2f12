package fake

import (
	"runtime"
	"testing"
	"time"
)

// WaitUntil yields until cond holds, and fails t if it does not within
// 10 s: for waiting on goroutines to reach a point, not for a result.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		runtime.Gosched()
	}
}
