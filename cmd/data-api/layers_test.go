package main

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/data-api/data-api/"

// TestLayers checks the dependency rule mechanically: a request crosses
// api → service → (pending | repository) once each, everything speaks
// model, only app wires the packages together from config, and each
// technology stays in its one package: GORM and the SQL drivers in
// repository, Redis in pending, gin and Prometheus in api, Viper in config;
// the Go client for callers imports nothing but the standard library.
// internal/group batches the concurrent calls of service (consents) and
// pending (Redis scripts). keyring, the standard library's cryptography
// only, serves repository
// and the deletion journal it keeps (journal) alone: nothing else handles
// keys.
func TestLayers(t *testing.T) {
	rules := map[string]struct {
		internal []string // packages of this module it may import
		external []string // prefixes of other modules it may import
	}{
		"model":   {nil, []string{"golang.org/x/text/"}},
		"pending": {[]string{"internal/group", "model"}, []string{"github.com/redis/rueidis"}},
		"service": {[]string{"internal/group", "model", "pending"}, nil},
		// Batching of concurrent calls, which the committer and the Redis
		// store share: the standard library only.
		"internal/group": {nil, nil},
		"keyring":        {nil, nil},
		"journal":        {[]string{"keyring"}, nil},
		"repository":     {[]string{"journal", "keyring", "model"}, []string{"gorm.io/", "github.com/mattn/go-sqlite3", "github.com/jackc/"}},
		"api":            {[]string{"model", "service"}, []string{"github.com/gin-gonic/gin", "github.com/prometheus/", "github.com/coreos/go-oidc/", "github.com/go-jose/go-jose/"}},
		"config":         {nil, []string{"github.com/spf13/viper", "github.com/go-viper/", "go.yaml.in/yaml/"}},
		"app":            {[]string{"api", "config", "pending", "repository", "service"}, nil},
		"cmd/data-api":   {[]string{"app", "config"}, nil},
		// The Go client is for the service's callers: the standard library
		// only, so that importing it brings in nothing of the service.
		"client": {nil, nil},
	}
	for dir, rule := range rules {
		pkg, err := build.ImportDir(filepath.Join("..", "..", dir), 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, imp := range pkg.Imports {
			if !strings.Contains(strings.Split(imp, "/")[0], ".") {
				continue // standard library
			}
			if rest, ok := strings.CutPrefix(imp, module); ok {
				if !slices.Contains(rule.internal, rest) {
					t.Errorf("%s imports %s: the arrow points the wrong way", dir, rest)
				}
				continue
			}
			if !slices.ContainsFunc(rule.external, func(p string) bool { return strings.HasPrefix(imp, p) }) {
				t.Errorf("%s imports %s, which belongs elsewhere", dir, imp)
			}
		}
	}
}
