// Package testserver names the PostgreSQL, Redis and Redis Sentinel servers
// that the tests of several packages run against. CI starts them all and
// sets DATA_API_REQUIRE_SERVERS=1; elsewhere a test that needs a server not
// named is skipped, loudly.
package testserver

import (
	"os"
	"strings"
	"testing"
)

// The environment variables that name the servers.
const (
	PostgresEnv       = "DATA_API_TEST_POSTGRES_DSN"    // a libpq URL
	RedisEnv          = "DATA_API_TEST_REDIS_URL"       // redis://host:port/db
	SentinelAddrsEnv  = "DATA_API_TEST_SENTINEL_ADDRS"  // host:port,host:port,… of the sentinels
	SentinelMasterEnv = "DATA_API_TEST_SENTINEL_MASTER" // the name they know the primary by
	RequireEnv        = "DATA_API_REQUIRE_SERVERS"      // 1: a missing server fails the test
)

// Postgres returns the test PostgreSQL server's DSN.
func Postgres(t testing.TB) string { return named(t, PostgresEnv, "PostgreSQL") }

// Redis returns the test Redis server's URL.
func Redis(t testing.TB) string { return named(t, RedisEnv, "Redis") }

// Sentinel returns the name of the test Sentinel group's primary and the
// addresses of its sentinels. The group has one replica, and tests may fail
// it over (FailOver), so that its primary is wherever the sentinels say.
func Sentinel(t testing.TB) (master string, addrs []string) {
	master = named(t, SentinelMasterEnv, "Redis Sentinel")
	return master, strings.Split(named(t, SentinelAddrsEnv, "Redis Sentinel"), ",")
}

func named(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s not set, and %s=1 requires the %s server", env, RequireEnv, what)
		}
		t.Skipf("%s not set: %s test NOT run", env, what)
	}
	return v
}
