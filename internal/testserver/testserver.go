// Package testserver names the PostgreSQL and Redis servers that the tests
// of several packages run against. CI starts both and sets
// DATA_API_REQUIRE_SERVERS=1; elsewhere a test that needs a server not named
// is skipped, loudly.
package testserver

import (
	"os"
	"testing"
)

// The environment variables that name the servers.
const (
	PostgresEnv = "DATA_API_TEST_POSTGRES_DSN" // a libpq URL
	RedisEnv    = "DATA_API_TEST_REDIS_URL"    // redis://host:port/db
	RequireEnv  = "DATA_API_REQUIRE_SERVERS"   // 1: a missing server fails the test
)

// Postgres returns the test PostgreSQL server's DSN.
func Postgres(t testing.TB) string { return named(t, PostgresEnv, "PostgreSQL") }

// Redis returns the test Redis server's URL.
func Redis(t testing.TB) string { return named(t, RedisEnv, "Redis") }

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
