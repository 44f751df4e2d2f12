package main

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/fake"
)

// TestRunServesOnlyLoopbackWithoutCredentials: with no key, no issuer and
// no auth.open, the service configured for every interface serves loopback
// only, says so, and still works on localhost with zero set-up;
// auth.open: true serves every interface, and says so loudly.
func TestRunServesOnlyLoopbackWithoutCredentials(t *testing.T) {
	ip := nonLoopbackIP(t)
	for _, open := range []bool{false, true} {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		environ := []string{
			"DATA_API_SERVER_ADDR=:" + port, // every interface
			"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db"),
		}
		if open {
			environ = append(environ, "DATA_API_AUTH_OPEN=true")
		}
		logs := &fake.Log{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, nil, environ, logs) }()
		waitReady(t, "http://127.0.0.1:"+port, done)
		inst := &instance{base: "http://127.0.0.1:" + port}
		call(t, inst, "POST", "/data/c/d", `{"text": "local", "language": "en"}`, 202)

		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 2*time.Second)
		if conn != nil {
			conn.Close()
		}
		switch {
		case !open && err == nil:
			t.Errorf("without credentials, %s:%s accepted a connection", ip, port)
		case open && err != nil:
			t.Errorf("with auth.open, %s:%s: %v", ip, port, err)
		case open:
			resp, err := http.Get("http://" + net.JoinHostPort(ip, port) + "/healthz")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("with auth.open, GET /healthz on %s: %v %v", ip, resp, err)
			} else {
				resp.Body.Close()
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run returned %v", err)
		}
		log := logs.String()
		want := []string{`"level":"WARN"`, "no API keys configured", "serving loopback only", `"addr":"127.0.0.1:` + port + `"`}
		if open {
			want = []string{`"level":"WARN"`, "auth.open", "every interface", `"addr":":` + port + `"`, `"addr":"[::]:` + port + `"`}
		}
		for _, w := range want {
			if !strings.Contains(log, w) {
				t.Errorf("open=%v: the log lacks %s:\n%s", open, w, log)
			}
		}
	}
}

// nonLoopbackIP returns an IPv4 address of this host that is not loopback.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("this host has no non-loopback IPv4 address to check that the service does not listen on it")
	return ""
}
