package config

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The allowed values of the enumerated keys.
var (
	drivers   = []string{"sqlite", "postgres"}
	stores    = []string{"memory", "redis"}
	logLevels = []string{"debug", "info", "warn", "error"}
	roles     = []string{"ingest", "analyst", "admin"}
)

// minSecretLen is the shortest accepted plain API key or cursor secret.
const minSecretLen = 16

// Problem says what is wrong with one key.
type Problem struct {
	Key    string // the key path, e.g. dialogues.shards or auth.keys[0].name
	Detail string
}

// Error lists every problem found in a configuration, so that all of them
// can be fixed at once.
type Error struct {
	Problems []Problem
}

// add records a problem with key.
func (e *Error) add(key, detail string) {
	e.Problems = append(e.Problems, Problem{Key: key, Detail: detail})
}

// err returns e when it holds problems, nil otherwise.
func (e *Error) err() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// Error returns one "key: detail" line per problem.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Key + ": " + p.Detail
		if p.Key == "" {
			lines[i] = p.Detail
		}
	}
	return strings.Join(lines, "\n")
}

// Validate checks every key of c and returns an *Error listing all the
// problems found, or nil.
func (c Config) Validate() error {
	e := c.problems()
	return e.err()
}

func (c Config) problems() *Error {
	e := &Error{}

	s := c.Server
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		e.add("server.addr", fmt.Sprintf("must be host:port, e.g. :8080, got %q", s.Addr))
	}
	positive(e, "server.read_header_timeout", s.ReadHeaderTimeout)
	positive(e, "server.read_timeout", s.ReadTimeout)
	positive(e, "server.write_timeout", s.WriteTimeout)
	positive(e, "server.idle_timeout", s.IdleTimeout)
	if s.DrainDelay < 0 {
		e.add("server.drain_delay", fmt.Sprintf("must not be negative, got %v", s.DrainDelay))
	}
	positive(e, "server.shutdown_grace", s.ShutdownGrace)
	positive(e, "server.export_stall_timeout", s.ExportStallTimeout)
	for i, o := range s.AllowedOrigins {
		if problem := origin(o); problem != "" {
			e.add(fmt.Sprintf("server.allowed_origins[%d]", i), problem)
		}
	}

	db := c.Database
	oneOf(e, "database.driver", db.Driver, drivers)
	if db.DSN == "" {
		e.add("database.dsn", "must not be empty")
	}
	positive(e, "database.max_readers", db.MaxReaders)
	positive(e, "database.commit_batch", db.CommitBatch)
	positive(e, "database.max_exports", db.MaxExports)

	d := c.Dialogues
	oneOf(e, "dialogues.store", d.Store, stores)
	positive(e, "dialogues.ttl", d.TTL)
	positive(e, "dialogues.sweep_interval", d.SweepInterval)
	positive(e, "dialogues.max_pending", d.MaxPending)
	positive(e, "dialogues.max_messages", d.MaxMessages)
	if d.MaxBytes < 1 {
		e.add("dialogues.max_pending_bytes", fmt.Sprintf("must be positive, got %d", d.MaxBytes))
	}
	if d.Shards < 1 || d.Shards > 1<<16 || d.Shards&(d.Shards-1) != 0 {
		e.add("dialogues.shards", fmt.Sprintf("must be a power of two between 1 and 65536, got %d", d.Shards))
	}

	if d.Store == "redis" {
		c.Redis.addProblems(e)
	}

	l := c.Limits
	positive(e, "limits.max_text_bytes", l.MaxTextBytes)
	if l.MaxBodyBytes <= l.MaxTextBytes {
		e.add("limits.max_body_bytes", fmt.Sprintf("must be more than limits.max_text_bytes (%d), got %d", l.MaxTextBytes, l.MaxBodyBytes))
	}

	r := c.Retention
	if r.MaxAge < 0 {
		e.add("retention.max_age", fmt.Sprintf("must not be negative (0s keeps messages forever), got %v", r.MaxAge))
	}
	positive(e, "retention.interval", r.Interval)
	positive(e, "retention.batch_size", r.BatchSize)

	oneOf(e, "log.level", c.Log.Level, logLevels)

	c.Auth.addProblems(e)

	if n := len(c.Cursor.Secret); n > 0 && n < minSecretLen {
		e.add("cursor.secret", fmt.Sprintf("must be empty or at least %d characters, got %d", minSecretLen, n))
	}

	c.Encryption.addProblems(e, db.Driver)
	if db.Driver == "postgres" && c.Journal.Dir == "" {
		e.add("journal.dir", "must name the deletion journal's directory with database.driver postgres, shared by every instance (e.g. a ReadWriteMany volume): without it a restored backup brings back what was deleted since")
	}
	if c.Journal.Keep < minJournalKeep {
		e.add("journal.keep", fmt.Sprintf("must be at least %v (as long as the oldest backup kept), got %v", minJournalKeep, c.Journal.Keep))
	}
	c.addPlaceholderProblems(e)
	return e
}

// minJournalKeep is the least journal.keep: a day, the life of a segment.
const minJournalKeep = 24 * time.Hour

// masterKeySize is the size of a master key: AES-256.
const masterKeySize = 32

// masterKeyID is what a master key's id may be: it is stored beside every
// dialogue key it wraps, and logged.
var masterKeyID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// addProblems adds to e the problems of the key ring. No message quotes a
// key.
func (enc Encryption) addProblems(e *Error, driver string) {
	const at = "encryption."
	ids := make(map[string]int) // id → index of its key
	for i, k := range enc.Keys {
		key := fmt.Sprintf("%skeys[%d]", at, i)
		switch j, dup := ids[k.ID]; {
		case !masterKeyID.MatchString(k.ID):
			e.add(key+".id", fmt.Sprintf("must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got %q", k.ID))
		case dup:
			e.add(key+".id", fmt.Sprintf("%q is already the id of encryption.keys[%d]", k.ID, j))
		default:
			ids[k.ID] = i
		}
		switch {
		case k.Key != "" && k.File != "":
			e.add(key, "must set only one of key and file, got both")
		case k.Key == "" && k.File == "":
			e.add(key, "must set one of key (the base64 of 32 random bytes) and file (the path of a file holding it)")
		case k.Key != "":
			if b, err := base64.StdEncoding.DecodeString(k.Key); err != nil || len(b) != masterKeySize {
				e.add(key+".key", fmt.Sprintf("must be the base64 of %d random bytes (openssl rand -base64 %d); got %d characters that do not decode to %d bytes", masterKeySize, masterKeySize, len(k.Key), masterKeySize))
			}
		}
	}
	switch {
	case len(enc.Keys) > 0:
		known := make([]string, len(enc.Keys))
		for i, k := range enc.Keys {
			known[i] = k.ID
		}
		if !slices.Contains(known, enc.Active) {
			e.add(at+"active", fmt.Sprintf("must be the id of the key of encryption.keys that wraps new dialogue keys (one of %s), got %q", strings.Join(known, ", "), enc.Active))
		}
		if enc.KeyFile != "" {
			e.add(at+"key_file", "is where the key generated without encryption.keys is kept; with encryption.keys, give a key's file as encryption.keys[].file")
		}
	case enc.Active != "":
		e.add(at+"active", fmt.Sprintf("must be empty when encryption.keys is, got %q", enc.Active))
	case driver == "postgres":
		e.add(at+"keys", "must hold at least one master key with database.driver postgres (only SQLite generates one), e.g. [{id: k1, key: <openssl rand -base64 32>}]")
	}
}

// addProblems adds to e the problems of the Redis settings, for
// dialogues.store redis: a plain server by URL, or a primary by Sentinel.
func (r Redis) addProblems(e *Error) {
	s := r.Sentinel
	switch {
	case s.Master == "" && (len(s.Addrs) > 0 || s.Password != "" || s.RedisPassword != ""):
		// Sentinel settings without the primary's name betray a forgotten
		// one, which would silently leave the service on redis.url.
		e.add("redis.sentinel.master", "must be set when redis.sentinel.addrs or a Sentinel password is: the name the sentinels know the primary by")
	case s.Master == "":
		if !strings.HasPrefix(r.URL, "redis://") && !strings.HasPrefix(r.URL, "rediss://") {
			e.add("redis.url", fmt.Sprintf("must be a redis:// or rediss:// URL when dialogues.store is redis, got %q", r.URL))
		}
	default:
		if len(s.Addrs) == 0 {
			e.add("redis.sentinel.addrs", "must list the sentinels as host:port when redis.sentinel.master is set, e.g. [10.0.0.1:26379, 10.0.0.2:26379, 10.0.0.3:26379]")
		}
		for i, a := range s.Addrs {
			if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
				e.add(fmt.Sprintf("redis.sentinel.addrs[%d]", i), fmt.Sprintf("must be host:port, e.g. 10.0.0.1:26379, got %q", a))
			}
		}
		if s.DB < 0 {
			e.add("redis.sentinel.db", fmt.Sprintf("must not be negative, got %d", s.DB))
		}
	}
	positive(e, "redis.take_timeout", r.TakeTimeout)
}

// placeholderPrefixes and placeholderValues are what templates, examples
// and this repository's own deployment files put where a secret belongs
// (change-me-to-32-random-characters, placeholder-for-cursor-secret,
// <hex>): a service running with one is open to anyone who read them.
var (
	placeholderPrefixes = []string{"change-me", "change_me", "changeme", "placeholder", "xxx", "your-", "your_", "<"}
	placeholderValues   = []string{"secret", "password", "changeit"}
)

// isPlaceholder reports whether secret is an obvious placeholder.
func isPlaceholder(secret string) bool {
	s := strings.ToLower(strings.TrimSpace(secret))
	return slices.Contains(placeholderValues, s) ||
		slices.ContainsFunc(placeholderPrefixes, func(p string) bool { return strings.HasPrefix(s, p) })
}

// addPlaceholderProblems adds a problem for every secret that is a
// placeholder, naming its key and never the value.
func (c Config) addPlaceholderProblems(e *Error) {
	check := func(key, secret, what string) {
		if secret != "" && isPlaceholder(secret) {
			e.add(key, fmt.Sprintf("holds a placeholder %s (such as change-me… or placeholder-for-…), not a secret; set a random one, e.g. openssl rand -hex 32", what))
		}
	}
	check("cursor.secret", c.Cursor.Secret, "secret")
	for i, k := range c.Auth.Keys {
		check(fmt.Sprintf("auth.keys[%d].key", i), k.Key, "key")
	}
	if c.Database.Driver == "postgres" {
		for _, pw := range dsnPasswords(c.Database.DSN) {
			check("database.dsn", pw, "password")
		}
	}
	for _, pw := range dsnPasswords(c.Redis.URL) {
		check("redis.url", pw, "password")
	}
	check("redis.sentinel.password", c.Redis.Sentinel.Password, "password")
	check("redis.sentinel.redis_password", c.Redis.Sentinel.RedisPassword, "password")
}

// dsnPasswords returns the passwords in a URL (its user's, and any query
// parameter named *password) or in a key=value DSN.
func dsnPasswords(dsn string) []string {
	var pws []string
	u, err := url.Parse(dsn)
	switch {
	case err != nil:
		return nil
	case u.Scheme == "" || u.Opaque != "":
		for _, m := range dsnPassword.FindAllStringSubmatch(dsn, -1) {
			pws = append(pws, strings.Trim(m[2], "'"))
		}
		return pws
	}
	if pw, ok := u.User.Password(); ok {
		pws = append(pws, pw)
	}
	for name, values := range u.Query() {
		if strings.HasSuffix(strings.ToLower(name), "password") {
			pws = append(pws, values...)
		}
	}
	return pws
}

// tokenPrefix starts the ledger's name for a token's caller, "oidc:" and its
// subject; no key's name may start so, lest it pass for a token's caller.
const tokenPrefix = "oidc:"

// maxLeeway bounds auth.oidc.leeway: more would keep expired tokens alive.
const maxLeeway = 5 * time.Minute

// addProblems adds to e the problems of the API keys and of the OpenID
// Connect settings. No message quotes a secret.
func (a Auth) addProblems(e *Error) {
	a.OIDC.addProblems(e)
	if a.Open && a.Credentials() {
		// Contradictory: the reader of the file would believe it open.
		e.add("auth.open", "must be false when auth.keys or auth.oidc.issuer is set: with credentials configured, every endpoint but the probes needs one")
	}
	names := make(map[string]int)   // name → index of its first key
	secrets := make(map[string]int) // lower-case hex SHA-256 → index of its first key
	for i, k := range a.Keys {
		at := fmt.Sprintf("auth.keys[%d]", i)

		switch j, dup := names[k.Name]; {
		case k.Name == "":
			e.add(at+".name", "must not be empty")
		case strings.HasPrefix(k.Name, tokenPrefix):
			e.add(at+".name", fmt.Sprintf("must not start with %q, which names the callers of tokens in the ledger, got %q", tokenPrefix, k.Name))
		case dup:
			e.add(at+".name", fmt.Sprintf("%q is already the name of auth.keys[%d]", k.Name, j))
		default:
			names[k.Name] = i
		}

		var hash string
		switch {
		case k.Key != "" && k.SHA256 != "":
			e.add(at, "must set only one of key and sha256, got both")
		case k.Key == "" && k.SHA256 == "":
			e.add(at, "must set one of key (the secret) and sha256 (its SHA-256 in hex)")
		case k.Key != "" && len(k.Key) < minSecretLen:
			e.add(at+".key", fmt.Sprintf("must be at least %d characters, got %d", minSecretLen, len(k.Key)))
		case k.Key != "":
			sum := sha256.Sum256([]byte(k.Key))
			hash = hex.EncodeToString(sum[:])
		default:
			if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
				e.add(at+".sha256", fmt.Sprintf("must be 64 hex characters (a SHA-256), got %d characters", len(k.SHA256)))
			} else {
				hash = strings.ToLower(k.SHA256)
			}
		}
		if j, dup := secrets[hash]; dup {
			e.add(at, fmt.Sprintf("has the same secret as auth.keys[%d]", j))
		} else if hash != "" {
			secrets[hash] = i
		}

		if len(k.Roles) == 0 {
			e.add(at+".roles", "must list at least one of "+strings.Join(roles, ", "))
		}
		for _, r := range k.Roles {
			if !slices.Contains(roles, r) {
				e.add(at+".roles", fmt.Sprintf("must list only %s, got %q", strings.Join(roles, ", "), r))
			}
		}
	}
}

func (o OIDC) addProblems(e *Error) {
	const at = "auth.oidc."
	roles := []struct {
		name   string
		values []string
	}{{"ingest", o.Roles.Ingest}, {"analyst", o.Roles.Analyst}, {"admin", o.Roles.Admin}}
	mapped := 0
	for _, r := range roles {
		mapped += len(r.values)
		if slices.Contains(r.values, "") {
			e.add(at+"roles."+r.name, "must not list an empty value")
		}
	}
	switch {
	case o.Issuer == "" && (o.Audience != "" || mapped > 0):
		// Settings that only make sense with an issuer betray a forgotten
		// one, which would leave tokens refused or, without keys, every
		// endpoint open.
		e.add(at+"issuer", "must be set when auth.oidc.audience or auth.oidc.roles is")
	case o.Issuer != "":
		if err := issuerURL(o.Issuer); err != "" {
			e.add(at+"issuer", fmt.Sprintf("%s, got %q", err, o.Issuer))
		}
		if o.Audience == "" {
			e.add(at+"audience", "must be set with auth.oidc.issuer: the aud value the tokens are issued for, e.g. data-api")
		}
		if mapped == 0 {
			e.add(at+"roles", "must map at least one claim value to ingest, analyst or admin")
		}
	}
	if o.RolesClaim == "" || slices.Contains(strings.Split(o.RolesClaim, "."), "") {
		e.add(at+"roles_claim", fmt.Sprintf("must be a claim name or a dotted path such as realm_access.roles, got %q", o.RolesClaim))
	}
	if o.Leeway < 0 || o.Leeway > maxLeeway {
		e.add(at+"leeway", fmt.Sprintf("must be between 0s and %v, got %v", maxLeeway, o.Leeway))
	}
	positive(e, at+"refresh_interval", o.RefreshInterval)
	positive(e, at+"fetch_timeout", o.FetchTimeout)
}

// issuerURL says what is wrong with an issuer URL, or "": it must be https,
// or http to a loopback host, with no query or fragment (OpenID Connect
// Discovery §2).
func issuerURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "":
		return "must be an absolute URL such as https://keycloak.example.com/realms/acme"
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "must have no query or fragment"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return ""
	}
	return "must be an https URL (http only to a loopback host)"
}

// origin says what is wrong with an allowed origin, or "": it must be as a
// browser serializes it in the Origin header (RFC 6454 §6.2), since it is
// compared with that byte for byte.
func origin(s string) string {
	switch s {
	case "null":
		return `must not be "null", which any sandboxed page or local file sends`
	case "*":
		return `must not be "*": list each origin allowed`
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.Scheme+"://"+u.Host != s || strings.ToLower(s) != s {
		return fmt.Sprintf("must be an origin, scheme://host[:port] in lower case with nothing after, as browsers send it in Origin, e.g. https://console.example.com, got %q", s)
	}
	return ""
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// positive adds a problem to e unless v > 0.
func positive[T int | time.Duration](e *Error, key string, v T) {
	if v <= 0 {
		e.add(key, fmt.Sprintf("must be positive, got %v", v))
	}
}

// oneOf adds a problem to e unless v is one of allowed.
func oneOf(e *Error, key, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		e.add(key, fmt.Sprintf("must be one of %s, got %q", strings.Join(allowed, ", "), v))
	}
}
