package testserver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// FailOver makes the test Sentinel group fail its primary over to a
// replica, as a primary's loss would, and returns once the sentinels name
// the new primary, it takes writes, and the old primary has become its
// replica, so that no write can land on the old one any more. It first
// waits until the replicas are in sync, so that there is one to promote.
func FailOver(t testing.TB, master string, addrs []string) (from, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s := dial(t, addrs[0])
	defer s.Close()

	from = waitFor(t, ctx, "a primary with a replica in sync", func() (string, error) {
		addr, err := primaryOf(ctx, s, master)
		if err != nil {
			return "", err
		}
		p := dial(t, addr)
		info, err := command(ctx, p, "INFO", "replication").ToString()
		p.Close()
		if err != nil {
			return "", err
		}
		if !strings.Contains(info, "role:master") || !strings.Contains(info, "state=online") {
			return "", fmt.Errorf("%s has no replica online", addr)
		}
		replicas, err := command(ctx, s, "SENTINEL", "REPLICAS", master).ToArray()
		if err != nil || len(replicas) == 0 {
			return "", fmt.Errorf("the sentinel knows no replica: %v", err)
		}
		for _, r := range replicas {
			m, err := r.AsStrMap()
			if err != nil {
				return "", err
			}
			if m["flags"] != "slave" || m["master-link-status"] != "ok" {
				return "", fmt.Errorf("replica %s:%s: flags %s, link %s", m["ip"], m["port"], m["flags"], m["master-link-status"])
			}
		}
		return addr, nil
	})
	waitFor(t, ctx, "the sentinels to start a failover", func() (string, error) {
		return "", command(ctx, s, "SENTINEL", "FAILOVER", master).Error()
	})
	to = waitFor(t, ctx, "a new primary that takes writes", func() (string, error) {
		addr, err := primaryOf(ctx, s, master)
		if err != nil || addr == from {
			return "", fmt.Errorf("the primary is still %s (%v)", from, err)
		}
		p := dial(t, addr)
		defer p.Close()
		return addr, command(ctx, p, "SET", "testserver:failover", "1").Error()
	})
	// The sentinels turn the old primary into a replica when they next look
	// at it, up to 10 s later; the test does it at once.
	host, port, _ := net.SplitHostPort(to)
	waitFor(t, ctx, "the old primary to follow the new one", func() (string, error) {
		p := dial(t, from)
		defer p.Close()
		if err := command(ctx, p, "REPLICAOF", host, port).Error(); err != nil {
			return "", err
		}
		info, err := command(ctx, p, "INFO", "replication").ToString()
		if err == nil && !strings.Contains(info, "role:slave") {
			err = fmt.Errorf("%s is still a primary", from)
		}
		return "", err
	})
	return from, to
}

// command sends one command.
func command(ctx context.Context, c rueidis.Client, args ...string) rueidis.RedisResult {
	return c.Do(ctx, c.B().Arbitrary(args...).Build())
}

func primaryOf(ctx context.Context, sentinel rueidis.Client, master string) (string, error) {
	hp, err := command(ctx, sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master).AsStrSlice()
	if err != nil || len(hp) != 2 {
		return "", fmt.Errorf("primary of %s: %v %v", master, hp, err)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// dial connects to one server, a sentinel or a Redis, closed with the test.
func dial(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor polls try until it succeeds, failing the test when ctx ends.
func waitFor(t testing.TB, ctx context.Context, what string, try func() (string, error)) string {
	t.Helper()
	for {
		v, err := try()
		if err == nil {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(100 * time.Millisecond): // polling servers that change state on their own
		}
	}
}
