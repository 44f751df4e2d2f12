package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"
)

// want is the configuration data-api.yaml documents.
var want = Config{
	Server: Server{
		Addr:              ":8080",
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownGrace:     15 * time.Second,
		AllowedOrigins:    []string{},

		ExportStallTimeout: 30 * time.Second,
	},
	Database:  Database{Driver: "sqlite", DSN: "data/data-api.db", MaxReaders: 4, CommitBatch: 128, MaxExports: 4},
	Dialogues: Dialogues{Store: "memory", TTL: 30 * time.Minute, SweepInterval: time.Minute, MaxPending: 100000, MaxMessages: 1000, MaxBytes: 1 << 30, Shards: 64},
	Redis:     Redis{URL: "redis://127.0.0.1:6379/0", Sentinel: Sentinel{Addrs: []string{}}, Prefix: "data-api:", TakeTimeout: time.Minute},
	Limits:    Limits{MaxTextBytes: 8192, MaxBodyBytes: 65536},
	Retention: Retention{MaxAge: 0, Interval: time.Hour, BatchSize: 100},
	Log:       Log{Level: "info"},
	Auth: Auth{Keys: []Key{}, OIDC: OIDC{
		RolesClaim:      "roles",
		Roles:           OIDCRoles{Ingest: []string{}, Analyst: []string{}, Admin: []string{}},
		Leeway:          30 * time.Second,
		RefreshInterval: 10 * time.Second,
		FetchTimeout:    5 * time.Second,
	}},
	Encryption: Encryption{Keys: []EncryptionKey{}},
	Journal:    Journal{Keep: 840 * time.Hour},
}

// Master keys that pass validation: the base64 of 32 bytes.
const (
	masterKey1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	masterKey2 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

// ring1 is a key ring of one key, k1.
var ring1 = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}}}

// withMasterKey is the environment of a key ring of one key, k1.
var withMasterKey = []string{`DATA_API_ENCRYPTION_KEYS=[{"id":"k1","key":"` + masterKey1 + `"}]`, "DATA_API_ENCRYPTION_ACTIVE=k1"}

// validOIDC is an issuer's configuration that passes validation.
var validOIDC = OIDC{
	Issuer:          "https://keycloak.example.com/realms/acme",
	Audience:        "data-api",
	RolesClaim:      "realm_access.roles",
	Roles:           OIDCRoles{Ingest: []string{"chatbot"}, Analyst: []string{"data-analyst"}, Admin: []string{}},
	Leeway:          30 * time.Second,
	RefreshInterval: 10 * time.Second,
	FetchTimeout:    5 * time.Second,
}

// inEmptyDir runs the test in an empty directory, so that Load finds no file
// at DefaultPath.
func inEmptyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// problems returns the "key: detail" lines of err, failing the test unless
// err is an *Error.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want an *Error", err)
	}
	return strings.Split(e.Error(), "\n")
}

func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want an *Error", err)
	}
	var keys []string
	for _, p := range e.Problems {
		keys = append(keys, p.Key)
	}
	return keys
}

// embeddedKeys returns every leaf key of data-api.yaml.
func embeddedKeys(t *testing.T) []string {
	t.Helper()
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defaultYAML)); err != nil {
		t.Fatal(err)
	}
	return v.AllKeys()
}

func TestLoadDefaults(t *testing.T) {
	inEmptyDir(t)
	got, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestLoadDefaultPath(t *testing.T) {
	t.Run("committed file", func(t *testing.T) {
		t.Chdir("..") // the module root, where config/data-api.yaml is
		got, err := Load("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("file in working directory", func(t *testing.T) {
		dir := inEmptyDir(t)
		writeFile(t, filepath.Join(dir, DefaultPath), "log:\n  level: debug\n")
		got, err := Load("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Log.Level != "debug" {
			t.Errorf("got log.level %q, want debug", got.Log.Level)
		}
	})
}

func TestLoadFile(t *testing.T) {
	inEmptyDir(t)
	tests := []struct {
		name    string
		content string
		env     []string
		check   func(Config) bool
	}{
		{
			name:    "overrides only its keys",
			content: "dialogues:\n  ttl: 45m\n  shards: 16\n",
			check: func(c Config) bool {
				return c.Dialogues.TTL == 45*time.Minute && c.Dialogues.Shards == 16 && c.Dialogues.MaxPending == want.Dialogues.MaxPending
			},
		},
		{
			name:    "environment wins over file",
			content: "server:\n  addr: \":9000\"\n",
			env:     []string{"DATA_API_SERVER_ADDR=:9100"},
			check:   func(c Config) bool { return c.Server.Addr == ":9100" },
		},
		{
			name:    "empty file keeps defaults",
			content: "",
			check:   func(c Config) bool { return reflect.DeepEqual(c, want) },
		},
		{
			name:    "auth keys in YAML",
			content: "auth:\n  keys:\n    - name: bot\n      key: 0123456789abcdef\n      roles: [ingest]\n",
			check: func(c Config) bool {
				return reflect.DeepEqual(c.Auth.Keys, []Key{{Name: "bot", Key: "0123456789abcdef", Roles: []string{"ingest"}}})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), tt.content)
			got, err := Load(path, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := inEmptyDir(t)
	t.Run("missing explicit path", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"), nil)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %v, want an error matching fs.ErrNotExist", err)
		}
	})
	t.Run("not YAML", func(t *testing.T) {
		path := writeFile(t, filepath.Join(dir, "bad.yaml"), "server: [\n")
		if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("got %v, want an error naming %s", err, path)
		}
	})
}

// TestLoadEnvOverridesEveryKey sets each key of data-api.yaml through its
// environment variable and checks that the value lands in Config.
func TestLoadEnvOverridesEveryKey(t *testing.T) {
	const sum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	tests := map[string]struct {
		value   string
		got     func(Config) any
		want    any
		problem string   // set when no other valid value exists: the value must reach validation
		with    []string // other variables the value needs to be valid
	}{
		"server.addr":                 {value: "127.0.0.1:9000", got: func(c Config) any { return c.Server.Addr }, want: "127.0.0.1:9000"},
		"server.read_header_timeout":  {value: "2s", got: func(c Config) any { return c.Server.ReadHeaderTimeout }, want: 2 * time.Second},
		"server.read_timeout":         {value: "1m", got: func(c Config) any { return c.Server.ReadTimeout }, want: time.Minute},
		"server.write_timeout":        {value: "90s", got: func(c Config) any { return c.Server.WriteTimeout }, want: 90 * time.Second},
		"server.idle_timeout":         {value: "5m", got: func(c Config) any { return c.Server.IdleTimeout }, want: 5 * time.Minute},
		"server.drain_delay":          {value: "5s", got: func(c Config) any { return c.Server.DrainDelay }, want: 5 * time.Second},
		"server.shutdown_grace":       {value: "1m30s", got: func(c Config) any { return c.Server.ShutdownGrace }, want: 90 * time.Second},
		"server.allowed_origins":      {value: `["https://console.example.com","http://localhost:3000"]`, got: func(c Config) any { return c.Server.AllowedOrigins }, want: []string{"https://console.example.com", "http://localhost:3000"}},
		"server.export_stall_timeout": {value: "2m", got: func(c Config) any { return c.Server.ExportStallTimeout }, want: 2 * time.Minute},
		"database.driver":             {value: "postgres", got: func(c Config) any { return c.Database.Driver }, want: "postgres", with: append(withMasterKey, "DATA_API_JOURNAL_DIR=/var/lib/data-api-journal")},
		"database.dsn":                {value: "/var/lib/data-api/db", got: func(c Config) any { return c.Database.DSN }, want: "/var/lib/data-api/db"},
		"database.max_readers":        {value: "8", got: func(c Config) any { return c.Database.MaxReaders }, want: 8},
		"database.commit_batch":       {value: "32", got: func(c Config) any { return c.Database.CommitBatch }, want: 32},
		"database.max_exports":        {value: "2", got: func(c Config) any { return c.Database.MaxExports }, want: 2},
		"dialogues.store":             {value: "redis", got: func(c Config) any { return c.Dialogues.Store }, want: "redis"},
		"redis.url":                   {value: "redis://10.0.0.1:6380/2", got: func(c Config) any { return c.Redis.URL }, want: "redis://10.0.0.1:6380/2"},
		"redis.prefix":                {value: "staging:", got: func(c Config) any { return c.Redis.Prefix }, want: "staging:"},
		"redis.take_timeout":          {value: "2m", got: func(c Config) any { return c.Redis.TakeTimeout }, want: 2 * time.Minute},
		"redis.sentinel.master":       {value: "data-api", got: func(c Config) any { return c.Redis.Sentinel.Master }, want: "data-api"},
		"redis.sentinel.addrs": {
			value: `["10.0.0.1:26379","10.0.0.2:26379"]`, got: func(c Config) any { return c.Redis.Sentinel.Addrs }, want: []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		},
		"redis.sentinel.password":       {value: "9d1c0e4b7a", got: func(c Config) any { return c.Redis.Sentinel.Password }, want: "9d1c0e4b7a"},
		"redis.sentinel.redis_password": {value: "4e2f8a1c9b", got: func(c Config) any { return c.Redis.Sentinel.RedisPassword }, want: "4e2f8a1c9b"},
		"redis.sentinel.db":             {value: "3", got: func(c Config) any { return c.Redis.Sentinel.DB }, want: 3},
		"dialogues.ttl":                 {value: "45m", got: func(c Config) any { return c.Dialogues.TTL }, want: 45 * time.Minute},
		"dialogues.sweep_interval":      {value: "10s", got: func(c Config) any { return c.Dialogues.SweepInterval }, want: 10 * time.Second},
		"dialogues.max_pending":         {value: "500", got: func(c Config) any { return c.Dialogues.MaxPending }, want: 500},
		"dialogues.max_messages":        {value: "20", got: func(c Config) any { return c.Dialogues.MaxMessages }, want: 20},
		"dialogues.max_pending_bytes":   {value: "1048576", got: func(c Config) any { return c.Dialogues.MaxBytes }, want: int64(1048576)},
		"dialogues.shards":              {value: "256", got: func(c Config) any { return c.Dialogues.Shards }, want: 256},
		"limits.max_text_bytes":         {value: "1024", got: func(c Config) any { return c.Limits.MaxTextBytes }, want: 1024},
		"limits.max_body_bytes":         {value: "1048576", got: func(c Config) any { return c.Limits.MaxBodyBytes }, want: 1048576},
		"retention.max_age":             {value: "720h", got: func(c Config) any { return c.Retention.MaxAge }, want: 720 * time.Hour},
		"retention.interval":            {value: "15m", got: func(c Config) any { return c.Retention.Interval }, want: 15 * time.Minute},
		"retention.batch_size":          {value: "50", got: func(c Config) any { return c.Retention.BatchSize }, want: 50},
		"log.level":                     {value: "debug", got: func(c Config) any { return c.Log.Level }, want: "debug"},
		"auth.keys": {
			value: `[{"name":"bot","sha256":"` + sum + `","roles":["ingest"]},{"name":"ana","key":"0123456789abcdef","roles":["analyst","admin"]}]`,
			got:   func(c Config) any { return c.Auth.Keys },
			want: []Key{
				{Name: "bot", SHA256: sum, Roles: []string{"ingest"}},
				{Name: "ana", Key: "0123456789abcdef", Roles: []string{"analyst", "admin"}},
			},
		},
		"auth.metrics_open": {value: "true", got: func(c Config) any { return c.Auth.MetricsOpen }, want: true},
		"auth.open":         {value: "true", got: func(c Config) any { return c.Auth.Open }, want: true},
		"auth.oidc.issuer": {
			value: "https://keycloak.example.com/realms/acme", got: func(c Config) any { return c.Auth.OIDC.Issuer }, want: "https://keycloak.example.com/realms/acme",
			with: []string{"DATA_API_AUTH_OIDC_AUDIENCE=data-api", `DATA_API_AUTH_OIDC_ROLES_ANALYST=["data-analyst"]`},
		},
		"auth.oidc.audience": {
			value: "data-api", got: func(c Config) any { return c.Auth.OIDC.Audience }, want: "data-api",
			with: []string{"DATA_API_AUTH_OIDC_ISSUER=http://127.0.0.1:8180/realms/acme", `DATA_API_AUTH_OIDC_ROLES_ANALYST=["data-analyst"]`},
		},
		"auth.oidc.roles_claim": {value: "realm_access.roles", got: func(c Config) any { return c.Auth.OIDC.RolesClaim }, want: "realm_access.roles"},
		"auth.oidc.roles.ingest": {
			value: `["chatbot","bot"]`, got: func(c Config) any { return c.Auth.OIDC.Roles.Ingest }, want: []string{"chatbot", "bot"},
			with: []string{"DATA_API_AUTH_OIDC_ISSUER=https://idp.example.com", "DATA_API_AUTH_OIDC_AUDIENCE=data-api"},
		},
		"auth.oidc.roles.analyst": {
			value: `["data-analyst"]`, got: func(c Config) any { return c.Auth.OIDC.Roles.Analyst }, want: []string{"data-analyst"},
			with: []string{"DATA_API_AUTH_OIDC_ISSUER=https://idp.example.com", "DATA_API_AUTH_OIDC_AUDIENCE=data-api"},
		},
		"auth.oidc.roles.admin": {
			value: `["dpo"]`, got: func(c Config) any { return c.Auth.OIDC.Roles.Admin }, want: []string{"dpo"},
			with: []string{"DATA_API_AUTH_OIDC_ISSUER=https://idp.example.com", "DATA_API_AUTH_OIDC_AUDIENCE=data-api"},
		},
		"auth.oidc.leeway":           {value: "1m", got: func(c Config) any { return c.Auth.OIDC.Leeway }, want: time.Minute},
		"auth.oidc.refresh_interval": {value: "1m", got: func(c Config) any { return c.Auth.OIDC.RefreshInterval }, want: time.Minute},
		"auth.oidc.fetch_timeout":    {value: "2s", got: func(c Config) any { return c.Auth.OIDC.FetchTimeout }, want: 2 * time.Second},
		"cursor.secret":              {value: "a-cursor-secret-of-32-characters", got: func(c Config) any { return c.Cursor.Secret }, want: "a-cursor-secret-of-32-characters"},
		"encryption.keys": {
			value: `[{"id":"k1","key":"` + masterKey1 + `"},{"id":"k2","file":"/run/secrets/k2"}]`,
			got:   func(c Config) any { return c.Encryption.Keys },
			want:  []EncryptionKey{{ID: "k1", Key: masterKey1}, {ID: "k2", File: "/run/secrets/k2"}},
			with:  []string{"DATA_API_ENCRYPTION_ACTIVE=k2"},
		},
		"encryption.active": {
			value: "k1", got: func(c Config) any { return c.Encryption.Active }, want: "k1",
			with: withMasterKey[:1],
		},
		"encryption.key_file": {value: "/var/lib/data-api/key", got: func(c Config) any { return c.Encryption.KeyFile }, want: "/var/lib/data-api/key"},
		"journal.dir":         {value: "/mnt/journal", got: func(c Config) any { return c.Journal.Dir }, want: "/mnt/journal"},
		"journal.keep":        {value: "2160h", got: func(c Config) any { return c.Journal.Keep }, want: 2160 * time.Hour},
	}

	keys := embeddedKeys(t)
	for _, key := range keys {
		if _, ok := tests[key]; !ok {
			t.Errorf("key %s of data-api.yaml has no test case", key)
		}
	}
	for key := range tests {
		if !slices.Contains(keys, key) {
			t.Errorf("test case %s is not a key of data-api.yaml", key)
		}
	}

	inEmptyDir(t)
	for key, tt := range tests {
		t.Run(key, func(t *testing.T) {
			name := "DATA_API_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
			got, err := Load("", append([]string{"PATH=/bin", name + "=" + tt.value}, tt.with...))
			if tt.problem != "" {
				if p := problems(t, err); !slices.Equal(p, []string{tt.problem}) {
					t.Errorf("got problems %q, want %q", p, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := tt.got(got); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("%s=%s: got %#v, want %#v", name, tt.value, g, tt.want)
			}
			if g := tt.got(want); reflect.DeepEqual(g, tt.want) {
				t.Errorf("%s=%s: the test value equals the default", name, tt.value)
			}
		})
	}
}

func TestLoadEnvEdgeCases(t *testing.T) {
	inEmptyDir(t)
	tests := []struct {
		name    string
		environ []string
		check   func(Config) bool
	}{
		{"empty value counts as unset", []string{"DATA_API_SERVER_ADDR="}, func(c Config) bool { return c.Server.Addr == want.Server.Addr }},
		{"last duplicate wins", []string{"DATA_API_LOG_LEVEL=warn", "DATA_API_LOG_LEVEL=error"}, func(c Config) bool { return c.Log.Level == "error" }},
		{"other prefixes ignored", []string{"SERVER_ADDR=:1", "DATAAPI_SERVER_ADDR=:1", "data_api_server_addr=:1"}, func(c Config) bool { return reflect.DeepEqual(c, want) }},
		{"the test suite's variables ignored", []string{"DATA_API_TEST_POSTGRES_DSN=postgres://x", "DATA_API_TEST_REDIS_URL=redis://x", "DATA_API_REQUIRE_SERVERS=1", "DATA_API_BENCH_ROWS=10"},
			func(c Config) bool { return reflect.DeepEqual(c, want) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load("", tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	inEmptyDir(t)
	tests := []struct {
		name    string
		file    string
		environ []string
		want    []string // problem lines, in order
	}{
		{
			name: "duration as YAML int",
			file: "dialogues:\n  ttl: 30\n",
			want: []string{"dialogues.ttl: must be a duration with a unit (e.g. 30s, 5m, 1h), got 30"},
		},
		{
			name: "duration as YAML string without unit",
			file: "server:\n  read_timeout: \"30\"\n",
			want: []string{"server.read_timeout: must be a duration with a unit (e.g. 30s, 5m, 1h), got 30"},
		},
		{
			name:    "duration in env without unit",
			environ: []string{"DATA_API_RETENTION_MAX_AGE=0"},
			want:    []string{"retention.max_age: must be a duration with a unit (e.g. 30s, 5m, 1h), got 0"},
		},
		{
			name:    "duration with unknown unit",
			environ: []string{"DATA_API_SERVER_IDLE_TIMEOUT=2 days"},
			want:    []string{`server.idle_timeout: must be a duration with a unit (e.g. 30s, 5m, 1h), got "2 days"`},
		},
		{
			name:    "int not a number",
			environ: []string{"DATA_API_DATABASE_MAX_READERS=four"},
			want:    []string{"database.max_readers: cannot parse value as 'int': strconv.ParseInt: invalid syntax"},
		},
		{
			name: "unknown keys",
			file: "serverr:\n  addr: x\ndialogues:\n  shard: 8\nauth:\n  keys:\n    - name: bot\n      key: 0123456789abcdef\n      role: [ingest]\n      roles: [ingest]\n" +
				"  oidc:\n    issuer: https://idp.example.com\n    audience: data-api\n    client_id: x\n    roles:\n      analysts: [data-analyst]\n      analyst: [data-analyst]\n",
			want: []string{
				"auth.keys[0].role: unknown key",
				"auth.oidc.client_id: unknown key",
				"auth.oidc.roles.analysts: unknown key",
				"dialogues.shard: unknown key",
				"serverr: unknown key",
			},
		},
		{
			name:    "unknown variables",
			environ: []string{"DATA_API_AUTH_KEY=[]", "DATA_API_DIALOGUES_MAXPENDING=5", "DATA_API_SERVER=:1", "DATA_API_LOGLEVEL=", "DATA_API_SERVER_ADDR=:9000"},
			want: []string{
				"DATA_API_AUTH_KEY: is not a setting; did you mean DATA_API_AUTH_KEYS (auth.keys)?",
				"DATA_API_DIALOGUES_MAXPENDING: is not a setting; did you mean DATA_API_DIALOGUES_MAX_PENDING (dialogues.max_pending)?",
				"DATA_API_LOGLEVEL: is not a setting; did you mean DATA_API_LOG_LEVEL (log.level)?",
				"DATA_API_SERVER: is not a setting; did you mean DATA_API_SERVER_ADDR (server.addr)?",
			},
		},
		{
			name:    "unknown field in auth keys JSON",
			environ: []string{`DATA_API_AUTH_KEYS=[{"name":"bot","key":"0123456789abcdef","roles":["ingest"],"rolez":["admin"]}]`},
			want:    []string{"auth.keys[0].rolez: unknown key"},
		},
		{
			name:    "oidc roles not JSON",
			environ: []string{"DATA_API_AUTH_OIDC_ROLES_ADMIN=dpo"},
			want:    []string{"auth.oidc.roles.admin: DATA_API_AUTH_OIDC_ROLES_ADMIN must be a JSON list: invalid character 'd' looking for beginning of value"},
		},
		{
			name: "oidc in YAML",
			file: "auth:\n  oidc:\n    issuer: http://keycloak.example.com/realms/acme\n    roles:\n      admin: [dpo]\n",
			want: []string{
				`auth.oidc.issuer: must be an https URL (http only to a loopback host), got "http://keycloak.example.com/realms/acme"`,
				"auth.oidc.audience: must be set with auth.oidc.issuer: the aud value the tokens are issued for, e.g. data-api",
			},
		},
		{
			name:    "unknown field in encryption keys JSON",
			environ: []string{`DATA_API_ENCRYPTION_KEYS=[{"id":"k1","secret":"` + masterKey1 + `"}]`},
			want: []string{
				"encryption.keys[0].secret: unknown key",
				"encryption.keys[0]: must set one of key (the base64 of 32 random bytes) and file (the path of a file holding it)",
				`encryption.active: must be the id of the key of encryption.keys that wraps new dialogue keys (one of k1), got ""`,
			},
		},
		{
			name:    "encryption keys not JSON",
			environ: []string{"DATA_API_ENCRYPTION_KEYS=k1:" + masterKey1},
			want:    []string{"encryption.keys: DATA_API_ENCRYPTION_KEYS must be a JSON list: invalid character 'k' looking for beginning of value"},
		},
		{
			name:    "auth keys not JSON",
			environ: []string{"DATA_API_AUTH_KEYS=bot:secret"},
			want:    []string{"auth.keys: DATA_API_AUTH_KEYS must be a JSON list: invalid character 'b' looking for beginning of value"},
		},
		{
			name:    "every problem at once",
			file:    "dialogues:\n  ttl: 30\n  shards: 6\nlog:\n  levle: debug\n",
			environ: []string{"DATA_API_LIMITS_MAX_BODY_BYTES=100", "DATA_API_SERVER_ADDR=nope"},
			want: []string{
				"log.levle: unknown key",
				"dialogues.ttl: must be a duration with a unit (e.g. 30s, 5m, 1h), got 30",
				`server.addr: must be host:port, e.g. :8080, got "nope"`,
				"dialogues.shards: must be a power of two between 1 and 65536, got 6",
				"limits.max_body_bytes: must be more than limits.max_text_bytes (8192), got 100",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), tt.file)
			}
			_, err := Load(path, tt.environ)
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("got problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestValidate(t *testing.T) {
	const sum = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08" // SHA-256 of "test"
	botSum := fmt.Sprintf("%x", sha256.Sum256([]byte("0123456789abcdef")))
	valid := []Key{
		{Name: "bot", Key: "0123456789abcdef", Roles: []string{"ingest"}},
		{Name: "analyst", SHA256: sum, Roles: []string{"analyst", "admin"}},
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("got nil for the zero Config, want problems")
	}
	tests := []struct {
		name   string
		modify func(*Config)
		key    string // "" for a valid config
		detail string
	}{
		{"defaults", func(*Config) {}, "", ""},
		{"valid keys", func(c *Config) { c.Auth.Keys = valid }, "", ""},
		{"addr with host", func(c *Config) { c.Server.Addr = "localhost:80" }, "", ""},
		{"addr without port", func(c *Config) { c.Server.Addr = "localhost" }, "server.addr", `must be host:port, e.g. :8080, got "localhost"`},
		{"zero read header timeout", func(c *Config) { c.Server.ReadHeaderTimeout = 0 }, "server.read_header_timeout", "must be positive, got 0s"},
		{"negative read timeout", func(c *Config) { c.Server.ReadTimeout = -time.Second }, "server.read_timeout", "must be positive, got -1s"},
		{"zero write timeout", func(c *Config) { c.Server.WriteTimeout = 0 }, "server.write_timeout", "must be positive, got 0s"},
		{"zero idle timeout", func(c *Config) { c.Server.IdleTimeout = 0 }, "server.idle_timeout", "must be positive, got 0s"},
		{"negative drain delay", func(c *Config) { c.Server.DrainDelay = -time.Second }, "server.drain_delay", "must not be negative, got -1s"},
		{"zero shutdown grace", func(c *Config) { c.Server.ShutdownGrace = 0 }, "server.shutdown_grace", "must be positive, got 0s"},
		{"zero export stall timeout", func(c *Config) { c.Server.ExportStallTimeout = 0 }, "server.export_stall_timeout", "must be positive, got 0s"},
		{"postgres", func(c *Config) {
			c.Database.Driver = "postgres"
			c.Encryption = ring1
			c.Journal.Dir = "/var/lib/data-api-journal"
		}, "", ""},
		{"postgres without a master key", func(c *Config) { c.Database.Driver = "postgres"; c.Journal.Dir = "/j" }, "encryption.keys",
			"must hold at least one master key with database.driver postgres (only SQLite generates one), e.g. [{id: k1, key: <openssl rand -base64 32>}]"},
		{"postgres without a journal", func(c *Config) { c.Database.Driver = "postgres"; c.Encryption = ring1 }, "journal.dir",
			"must name the deletion journal's directory with database.driver postgres, shared by every instance (e.g. a ReadWriteMany volume): without it a restored backup brings back what was deleted since"},
		{"journal kept less than a day", func(c *Config) { c.Journal.Keep = 23 * time.Hour }, "journal.keep", "must be at least 24h0m0s (as long as the oldest backup kept), got 23h0m0s"},
		{"unknown driver", func(c *Config) { c.Database.Driver = "mysql" }, "database.driver", `must be one of sqlite, postgres, got "mysql"`},
		{"empty dsn", func(c *Config) { c.Database.DSN = "" }, "database.dsn", "must not be empty"},
		{"zero readers", func(c *Config) { c.Database.MaxReaders = 0 }, "database.max_readers", "must be positive, got 0"},
		{"zero commit batch", func(c *Config) { c.Database.CommitBatch = 0 }, "database.commit_batch", "must be positive, got 0"},
		{"zero exports", func(c *Config) { c.Database.MaxExports = 0 }, "database.max_exports", "must be positive, got 0"},
		{"unknown store", func(c *Config) { c.Dialogues.Store = "etcd" }, "dialogues.store", `must be one of memory, redis, got "etcd"`},
		{"redis store without a redis URL", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.URL = "127.0.0.1:6379" }, "redis.url", `must be a redis:// or rediss:// URL when dialogues.store is redis, got "127.0.0.1:6379"`},
		{"redis store with zero take timeout", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.TakeTimeout = 0 }, "redis.take_timeout", "must be positive, got 0s"},
		{"sentinel", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.Sentinel = sentinel }, "", ""},
		{"sentinel leaves the url unused", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.Sentinel = sentinel; c.Redis.URL = "" }, "", ""},
		{"sentinel without addrs", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.Sentinel = Sentinel{Master: "m"} }, "redis.sentinel.addrs",
			"must list the sentinels as host:port when redis.sentinel.master is set, e.g. [10.0.0.1:26379, 10.0.0.2:26379, 10.0.0.3:26379]"},
		{"sentinel addrs without master", func(c *Config) {
			c.Dialogues.Store = "redis"
			c.Redis.Sentinel = sentinel
			c.Redis.Sentinel.Master = ""
		}, "redis.sentinel.master",
			"must be set when redis.sentinel.addrs or a Sentinel password is: the name the sentinels know the primary by"},
		{"sentinel password without master", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.Sentinel.RedisPassword = "4e2f8a1c9b" }, "redis.sentinel.master",
			"must be set when redis.sentinel.addrs or a Sentinel password is: the name the sentinels know the primary by"},
		{"sentinel addr without port", func(c *Config) {
			c.Dialogues.Store = "redis"
			c.Redis.Sentinel = sentinel
			c.Redis.Sentinel.Addrs = []string{"10.0.0.1:26379", "10.0.0.2"}
		}, "redis.sentinel.addrs[1]", `must be host:port, e.g. 10.0.0.1:26379, got "10.0.0.2"`},
		{"sentinel negative db", func(c *Config) { c.Dialogues.Store = "redis"; c.Redis.Sentinel = sentinel; c.Redis.Sentinel.DB = -1 }, "redis.sentinel.db", "must not be negative, got -1"},
		{"zero ttl", func(c *Config) { c.Dialogues.TTL = 0 }, "dialogues.ttl", "must be positive, got 0s"},
		{"zero sweep interval", func(c *Config) { c.Dialogues.SweepInterval = 0 }, "dialogues.sweep_interval", "must be positive, got 0s"},
		{"zero max pending", func(c *Config) { c.Dialogues.MaxPending = 0 }, "dialogues.max_pending", "must be positive, got 0"},
		{"zero max pending bytes", func(c *Config) { c.Dialogues.MaxBytes = 0 }, "dialogues.max_pending_bytes", "must be positive, got 0"},
		{"zero max messages", func(c *Config) { c.Dialogues.MaxMessages = -1 }, "dialogues.max_messages", "must be positive, got -1"},
		{"one shard", func(c *Config) { c.Dialogues.Shards = 1 }, "", ""},
		{"65536 shards", func(c *Config) { c.Dialogues.Shards = 65536 }, "", ""},
		{"zero shards", func(c *Config) { c.Dialogues.Shards = 0 }, "dialogues.shards", "must be a power of two between 1 and 65536, got 0"},
		{"six shards", func(c *Config) { c.Dialogues.Shards = 6 }, "dialogues.shards", "must be a power of two between 1 and 65536, got 6"},
		{"too many shards", func(c *Config) { c.Dialogues.Shards = 1 << 17 }, "dialogues.shards", "must be a power of two between 1 and 65536, got 131072"},
		{"zero text bytes", func(c *Config) { c.Limits.MaxTextBytes = 0 }, "limits.max_text_bytes", "must be positive, got 0"},
		{"body not above text", func(c *Config) { c.Limits.MaxBodyBytes = 8192 }, "limits.max_body_bytes", "must be more than limits.max_text_bytes (8192), got 8192"},
		{"retention max age set", func(c *Config) { c.Retention.MaxAge = 24 * time.Hour }, "", ""},
		{"negative retention max age", func(c *Config) { c.Retention.MaxAge = -time.Hour }, "retention.max_age", "must not be negative (0s keeps messages forever), got -1h0m0s"},
		{"zero retention interval", func(c *Config) { c.Retention.Interval = 0 }, "retention.interval", "must be positive, got 0s"},
		{"zero retention batch", func(c *Config) { c.Retention.BatchSize = 0 }, "retention.batch_size", "must be positive, got 0"},
		{"unknown log level", func(c *Config) { c.Log.Level = "INFO" }, "log.level", `must be one of debug, info, warn, error, got "INFO"`},
		{"key without name", func(c *Config) { c.Auth.Keys = []Key{{Key: "0123456789abcdef", Roles: []string{"admin"}}} }, "auth.keys[0].name", "must not be empty"},
		{"duplicate name", func(c *Config) {
			c.Auth.Keys = append(valid[:1:1], Key{Name: "bot", Key: "fedcba9876543210", Roles: []string{"admin"}})
		}, "auth.keys[1].name", `"bot" is already the name of auth.keys[0]`},
		{"key and sha256", func(c *Config) {
			c.Auth.Keys = []Key{{Name: "a", Key: "0123456789abcdef", SHA256: sum, Roles: []string{"admin"}}}
		}, "auth.keys[0]", "must set only one of key and sha256, got both"},
		{"neither key nor sha256", func(c *Config) { c.Auth.Keys = []Key{{Name: "a", Roles: []string{"admin"}}} }, "auth.keys[0]", "must set one of key (the secret) and sha256 (its SHA-256 in hex)"},
		{"short key", func(c *Config) { c.Auth.Keys = []Key{{Name: "a", Key: "s3kr1t", Roles: []string{"admin"}}} }, "auth.keys[0].key", "must be at least 16 characters, got 6"},
		{"short sha256", func(c *Config) { c.Auth.Keys = []Key{{Name: "a", SHA256: sum[:63], Roles: []string{"admin"}}} }, "auth.keys[0].sha256", "must be 64 hex characters (a SHA-256), got 63 characters"},
		{"sha256 not hex", func(c *Config) { c.Auth.Keys = []Key{{Name: "a", SHA256: "g" + sum[1:], Roles: []string{"admin"}}} }, "auth.keys[0].sha256", "must be 64 hex characters (a SHA-256), got 64 characters"},
		{"same secret as key and sha256", func(c *Config) {
			c.Auth.Keys = append(slices.Clone(valid), Key{Name: "again", SHA256: botSum, Roles: []string{"admin"}})
		}, "auth.keys[2]", "has the same secret as auth.keys[0]"},
		{"same sha256 in another case", func(c *Config) {
			c.Auth.Keys = append(slices.Clone(valid), Key{Name: "again", SHA256: strings.ToLower(sum), Roles: []string{"admin"}})
		}, "auth.keys[2]", "has the same secret as auth.keys[1]"},
		{"no roles", func(c *Config) { c.Auth.Keys = []Key{{Name: "a", Key: "0123456789abcdef"}} }, "auth.keys[0].roles", "must list at least one of ingest, analyst, admin"},
		{"unknown role", func(c *Config) {
			c.Auth.Keys = []Key{{Name: "a", Key: "0123456789abcdef", Roles: []string{"ingest", "root"}}}
		}, "auth.keys[0].roles", `must list only ingest, analyst, admin, got "root"`},
		{"key named like a token's caller", func(c *Config) {
			c.Auth.Keys = []Key{{Name: "oidc:alice", Key: "0123456789abcdef", Roles: []string{"admin"}}}
		}, "auth.keys[0].name", `must not start with "oidc:", which names the callers of tokens in the ledger, got "oidc:alice"`},
		{"key named oidc without colon", func(c *Config) {
			c.Auth.Keys = []Key{{Name: "oidc-bridge", Key: "0123456789abcdef", Roles: []string{"admin"}}}
		}, "", ""},
		{"valid oidc", func(c *Config) { c.Auth.OIDC = validOIDC }, "", ""},
		{"oidc beside keys", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.Keys = valid }, "", ""},
		{"oidc on loopback http", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "http://127.0.0.1:8180/realms/acme" }, "", ""},
		{"oidc on localhost http", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "http://localhost:8180/realms/acme" }, "", ""},
		{"oidc on IPv6 loopback http", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "http://[::1]:8180" }, "", ""},
		{"oidc issuer with trailing slash", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "https://acme.eu.auth0.com/" }, "", ""},
		{"oidc scope claim", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.RolesClaim = "scope" }, "", ""},
		{"oidc URL-named claim", func(c *Config) {
			c.Auth.OIDC = validOIDC
			c.Auth.OIDC.RolesClaim = "https://data-api.example.com/roles"
		}, "", ""},
		{"oidc one value for two roles", func(c *Config) {
			c.Auth.OIDC = validOIDC
			c.Auth.OIDC.Roles = OIDCRoles{Analyst: []string{"dpo"}, Admin: []string{"dpo"}}
		}, "", ""},
		{"oidc zero leeway", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Leeway = 0 }, "", ""},
		{"oidc audience without issuer", func(c *Config) { c.Auth.OIDC.Audience = "data-api" }, "auth.oidc.issuer", "must be set when auth.oidc.audience or auth.oidc.roles is"},
		{"oidc roles without issuer", func(c *Config) { c.Auth.OIDC.Roles.Admin = []string{"dpo"} }, "auth.oidc.issuer", "must be set when auth.oidc.audience or auth.oidc.roles is"},
		{"oidc plain http", func(c *Config) {
			c.Auth.OIDC = validOIDC
			c.Auth.OIDC.Issuer = "http://keycloak.example.com/realms/acme"
		}, "auth.oidc.issuer", `must be an https URL (http only to a loopback host), got "http://keycloak.example.com/realms/acme"`},
		{"oidc http to a host named like loopback", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "http://127.0.0.1.nip.io/realms/acme" }, "auth.oidc.issuer", `must be an https URL (http only to a loopback host), got "http://127.0.0.1.nip.io/realms/acme"`},
		{"oidc issuer without scheme", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "keycloak.example.com/realms/acme" }, "auth.oidc.issuer", `must be an absolute URL such as https://keycloak.example.com/realms/acme, got "keycloak.example.com/realms/acme"`},
		{"oidc issuer with query", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "https://idp.example.com/?tenant=a" }, "auth.oidc.issuer", `must have no query or fragment, got "https://idp.example.com/?tenant=a"`},
		{"oidc issuer with empty fragment", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "https://idp.example.com/#" }, "auth.oidc.issuer", `must have no query or fragment, got "https://idp.example.com/#"`},
		{"oidc ftp issuer", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Issuer = "ftp://idp.example.com" }, "auth.oidc.issuer", `must be an https URL (http only to a loopback host), got "ftp://idp.example.com"`},
		{"oidc without audience", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Audience = "" }, "auth.oidc.audience", "must be set with auth.oidc.issuer: the aud value the tokens are issued for, e.g. data-api"},
		{"oidc empty roles claim", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.RolesClaim = "" }, "auth.oidc.roles_claim", `must be a claim name or a dotted path such as realm_access.roles, got ""`},
		{"oidc roles claim with an empty step", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.RolesClaim = "realm_access..roles" }, "auth.oidc.roles_claim", `must be a claim name or a dotted path such as realm_access.roles, got "realm_access..roles"`},
		{"oidc roles claim ending with a dot", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.RolesClaim = "roles." }, "auth.oidc.roles_claim", `must be a claim name or a dotted path such as realm_access.roles, got "roles."`},
		{"oidc no role mapped", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Roles = OIDCRoles{} }, "auth.oidc.roles", "must map at least one claim value to ingest, analyst or admin"},
		{"oidc empty role value", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Roles.Admin = []string{""} }, "auth.oidc.roles.admin", "must not list an empty value"},
		{"oidc negative leeway", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Leeway = -time.Second }, "auth.oidc.leeway", "must be between 0s and 5m0s, got -1s"},
		{"oidc leeway too long", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.Leeway = 5*time.Minute + time.Second }, "auth.oidc.leeway", "must be between 0s and 5m0s, got 5m1s"},
		{"oidc zero refresh interval", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.RefreshInterval = 0 }, "auth.oidc.refresh_interval", "must be positive, got 0s"},
		{"oidc zero fetch timeout", func(c *Config) { c.Auth.OIDC = validOIDC; c.Auth.OIDC.FetchTimeout = 0 }, "auth.oidc.fetch_timeout", "must be positive, got 0s"},
		{"oidc leeway checked without issuer", func(c *Config) { c.Auth.OIDC.Leeway = -time.Hour }, "auth.oidc.leeway", "must be between 0s and 5m0s, got -1h0m0s"},
		{"allowed origins", func(c *Config) {
			c.Server.AllowedOrigins = []string{"https://console.example.com", "http://localhost:3000", "http://[::1]:8081"}
		}, "", ""},
		{"allowed origin with a path", func(c *Config) { c.Server.AllowedOrigins = []string{"https://console.example.com/"} }, "server.allowed_origins[0]",
			`must be an origin, scheme://host[:port] in lower case with nothing after, as browsers send it in Origin, e.g. https://console.example.com, got "https://console.example.com/"`},
		{"allowed origin in upper case", func(c *Config) { c.Server.AllowedOrigins = []string{"https://Console.example.com"} }, "server.allowed_origins[0]",
			`must be an origin, scheme://host[:port] in lower case with nothing after, as browsers send it in Origin, e.g. https://console.example.com, got "https://Console.example.com"`},
		{"allowed origin without scheme", func(c *Config) { c.Server.AllowedOrigins = []string{"console.example.com"} }, "server.allowed_origins[0]",
			`must be an origin, scheme://host[:port] in lower case with nothing after, as browsers send it in Origin, e.g. https://console.example.com, got "console.example.com"`},
		{"allowed origin null", func(c *Config) { c.Server.AllowedOrigins = []string{"null"} }, "server.allowed_origins[0]",
			`must not be "null", which any sandboxed page or local file sends`},
		{"allowed origin wildcard", func(c *Config) { c.Server.AllowedOrigins = []string{"*"} }, "server.allowed_origins[0]",
			`must not be "*": list each origin allowed`},
		{"open", func(c *Config) { c.Auth.Open = true }, "", ""},
		{"open with keys", func(c *Config) { c.Auth.Open = true; c.Auth.Keys = valid }, "auth.open",
			"must be false when auth.keys or auth.oidc.issuer is set: with credentials configured, every endpoint but the probes needs one"},
		{"open with an issuer", func(c *Config) { c.Auth.Open = true; c.Auth.OIDC = validOIDC }, "auth.open",
			"must be false when auth.keys or auth.oidc.issuer is set: with credentials configured, every endpoint but the probes needs one"},
		{"cursor secret", func(c *Config) { c.Cursor.Secret = "0123456789abcdef" }, "", ""},
		{"short cursor secret", func(c *Config) { c.Cursor.Secret = "short" }, "cursor.secret", "must be empty or at least 16 characters, got 5"},
		{"key ring", func(c *Config) {
			c.Encryption = Encryption{Active: "k2", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}, {ID: "k2", File: "/run/secrets/k2"}}}
		}, "", ""},
		{"generated key elsewhere", func(c *Config) { c.Encryption.KeyFile = "/var/lib/data-api/key" }, "", ""},
		{"master key without id", func(c *Config) {
			c.Encryption = Encryption{Active: "", Keys: []EncryptionKey{{Key: masterKey1}}}
		}, "encryption.keys[0].id", `must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got ""`},
		{"master key id with a space", func(c *Config) {
			c.Encryption = Encryption{Active: "k 1", Keys: []EncryptionKey{{ID: "k 1", Key: masterKey1}}}
		}, "encryption.keys[0].id", `must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got "k 1"`},
		{"master key id twice", func(c *Config) {
			c.Encryption = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}, {ID: "k1", Key: masterKey2}}}
		}, "encryption.keys[1].id", `"k1" is already the id of encryption.keys[0]`},
		{"master key and file", func(c *Config) {
			c.Encryption = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1, File: "/k1"}}}
		}, "encryption.keys[0]", "must set only one of key and file, got both"},
		{"master key short", func(c *Config) {
			c.Encryption = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1[:40] + "="}}}
		}, "encryption.keys[0].key", "must be the base64 of 32 random bytes (openssl rand -base64 32); got 41 characters that do not decode to 32 bytes"},
		{"master key not base64", func(c *Config) {
			c.Encryption = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: "0123456789abcdef0123456789abcdef"}}}
		}, "encryption.keys[0].key", "must be the base64 of 32 random bytes (openssl rand -base64 32); got 32 characters that do not decode to 32 bytes"},
		{"no active master key", func(c *Config) {
			c.Encryption = Encryption{Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}, {ID: "k2", Key: masterKey2}}}
		}, "encryption.active", `must be the id of the key of encryption.keys that wraps new dialogue keys (one of k1, k2), got ""`},
		{"active master key not in the ring", func(c *Config) {
			c.Encryption = Encryption{Active: "k3", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}}}
		}, "encryption.active", `must be the id of the key of encryption.keys that wraps new dialogue keys (one of k1), got "k3"`},
		{"active master key without a ring", func(c *Config) { c.Encryption.Active = "k1" }, "encryption.active", `must be empty when encryption.keys is, got "k1"`},
		{"generated key file beside a ring", func(c *Config) {
			c.Encryption = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}}, KeyFile: "/k"}
		}, "encryption.key_file", "is where the key generated without encryption.keys is kept; with encryption.keys, give a key's file as encryption.keys[].file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := want
			tt.modify(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if wantP := []Problem{{Key: tt.key, Detail: tt.detail}}; !reflect.DeepEqual(e.Problems, wantP) {
				t.Errorf("got %+v, want %+v", e.Problems, wantP)
			}
		})
	}
}

// sentinel is a Sentinel configuration that passes validation.
var sentinel = Sentinel{Master: "data-api", Addrs: []string{"10.0.0.1:26379", "10.0.0.2:26379", "[fd00::3]:26379"}, Password: "9d1c0e4b7a", RedisPassword: "4e2f8a1c9b"}

// TestValidateRefusesPlaceholderSecrets: a secret left as a template's or
// this repository's deployment files' stand-in stops the service, naming
// the key and never the value.
func TestValidateRefusesPlaceholderSecrets(t *testing.T) {
	const detail = "holds a placeholder %s (such as change-me… or placeholder-for-…), not a secret; set a random one, e.g. openssl rand -hex 32"
	tests := []struct {
		secret string
		modify func(c *Config, secret string)
		key    string
		what   string
	}{
		{"change-me-to-32-random-characters", func(c *Config, s string) { c.Cursor.Secret = s }, "cursor.secret", "secret"},
		{"placeholder-for-cursor-secret", func(c *Config, s string) { c.Cursor.Secret = s }, "cursor.secret", "secret"},
		{"CHANGEME-0123456789", func(c *Config, s string) { c.Cursor.Secret = s }, "cursor.secret", "secret"},
		{"xxxxxxxxxxxxxxxxxxxx", func(c *Config, s string) { c.Cursor.Secret = s }, "cursor.secret", "secret"},
		{"<openssl rand -hex 32>", func(c *Config, s string) { c.Cursor.Secret = s }, "cursor.secret", "secret"},
		{"placeholder-for-auth-keys.json", func(c *Config, s string) {
			c.Auth.Keys = []Key{{Name: "bot", Key: "0123456789abcdef", Roles: []string{"ingest"}}, {Name: "dpo", Key: s, Roles: []string{"admin"}}}
		}, "auth.keys[1].key", "key"},
		{"change_me_please_now", func(c *Config, s string) {
			c.Auth.Keys = []Key{{Name: "bot", Key: s, Roles: []string{"ingest"}}}
		}, "auth.keys[0].key", "key"},
		{"secret", func(c *Config, s string) {
			c.Database.Driver = "postgres"
			c.Database.DSN = "postgres://data_api:" + s + "@db:5432/data_api?sslmode=require"
			c.Encryption = ring1
			c.Journal.Dir = "/var/lib/data-api-journal"
		}, "database.dsn", "password"},
		{"change-me", func(c *Config, s string) {
			c.Database.Driver = "postgres"
			c.Database.DSN = "postgres://db:5432/data_api?user=data_api&password=" + s
			c.Encryption = ring1
			c.Journal.Dir = "/var/lib/data-api-journal"
		}, "database.dsn", "password"},
		{"Password", func(c *Config, s string) {
			c.Database.Driver = "postgres"
			c.Database.DSN = "host=db user=data_api password='" + s + "' dbname=data_api"
			c.Encryption = ring1
			c.Journal.Dir = "/var/lib/data-api-journal"
		}, "database.dsn", "password"},
		{"placeholder-for-redis-url", func(c *Config, s string) {
			c.Dialogues.Store = "redis"
			c.Redis.URL = "redis://:" + s + "@cache:6379/0"
		}, "redis.url", "password"},
		{"changeme", func(c *Config, s string) {
			c.Dialogues.Store = "redis"
			c.Redis.Sentinel = sentinel
			c.Redis.Sentinel.Password = s
		}, "redis.sentinel.password", "password"},
		{"xxx", func(c *Config, s string) {
			c.Dialogues.Store = "redis"
			c.Redis.Sentinel = sentinel
			c.Redis.Sentinel.RedisPassword = s
		}, "redis.sentinel.redis_password", "password"},
	}
	for _, tt := range tests {
		t.Run(tt.secret, func(t *testing.T) {
			c := want
			tt.modify(&c, tt.secret)
			err := c.Validate()
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *Error", err)
			}
			// The whole problem is pinned: it names the key, not the value.
			if wantP := []Problem{{Key: tt.key, Detail: fmt.Sprintf(detail, tt.what)}}; !reflect.DeepEqual(e.Problems, wantP) {
				t.Errorf("got %+v, want %+v", e.Problems, wantP)
			}
		})
	}
	// Real secrets that merely contain a placeholder's word pass.
	c := want
	c.Cursor.Secret = "my-secret-is-not-a-placeholder-xxx"
	c.Database.Driver = "postgres"
	c.Database.DSN = "postgres://data_api:3f9a0c1e7b2d@db:5432/data_api"
	c.Encryption = ring1
	c.Journal.Dir = "/var/lib/data-api-journal"
	c.Auth.Keys = []Key{{Name: "bot", Key: "a-secret-0123456789", Roles: []string{"ingest"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("real secrets refused: %v", err)
	}
	// A SQLite path is no DSN with a password.
	c = want
	c.Database.DSN = "/srv/password=secret/data-api.db"
	if err := c.Validate(); err != nil {
		t.Errorf("a SQLite path refused: %v", err)
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	c := want
	c.Server.Addr = ""
	c.Database.Driver = "oracle"
	c.Dialogues.Shards = 6
	c.Log.Level = "trace"
	c.Auth.Keys = []Key{{Name: "", Key: "short", SHA256: "", Roles: nil}}
	got := problemKeys(t, c.Validate())
	wantKeys := []string{"server.addr", "database.driver", "dialogues.shards", "log.level", "auth.keys[0].name", "auth.keys[0].key", "auth.keys[0].roles"}
	if !slices.Equal(got, wantKeys) {
		t.Errorf("got problems with %q, want %q", got, wantKeys)
	}
	if err := c.Validate(); strings.Count(err.Error(), "\n") != len(wantKeys)-1 {
		t.Errorf("got Error()\n%s\nwant one line per problem", err)
	}
}

func TestRedacted(t *testing.T) {
	c := want
	c.Auth.Keys = []Key{
		{Name: "bot", Key: "0123456789abcdef", Roles: []string{"ingest"}},
		{Name: "ana", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Roles: []string{"analyst"}},
	}
	c.Cursor.Secret = "a-cursor-secret-of-32-characters"
	c.Database.DSN = "postgres://app:s3cret@db:5432/data?sslmode=disable"
	c.Redis.URL = "redis://:r3dis@cache:6379/0"
	c.Encryption = Encryption{Active: "k1", Keys: []EncryptionKey{{ID: "k1", Key: masterKey1}, {ID: "k2", File: "/run/secrets/k2"}}}
	orig := c
	origKeys := slices.Clone(c.Auth.Keys)
	origMasterKeys := slices.Clone(c.Encryption.Keys)

	r := c.Redacted()
	wantKeys := []Key{
		{Name: "bot", Key: "[redacted]", Roles: []string{"ingest"}},
		{Name: "ana", SHA256: "[redacted]", Roles: []string{"analyst"}},
	}
	if !reflect.DeepEqual(r.Auth.Keys, wantKeys) {
		t.Errorf("got keys %+v, want %+v", r.Auth.Keys, wantKeys)
	}
	if r.Cursor.Secret != "[redacted]" {
		t.Errorf("got cursor.secret %q, want [redacted]", r.Cursor.Secret)
	}
	if want := "postgres://app:xxxxx@db:5432/data?sslmode=disable"; r.Database.DSN != want {
		t.Errorf("got dsn %q, want %q", r.Database.DSN, want)
	}
	if want := "redis://:xxxxx@cache:6379/0"; r.Redis.URL != want {
		t.Errorf("got redis.url %q, want %q", r.Redis.URL, want)
	}
	wantMasterKeys := []EncryptionKey{{ID: "k1", Key: "[redacted]"}, {ID: "k2", File: "/run/secrets/k2"}}
	if !reflect.DeepEqual(r.Encryption.Keys, wantMasterKeys) {
		t.Errorf("got master keys %+v, want %+v", r.Encryption.Keys, wantMasterKeys)
	}
	if !reflect.DeepEqual(c, orig) || !reflect.DeepEqual(c.Auth.Keys, origKeys) || !reflect.DeepEqual(c.Encryption.Keys, origMasterKeys) {
		t.Errorf("Redacted changed its receiver: got %+v, want %+v", c, orig)
	}
	s := want
	s.Redis.Sentinel = sentinel
	if got := s.Redacted().Redis.Sentinel; got.Password != "[redacted]" || got.RedisPassword != "[redacted]" || !slices.Equal(got.Addrs, sentinel.Addrs) {
		t.Errorf("got sentinel %+v, want its passwords redacted", got)
	}
	if r := want.Redacted(); !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v for a config without secrets, want it unchanged", r)
	}
}

// TestLogValue: the configuration logs redacted, keyed as in the YAML file,
// with durations as Go writes them.
func TestLogValue(t *testing.T) {
	c := want
	c.Cursor.Secret = "a-cursor-secret-of-32-characters"
	c.Redis.Sentinel = sentinel
	c.Auth.Keys = []Key{{Name: "bot", Key: "0123456789abcdef", Roles: []string{"ingest"}}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	var line struct{ Config map[string]map[string]any }
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		section, key string
		want         any
	}{
		{"dialogues", "ttl", "30m0s"},
		{"server", "read_header_timeout", "5s"},
		{"server", "drain_delay", "0s"},
		{"dialogues", "max_pending", 100000.0},
		{"cursor", "secret", "[redacted]"},
	} {
		if got := line.Config[tt.section][tt.key]; got != tt.want {
			t.Errorf("%s.%s logged as %#v, want %#v", tt.section, tt.key, got, tt.want)
		}
	}
	for _, secret := range []string{c.Cursor.Secret, sentinel.Password, sentinel.RedisPassword, "0123456789abcdef"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the log holds a secret: %s", buf.String())
		}
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"data/data-api.db", "data/data-api.db"},
		{"file:data.db?_pragma=busy_timeout(5000)", "file:data.db?_pragma=busy_timeout(5000)"},
		{"postgres://app@db/data", "postgres://app@db/data"},
		{"postgres://app:pw@db/data", "postgres://app:xxxxx@db/data"},
		{"postgresql://app:pw@/data?host=/run/postgresql", "postgresql://app:xxxxx@/data?host=/run/postgresql"},
		{"postgres://db/data?user=app&password=pw", "postgres://db/data?password=xxxxx&user=app"},
		{"postgres://db/data?sslpassword=pw", "postgres://db/data?sslpassword=xxxxx"},
		{"host=db user=app password=pw dbname=data", "host=db user=app password=xxxxx dbname=data"},
		{"host=db password = 'p w\\' x' dbname=data", "host=db password = xxxxx dbname=data"},
		{"host=db PASSWORD=pw", "host=db PASSWORD=xxxxx"},
		{"postgres://app:p%zz@db/data", "[redacted]"},
	}
	for _, tt := range tests {
		if got := redactDSN(tt.dsn); got != tt.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestDefaultIsLoadWithNothingGiven(t *testing.T) {
	inEmptyDir(t)
	loaded, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := Default(); !reflect.DeepEqual(got, loaded) {
		t.Fatalf("Default() = %+v, want %+v", got, loaded)
	}
}

func TestEncryptionKeyBytes(t *testing.T) {
	if got := (EncryptionKey{ID: "k1", Key: masterKey1}).Bytes(); string(got) != "0123456789abcdef0123456789abcdef" {
		t.Errorf("Bytes() = %q, want the 32 bytes of the base64", got)
	}
	if got := (EncryptionKey{ID: "k1", File: "/k1"}).Bytes(); len(got) != 0 {
		t.Errorf("Bytes() of a key in a file = %q, want none", got)
	}
}

func TestKeyDigest(t *testing.T) {
	want := sha256.Sum256([]byte("test"))
	for _, k := range []Key{
		{Key: "test"},
		{SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{SHA256: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"},
	} {
		if got := k.Digest(); got != want {
			t.Errorf("%+v.Digest() = %x, want %x", k, got, want)
		}
	}
}

func TestListenAddr(t *testing.T) {
	keys := []Key{{Name: "bot", Key: "0123456789abcdef", Roles: []string{"ingest"}}}
	for _, tc := range []struct {
		addr string
		auth Auth
		want string
	}{
		// Without credentials nor auth.open: loopback only.
		{":8080", Auth{}, "127.0.0.1:8080"},
		{"0.0.0.0:9000", Auth{}, "127.0.0.1:9000"},
		{"[::]:8080", Auth{}, "127.0.0.1:8080"},
		{"192.0.2.7:8080", Auth{}, "127.0.0.1:8080"},
		{"data-api.example.com:8080", Auth{}, "127.0.0.1:8080"},
		{"127.0.0.1:8080", Auth{}, "127.0.0.1:8080"},
		{"127.0.0.2:8080", Auth{}, "127.0.0.2:8080"},
		{"[::1]:8080", Auth{}, "[::1]:8080"},
		{"localhost:8080", Auth{}, "localhost:8080"},
		// With credentials, or explicitly open: as configured.
		{":8080", Auth{Keys: keys}, ":8080"},
		{":8080", Auth{OIDC: validOIDC}, ":8080"},
		{":8080", Auth{Open: true}, ":8080"},
	} {
		c := want
		c.Server.Addr, c.Auth = tc.addr, tc.auth
		if got := c.ListenAddr(); got != tc.want {
			t.Errorf("%s with %+v: got %s, want %s", tc.addr, tc.auth, got, tc.want)
		}
	}
}

// TestJournalDir: the deletion journal lies beside a SQLite database unless
// placed elsewhere; PostgreSQL has no default (Validate requires one).
func TestJournalDir(t *testing.T) {
	c := want
	if got := c.JournalDir(); got != "data/data-api.db.deletions" {
		t.Errorf("SQLite by default: got %q", got)
	}
	c.Journal.Dir = "/mnt/journal"
	if got := c.JournalDir(); got != "/mnt/journal" {
		t.Errorf("SQLite with journal.dir: got %q", got)
	}
	c.Journal.Dir = ""
	c.Database.Driver = "postgres"
	if got := c.JournalDir(); got != "" {
		t.Errorf("PostgreSQL without journal.dir: got %q, want none", got)
	}
}
