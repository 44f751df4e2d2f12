package config

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

const redacted = "[redacted]"

// Redacted returns a copy of c that is safe to log: the secrets of the API
// keys, their SHA-256, the cursor secret and the master keys are replaced by
// "[redacted]" when set, and a password in the database DSN or the Redis URL
// by "xxxxx" (as url.URL.Redacted does).
func (c Config) Redacted() Config {
	c.Auth.Keys = slices.Clone(c.Auth.Keys)
	for i := range c.Auth.Keys {
		k := &c.Auth.Keys[i]
		k.Key = redact(k.Key)
		k.SHA256 = redact(k.SHA256)
		k.Roles = slices.Clone(k.Roles)
	}
	c.Cursor.Secret = redact(c.Cursor.Secret)
	c.Encryption.Keys = slices.Clone(c.Encryption.Keys)
	for i := range c.Encryption.Keys {
		k := &c.Encryption.Keys[i]
		k.Key = redact(k.Key)
	}
	c.Database.DSN = redactDSN(c.Database.DSN)
	c.Redis.URL = redactDSN(c.Redis.URL)
	return c
}

func redact(secret string) string {
	if secret == "" {
		return ""
	}
	return redacted
}

// dsnPassword matches a password (or sslpassword) in a key=value DSN such as
// "host=h password='a b' dbname=d": the key, then the value, quoted or not.
var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:\\.|[^'\\])*'|\S*)`)

// redactDSN hides the passwords in a URL DSN (postgres://u:pw@h/db?password=pw)
// or a key=value DSN. A DSN that is not even a valid URL is hidden whole.
func redactDSN(dsn string) string {
	const mask = "xxxxx"
	u, err := url.Parse(dsn)
	switch {
	case err != nil:
		return redacted
	case u.Scheme == "" || u.Opaque != "":
		return dsnPassword.ReplaceAllString(dsn, "${1}"+mask)
	}
	q := u.Query()
	for name := range q {
		if strings.HasSuffix(strings.ToLower(name), "password") {
			q.Set(name, mask)
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}
