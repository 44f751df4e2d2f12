package config

import (
	"log/slog"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

const redacted = "[redacted]"

// Redacted returns a copy of c that is safe to log: the secrets of the API
// keys, their SHA-256, the cursor secret, the Sentinel passwords and the
// master keys are replaced by "[redacted]" when set, and a password in the
// database DSN or the Redis URL by "xxxxx" (as url.URL.Redacted does).
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
	c.Redis.Sentinel.Addrs = slices.Clone(c.Redis.Sentinel.Addrs)
	c.Redis.Sentinel.Password = redact(c.Redis.Sentinel.Password)
	c.Redis.Sentinel.RedisPassword = redact(c.Redis.Sentinel.RedisPassword)
	return c
}

// LogValue makes c log as its Redacted copy, keyed as in the YAML file
// (dialogues.max_pending), with durations as Go writes them ("30m0s")
// rather than as nanoseconds.
func (c Config) LogValue() slog.Value {
	return slog.AnyValue(settings(reflect.ValueOf(c.Redacted())))
}

// settings turns a value of Config into maps, lists and scalars.
func settings(v reflect.Value) any {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Struct:
		m := make(map[string]any, v.NumField())
		for i := range v.NumField() {
			m[v.Type().Field(i).Tag.Get("mapstructure")] = settings(v.Field(i))
		}
		return m
	case v.Kind() == reflect.Slice:
		l := make([]any, v.Len())
		for i := range l {
			l[i] = settings(v.Index(i))
		}
		return l
	}
	return v.Interface()
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
