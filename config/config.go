// Package config loads Data API's settings: the defaults embedded from
// data-api.yaml, then an optional YAML file, then DATA_API_* environment
// variables. It is the only package that imports Viper.
package config

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// DefaultPath is the file Load reads when given no path, if it exists,
// relative to the working directory.
const DefaultPath = "config/data-api.yaml"

// defaultYAML holds every key with its default value: the single source of
// the defaults, so that they and the committed file cannot drift apart.
//
//go:embed data-api.yaml
var defaultYAML []byte

// Config is every setting of the service. The YAML keys are the snake_case
// paths of its fields, e.g. dialogues.max_pending.
type Config struct {
	Server    Server    `mapstructure:"server"`
	Database  Database  `mapstructure:"database"`
	Dialogues Dialogues `mapstructure:"dialogues"`
	Redis     Redis     `mapstructure:"redis"`
	Limits    Limits    `mapstructure:"limits"`
	Retention Retention `mapstructure:"retention"`
	Log       Log       `mapstructure:"log"`
	Auth      Auth      `mapstructure:"auth"`
	Cursor    Cursor    `mapstructure:"cursor"`

	Encryption Encryption `mapstructure:"encryption"`
	Journal    Journal    `mapstructure:"journal"`
}

// Server configures the HTTP server.
type Server struct {
	Addr              string        `mapstructure:"addr"`
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`
	WriteTimeout      time.Duration `mapstructure:"write_timeout"`
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`
	DrainDelay        time.Duration `mapstructure:"drain_delay"`
	ShutdownGrace     time.Duration `mapstructure:"shutdown_grace"`
	// ExportStallTimeout is how long an export may wait for its client to
	// take each write before it is cut.
	ExportStallTimeout time.Duration `mapstructure:"export_stall_timeout"`
	// AllowedOrigins are the web origins whose pages may call the service;
	// a request with any other Origin, or from another site, is refused.
	AllowedOrigins []string `mapstructure:"allowed_origins"`
}

// Database configures the store of consented messages.
type Database struct {
	Driver      string `mapstructure:"driver"` // sqlite or postgres
	DSN         string `mapstructure:"dsn"`    // for sqlite, a file path
	MaxReaders  int    `mapstructure:"max_readers"`
	CommitBatch int    `mapstructure:"commit_batch"`
	MaxExports  int    `mapstructure:"max_exports"` // exports at once, on connections of their own
}

// Dialogues configures the store of dialogues awaiting consent.
type Dialogues struct {
	Store         string        `mapstructure:"store"` // memory or redis
	TTL           time.Duration `mapstructure:"ttl"`
	SweepInterval time.Duration `mapstructure:"sweep_interval"`
	MaxPending    int           `mapstructure:"max_pending"`
	MaxMessages   int           `mapstructure:"max_messages"`
	MaxBytes      int64         `mapstructure:"max_pending_bytes"`
	Shards        int           `mapstructure:"shards"` // a power of two
}

// Redis configures the shared store of pending dialogues, used when
// dialogues.store is redis.
type Redis struct {
	URL         string        `mapstructure:"url"` // a plain server; unused with sentinel.master set
	Sentinel    Sentinel      `mapstructure:"sentinel"`
	Prefix      string        `mapstructure:"prefix"`
	TakeTimeout time.Duration `mapstructure:"take_timeout"`
}

// Sentinel names a primary that Redis Sentinel watches, in place of
// redis.url: the service asks the sentinels where the primary is, and
// follows it through a failover.
type Sentinel struct {
	Master        string   `mapstructure:"master"`         // the name the sentinels know it by; empty: no Sentinel
	Addrs         []string `mapstructure:"addrs"`          // the sentinels, host:port
	Password      string   `mapstructure:"password"`       // the sentinels' own password
	RedisPassword string   `mapstructure:"redis_password"` // the primary's and replicas' password
	DB            int      `mapstructure:"db"`
}

// Limits bounds the size of requests.
type Limits struct {
	MaxTextBytes int `mapstructure:"max_text_bytes"`
	MaxBodyBytes int `mapstructure:"max_body_bytes"`
}

// Retention configures the periodic purge of old consented messages.
type Retention struct {
	MaxAge    time.Duration `mapstructure:"max_age"` // 0 keeps messages forever
	Interval  time.Duration `mapstructure:"interval"`
	BatchSize int           `mapstructure:"batch_size"`
}

// Log configures logging.
type Log struct {
	Level string `mapstructure:"level"` // debug, info, warn or error
}

// Auth configures API keys and the OpenID Connect issuer whose tokens are
// accepted beside them. With neither the service needs no authentication.
type Auth struct {
	Keys        []Key `mapstructure:"keys"`
	MetricsOpen bool  `mapstructure:"metrics_open"` // GET /metrics needs no key
	OIDC        OIDC  `mapstructure:"oidc"`
	// Open serves every interface without credentials; without it and
	// without credentials, only loopback is served (see ListenAddr).
	Open bool `mapstructure:"open"`
}

// Credentials reports whether callers need a credential: API keys or an
// OpenID Connect issuer are configured.
func (a Auth) Credentials() bool { return len(a.Keys) > 0 || a.OIDC.Issuer != "" }

// OIDC configures the acceptance of tokens issued by an OpenID Connect
// provider. With Issuer empty no token is accepted.
type OIDC struct {
	Issuer          string        `mapstructure:"issuer"`      // exactly as the tokens' iss claim
	Audience        string        `mapstructure:"audience"`    // a value the tokens' aud must hold
	RolesClaim      string        `mapstructure:"roles_claim"` // a claim name or a dotted path, e.g. realm_access.roles
	Roles           OIDCRoles     `mapstructure:"roles"`
	Leeway          time.Duration `mapstructure:"leeway"`           // clock skew allowed on exp, nbf, iat
	RefreshInterval time.Duration `mapstructure:"refresh_interval"` // least time between two fetches from the provider
	FetchTimeout    time.Duration `mapstructure:"fetch_timeout"`
}

// OIDCRoles lists, for each role of the service, the values of the roles
// claim that grant it.
type OIDCRoles struct {
	Ingest  []string `mapstructure:"ingest"`
	Analyst []string `mapstructure:"analyst"`
	Admin   []string `mapstructure:"admin"`
}

// Key is one API key. Exactly one of Key and SHA256 is set.
type Key struct {
	Name   string   `mapstructure:"name"`
	Key    string   `mapstructure:"key"`    // the secret itself
	SHA256 string   `mapstructure:"sha256"` // the hex SHA-256 of the secret, in either case
	Roles  []string `mapstructure:"roles"`  // ingest, analyst, admin
}

// Digest returns the SHA-256 of the key's secret, whichever way it was
// given, of a key that Validate accepts.
func (k Key) Digest() [sha256.Size]byte {
	if k.Key != "" {
		return sha256.Sum256([]byte(k.Key))
	}
	var d [sha256.Size]byte
	hex.Decode(d[:], []byte(k.SHA256)) // Validate checked 64 hex digits
	return d
}

// ListenAddr is the address to listen on: server.addr, but when nothing
// guards the service (no credentials, auth.open false) and server.addr names
// no loopback host, 127.0.0.1 with its port, so that an unconfigured service
// is open to local callers only. Validate has checked server.addr.
func (c Config) ListenAddr() string {
	host, port, _ := net.SplitHostPort(c.Server.Addr)
	if c.Auth.Credentials() || c.Auth.Open || isLoopback(host) {
		return c.Server.Addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// Cursor configures pagination cursors.
type Cursor struct {
	Secret string `mapstructure:"secret"` // HMAC key; empty means a random key per process
}

// Encryption configures the master keys that wrap the key of each
// dialogue, under which its stored texts are encrypted.
type Encryption struct {
	Active  string          `mapstructure:"active"`   // the id of the key that wraps new dialogue keys
	Keys    []EncryptionKey `mapstructure:"keys"`     // the key ring
	KeyFile string          `mapstructure:"key_file"` // SQLite without keys: where the generated key is kept; "" = beside the database
}

// EncryptionKey is one master key. Exactly one of Key and File is set.
type EncryptionKey struct {
	ID   string `mapstructure:"id"`
	Key  string `mapstructure:"key"`  // the base64 of 32 random bytes
	File string `mapstructure:"file"` // the path of a file holding the base64 of 32 random bytes
}

// Bytes returns the key's 32 bytes when given as Key, of a key that Validate
// accepts; nil when given as File.
func (k EncryptionKey) Bytes() []byte {
	b, _ := base64.StdEncoding.DecodeString(k.Key) // Validate checked it
	return b
}

// Journal configures the deletion journal: every withdrawal, erasure and
// retention purge recorded outside the database, for the restore of a
// backup to re-apply.
type Journal struct {
	Dir  string        `mapstructure:"dir"`  // "" = beside a SQLite database; required with postgres
	Keep time.Duration `mapstructure:"keep"` // how long a segment is kept after its last write
}

// JournalDir is the directory of the deletion journal: journal.dir, or for
// SQLite when it is empty, the database's path followed by ".deletions".
func (c Config) JournalDir() string {
	if c.Journal.Dir == "" && c.Database.Driver == "sqlite" {
		return c.Database.DSN + ".deletions"
	}
	return c.Journal.Dir
}

// Load reads the configuration: the embedded defaults, then the YAML file at
// path (or DefaultPath if path is empty and that file exists), then the
// variables in environ (formatted like os.Environ) named DATA_API_ and the key
// path in upper case with "_", e.g. DATA_API_DIALOGUES_TTL. A list-valued key
// such as auth.keys takes JSON in its variable; an empty variable counts as
// unset, as in Viper. The result is validated: every unknown or invalid key,
// and every DATA_API_ variable that names no key (but those of the test
// suite, DATA_API_TEST_*, DATA_API_BENCH_*, DATA_API_REQUIRE_SERVERS), is
// reported at once in an *Error.
func Load(path string, environ []string) (Config, error) {
	if path == "" {
		if _, err := os.Stat(DefaultPath); !errors.Is(err, fs.ErrNotExist) {
			path = DefaultPath
		}
	}
	var file []byte
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		file = data
	}
	c, err := load(file, environ)
	if err != nil && path != "" {
		var e *Error
		if !errors.As(err, &e) {
			err = fmt.Errorf("config: %s: %w", path, err)
		}
	}
	return c, err
}

// load reads the embedded defaults, then the YAML in file when not nil,
// then environ.
func load(file []byte, environ []string) (Config, error) {
	defaults := viper.New()
	defaults.SetConfigType("yaml")
	if err := defaults.ReadConfig(bytes.NewReader(defaultYAML)); err != nil {
		return Config{}, fmt.Errorf("config: embedded defaults: %w", err)
	}
	v := viper.New()
	v.SetConfigType("yaml")
	for _, key := range defaults.AllKeys() {
		v.SetDefault(key, defaults.Get(key))
	}

	if file != nil {
		if err := v.ReadConfig(bytes.NewReader(file)); err != nil {
			return Config{}, err
		}
	}

	var e Error
	applyEnv(&e, v, defaults, environ)
	for _, key := range unknownKeys("", v.AllSettings(), reflect.TypeFor[Config]()) {
		e.add(key, "unknown key")
	}
	var c Config
	if err := v.Unmarshal(&c, viper.DecodeHook(durationHook)); err != nil {
		addDecodeProblems(&e, err)
	}

	// A key that could not be read holds its zero value: report why it
	// could not be read, not that zero is invalid.
	unread := e.Problems
	for _, p := range c.problems().Problems {
		if !slices.ContainsFunc(unread, func(u Problem) bool { return within(p.Key, u.Key) }) {
			e.Problems = append(e.Problems, p)
		}
	}
	if err := e.err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Default returns the embedded defaults, as Load does given no file and no
// environment variable, whatever the working directory holds.
func Default() Config {
	c, err := load(nil, nil)
	if err != nil {
		panic("config: the embedded defaults are invalid: " + err.Error())
	}
	return c
}

// applyEnv sets in v the value of every variable in environ that names a key
// of defaults, and reports the DATA_API_ variables that name none. Viper's
// AutomaticEnv reads only the process environment, so the values are set as
// overrides, which Viper ranks where it ranks the environment: above the
// file and the defaults.
func applyEnv(e *Error, v, defaults *viper.Viper, environ []string) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok {
			env[name] = value
		}
	}
	keys := defaults.AllKeys()
	slices.Sort(keys)
	names := make(map[string]string, len(keys)) // variable → key
	for _, key := range keys {
		names[envName(key)] = key
	}
	unknownVariables(e, env, names)
	for _, key := range keys {
		name := envName(key)
		value := env[name]
		if value == "" {
			continue
		}
		if _, isList := defaults.Get(key).([]any); !isList {
			v.Set(key, value)
			continue
		}
		var list []any
		if err := json.Unmarshal([]byte(value), &list); err != nil {
			e.add(key, fmt.Sprintf("%s must be a JSON list: %v", name, err))
			continue
		}
		v.Set(key, list)
	}
}

// envPrefix starts the name of every variable that sets a key.
const envPrefix = "DATA_API_"

// envName is the name of the variable that sets key, e.g. DATA_API_LOG_LEVEL.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// notSettings are the prefixes of the variables of the test suite and the
// benchmarks, which share the prefix but are no settings of the service.
var notSettings = []string{"DATA_API_TEST_", "DATA_API_BENCH_", "DATA_API_REQUIRE_SERVERS"}

// unknownVariables refuses every variable named with the prefix that sets
// no key, as an unknown key of the file is refused: a typo such as
// DATA_API_AUTH_KEY for DATA_API_AUTH_KEYS would otherwise leave the
// service without its keys. Each problem names the nearest variable that
// exists. names maps each variable to its key.
func unknownVariables(e *Error, env, names map[string]string) {
	var unknown []string
	for name := range env {
		_, known := names[name]
		if known || !strings.HasPrefix(name, envPrefix) || slices.ContainsFunc(notSettings, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		unknown = append(unknown, name)
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		nearest, best := "", -1
		for known := range names {
			d := editDistance(name, known)
			if best < 0 || d < best || d == best && known < nearest {
				nearest, best = known, d
			}
		}
		e.add(name, fmt.Sprintf("is not a setting; did you mean %s (%s)?", nearest, names[nearest]))
	}
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// durationHook decodes a time.Duration from a string with a unit, such as
// "30m". It rejects a bare number, which mapstructure would otherwise read as
// nanoseconds.
func durationHook(_, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() {
		return data, nil
	}
	const want = "must be a duration with a unit (e.g. 30s, 5m, 1h)"
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("%s, got %v", want, data)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return nil, fmt.Errorf("%s, got %s", want, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%s, got %q", want, s)
	}
	return d, nil
}

// unknownKeys returns, sorted, the keys of settings that match no field of the
// struct type t, looking into nested sections and lists of sections; prefix
// is the path of settings.
func unknownKeys(prefix string, settings map[string]any, t reflect.Type) []string {
	fields := make(map[string]reflect.Type)
	for f := range t.Fields() {
		fields[f.Tag.Get("mapstructure")] = f.Type
	}
	var unknown []string
	for name, value := range settings {
		key := prefix + name
		ft, ok := fields[name]
		if !ok {
			unknown = append(unknown, key)
			continue
		}
		switch value := value.(type) {
		case map[string]any:
			if ft.Kind() == reflect.Struct {
				unknown = append(unknown, unknownKeys(key+".", value, ft)...)
			}
		case []any:
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				for i, elem := range value {
					if m, ok := elem.(map[string]any); ok {
						unknown = append(unknown, unknownKeys(fmt.Sprintf("%s[%d].", key, i), m, ft.Elem())...)
					}
				}
			}
		}
	}
	slices.Sort(unknown)
	return unknown
}

// addDecodeProblems adds to e one problem per key that mapstructure could
// not decode.
func addDecodeProblems(e *Error, err error) {
	switch err := err.(type) {
	case *mapstructure.DecodeError:
		e.add(err.Name(), err.Unwrap().Error())
	case interface{ Unwrap() []error }:
		for _, err := range err.Unwrap() {
			addDecodeProblems(e, err)
		}
	case interface{ Unwrap() error }:
		addDecodeProblems(e, err.Unwrap())
	default:
		e.add("", err.Error())
	}
}

// within reports whether key is parent or lies under it.
func within(key, parent string) bool {
	rest, ok := strings.CutPrefix(key, parent)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}
