package service

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/data-api/data-api/model"
)

// TestReadinessFollowsWrites walks the rule: not ready once writes fail
// writeFailuresNotReady times in a row, probes included, with none
// committed since; one failed consent, or a probe, is not enough.
func TestReadinessFollowsWrites(t *testing.T) {
	var failing atomic.Bool
	repo := &fakeRepo{failSave: func([]model.Consent) bool { return failing.Load() }}
	var failures []string
	d, clk := newTestService(t, repo, func(s *setup) {
		s.o.ObserveWrite = func(op string, _ time.Duration, err error) {
			if err != nil {
				failures = append(failures, op)
			}
		}
	})
	ctx := context.Background()
	probes := func() int {
		repo.mu.Lock()
		defer repo.mu.Unlock()
		return repo.probes
	}
	refuseProbes := func(refuse bool) {
		repo.mu.Lock()
		defer repo.mu.Unlock()
		repo.probeErr = nil
		if refuse {
			repo.probeErr = errDisk
		}
	}
	wantReady := func(step string, ready bool, probed int) {
		t.Helper()
		err := d.Ready(ctx)
		if ready && err != nil || !ready && !errors.Is(err, ErrNotCommitting) {
			t.Fatalf("%s: Ready = %v, want ready %v", step, err, ready)
		}
		if got := probes(); got != probed {
			t.Fatalf("%s: %d probes so far, want %d", step, got, probed)
		}
	}
	n := 0
	consent := func() error {
		n++
		id := "d" + string(rune('a'+n))
		mustIngest(t, d, msg("c", id, "text"))
		_, err := d.Consent(ctx, id, true, "")
		return err
	}

	// Nothing has committed yet: the first check probes; the next ones
	// know from it.
	wantReady("at start", true, 1)
	wantReady("at once again", true, 1)
	if err := consent(); err != nil {
		t.Fatal(err)
	}

	// One consent fails, for a reason of its own: the probe that follows
	// commits, and the service stays ready.
	clk.Advance(probeEvery)
	failing.Store(true)
	if err := consent(); err == nil {
		t.Fatal("consent succeeded, want a failure")
	}
	wantReady("after one failed consent", true, 2)

	// The database refuses every write: a failed consent and a failed
	// probe are two failures, still ready; the probe after probeEvery
	// makes three.
	refuseProbes(true)
	clk.Advance(probeEvery)
	if err := consent(); err == nil {
		t.Fatal("consent succeeded, want a failure")
	}
	wantReady("after a failed consent and a failed probe", true, 3)
	wantReady("before probeEvery", true, 3)
	clk.Advance(probeEvery)
	wantReady("after a second failed probe", false, 4)

	// Probes are rate-limited however often readiness is asked, and
	// however many ask at once.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { d.Ready(ctx) })
	}
	wg.Wait()
	wantReady("after many checks", false, 4)

	// The database accepts writes again: the next probe says so.
	refuseProbes(false)
	failing.Store(false)
	wantReady("writes accepted, before probeEvery", false, 4)
	clk.Advance(probeEvery)
	wantReady("writes accepted, next probe", true, 5)

	// Failed consents alone make the service not ready too, and a consent
	// that commits makes it ready again, without a probe.
	failing.Store(true)
	refuseProbes(true)
	for range writeFailuresNotReady {
		if err := consent(); err == nil {
			t.Fatal("consent succeeded, want a failure")
		}
	}
	wantReady("after three failed consents", false, 5)
	failing.Store(false)
	if err := consent(); err != nil {
		t.Fatal(err)
	}
	wantReady("after a consent that committed", true, 5)

	// An idle service probes once every probeIdle.
	clk.Advance(probeIdle - time.Second)
	refuseProbes(false)
	wantReady("idle, within probeIdle", true, 5)
	clk.Advance(time.Second)
	wantReady("idle for probeIdle", true, 6)

	if want := 5; len(failures) != want {
		t.Errorf("ObserveWrite was told of %d failures (%q), want %d: probes are not writes of an op", len(failures), failures, want)
	}
}

// TestReadinessProbeIgnoresAHangUp checks that a readiness check whose
// caller goes away does not count a failed write: the probe runs to its
// deadline whatever the caller does.
func TestReadinessProbeIgnoresAHangUp(t *testing.T) {
	repo := &fakeRepo{}
	d, _ := newTestService(t, repo, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Ping and Counts of the fakes ignore ctx; the probe sees it.
	probed := make(chan error, 1)
	d.repo = probeSees{repo, probed}
	d.Ready(ctx)
	if err := <-probed; err != nil {
		t.Errorf("the probe ran under a cancelled context: %v", err)
	}
}

// probeSees tells what context its probe ran under.
type probeSees struct {
	*fakeRepo
	ctx chan<- error
}

func (p probeSees) ProbeWrite(ctx context.Context) error {
	p.ctx <- ctx.Err()
	return nil
}
