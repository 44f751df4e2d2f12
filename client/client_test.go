package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/client"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
)

// The keys of the test service: name → roles; the secret is the name and
// "-secret-0123456789".
var keys = map[string][]string{
	"all":     {"ingest", "analyst", "admin"},
	"bot":     {"ingest"},
	"analyst": {"analyst"},
}

func secret(name string) string { return name + "-secret-0123456789" }

// service starts the whole application, as cmd/data-api builds it, over a
// fresh SQLite file, behind a real HTTP server.
func service(t *testing.T, change func(*config.Config)) (*app.App, *httptest.Server) {
	t.Helper()
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(t.TempDir(), "data.db")
	for name, roles := range keys {
		cfg.Auth.Keys = append(cfg.Auth.Keys, config.Key{Name: name, Key: secret(name), Roles: roles})
	}
	if change != nil {
		change(&cfg)
	}
	a, err := app.New(t.Context(), cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler)
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return a, srv
}

// transport intercepts each attempt the client makes.
type transport func(r *http.Request, attempt int) (*http.Response, error)

// newClient returns a client of srv with key's credential whose attempts
// go through intercept (straight to the server when nil), and the count
// of its attempts.
func newClient(t *testing.T, srv *httptest.Server, key string, o client.Options, intercept transport) (*client.Client, *atomic.Int32) {
	t.Helper()
	var attempts atomic.Int32
	rt := srv.Client().Transport
	o.HTTPClient = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		n := int(attempts.Add(1))
		if intercept != nil {
			return intercept(r, n)
		}
		return rt.RoundTrip(r)
	})}
	if key != "" {
		o.Token = client.StaticToken(secret(key))
	}
	c, err := client.New(srv.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	return c, &attempts
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func collect[T any](t *testing.T, seq iter.Seq2[T, error]) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func texts(ms []client.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return out
}

func TestEveryEndpoint(t *testing.T) {
	_, srv := service(t, nil)
	ctx := t.Context()
	c, _ := newClient(t, srv, "all", client.Options{}, nil)

	if err := c.Healthy(ctx); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	before := time.Now()
	for i, m := range []struct{ customer, dialog, text, lang string }{
		{"42", "d1", "Hello, my order has not arrived", "EN"},
		{"42", "d1", "It was due on Monday", "en"},
		{"42", "d1", "Danke", "de"},
		{"7", "d2", "Bonjour", "fr"},
	} {
		in, err := c.Ingest(ctx, m.customer, m.dialog, client.NewMessage{Text: m.text, Language: m.lang})
		if err != nil {
			t.Fatalf("Ingest: %v", err)
		}
		if want := []int{1, 2, 3, 1}[i]; in.PendingMessages != want || in.CustomerID != m.customer || in.DialogID != m.dialog {
			t.Errorf("Ingest: got %+v, want %d pending", in, want)
		}
	}
	res, err := c.Consent(ctx, "d1", true)
	if err != nil || res != (client.ConsentResult{DialogID: "d1", CustomerID: "42", Consent: true, StoredMessages: 3}) {
		t.Errorf("Consent: got %+v, %v", res, err)
	}
	if _, err := c.Consent(ctx, "d2", true); err != nil {
		t.Fatal(err)
	}

	p, err := c.Page(ctx, client.Query{Limit: 2})
	if err != nil || len(p.Messages) != 2 || p.NextCursor == "" || p.Messages[0].Text != "Bonjour" {
		t.Errorf("Page: got %+v, %v", p, err)
	}
	if m := p.Messages[1]; m.CustomerID != "42" || m.DialogID != "d1" || m.Language != "de" || m.CreatedAt.Before(before) || m.CreatedAt.After(time.Now()) {
		t.Errorf("Page: message %+v", m)
	}
	var paged []client.Message
	for _, p := range collect(t, c.Pages(ctx, client.Query{Limit: 1})) {
		paged = append(paged, p.Messages...)
	}
	exported := collect(t, c.Export(ctx, client.Filter{}))
	if want := []string{"Bonjour", "Danke", "It was due on Monday", "Hello, my order has not arrived"}; !slices.Equal(texts(paged), want) || !slices.Equal(texts(exported), want) {
		t.Errorf("Pages: %q, Export: %q; want %q", texts(paged), texts(exported), want)
	}
	f := client.Filter{Language: "en", CustomerID: "42", DialogID: "d1", Since: exported[3].CreatedAt, Until: exported[2].CreatedAt}
	if got := texts(collect(t, c.Export(ctx, f))); !slices.Equal(got, []string{"Hello, my order has not arrived"}) {
		t.Errorf("Export(%+v): %q", f, got)
	}
	if got := collect(t, c.Pages(ctx, client.Query{Filter: f})); len(got) != 1 || len(got[0].Messages) != 1 {
		t.Errorf("Pages(%+v): %+v", f, got)
	}
	// Stopping early is fine.
	for range c.Export(ctx, client.Filter{}) {
		break
	}
	for range c.Pages(ctx, client.Query{Limit: 1}) {
		break
	}

	dec, err := c.Decision(ctx, "d1")
	if err != nil || !dec.Consent || dec.Messages != 3 || dec.CustomerID != "42" || dec.DecidedAt.IsZero() {
		t.Errorf("Decision: got %+v, %v", dec, err)
	}
	d, err := c.Dialogue(ctx, "d1")
	if err != nil || d.DialogID != "d1" || d.CustomerID != "42" || !d.DecidedAt.Equal(dec.DecidedAt) ||
		!slices.Equal(texts(d.Messages), []string{"Hello, my order has not arrived", "It was due on Monday", "Danke"}) {
		t.Errorf("Dialogue: got %+v, %v", d, err)
	}
	kinds := func() (out []string) {
		for _, r := range collect(t, c.CustomerData(ctx, "42")) {
			switch {
			case r.Message != nil:
				out = append(out, r.Kind+" "+r.Message.Text)
			case r.Decision != nil:
				out = append(out, fmt.Sprintf("%s %s %v %d", r.Kind, r.Decision.DialogID, r.Decision.Consent, r.Decision.Messages))
			case r.Erasure != nil:
				out = append(out, fmt.Sprintf("%s %s %d", r.Kind, r.Erasure.CustomerID, r.Erasure.Messages))
			}
		}
		return out
	}
	if got, want := kinds(), []string{"message Danke", "message It was due on Monday", "message Hello, my order has not arrived", "consent d1 true 3"}; !slices.Equal(got, want) {
		t.Errorf("CustomerData: got %q, want %q", got, want)
	}
	e, err := c.Erase(ctx, "42")
	if err != nil || e != (client.Erasure{CustomerID: "42", DeletedMessages: 3}) {
		t.Errorf("Erase: got %+v, %v", e, err)
	}
	if got, want := kinds(), []string{"consent d1 true 3", "erasure 42 3"}; !slices.Equal(got, want) {
		t.Errorf("CustomerData after the erasure: got %q, want %q", got, want)
	}
	res, err = c.Consent(ctx, "d2", false)
	if err != nil || res != (client.ConsentResult{DialogID: "d2", CustomerID: "7", DeletedMessages: 1}) {
		t.Errorf("refusal: got %+v, %v", res, err)
	}
}

func TestProblems(t *testing.T) {
	_, srv := service(t, nil)
	ctx := t.Context()
	c, _ := newClient(t, srv, "all", client.Options{}, nil)
	if _, err := c.Ingest(ctx, "42", "d1", client.NewMessage{Text: "hi", Language: "en"}); err != nil {
		t.Fatal(err)
	}

	_, err := c.Decision(ctx, "never")
	var p *client.Problem
	if !errors.As(err, &p) || !client.IsNotFound(err) || p.Status != 404 || p.Type != client.TypeNotFound || p.Detail == "" {
		t.Errorf("Decision of a dialogue never decided: got %#v", err)
	}
	if _, err := c.Dialogue(ctx, "d1"); !client.IsNotFound(err) {
		t.Errorf("Dialogue still pending: got %v, want not found", err)
	}
	_, err = c.Ingest(ctx, "42", "d2", client.NewMessage{Text: " ", Language: "not a tag"})
	if !errors.As(err, &p) || !client.IsInvalid(err) || len(p.Errors) != 2 || p.Errors[0].Field == "" {
		t.Errorf("an invalid message: got %#v, want 400 listing language and text", err)
	}
	if _, err := c.Ingest(ctx, "43", "d1", client.NewMessage{Text: "mine", Language: "en"}); !client.IsConflict(err) {
		t.Errorf("another customer's dialogue: got %v, want a conflict", err)
	}
	if _, err := c.Page(ctx, client.Query{Limit: 5000}); !client.IsInvalid(err) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a limit out of range: got %v", err)
	}
	if _, err := c.Page(ctx, client.Query{Filter: client.Filter{Since: time.Now(), Until: time.Now().Add(-time.Hour)}}); !client.IsInvalid(err) {
		t.Errorf("since after until: got %v", err)
	}
	for _, err := range c.Export(ctx, client.Filter{Language: "x_y"}) {
		if !client.IsInvalid(err) {
			t.Errorf("an export with a bad language: got %v", err)
		}
	}

	anonymous, _ := newClient(t, srv, "", client.Options{}, nil)
	if _, err := anonymous.Page(ctx, client.Query{}); !errors.As(err, &p) || p.Type != client.TypeUnauthorized || p.Status != 401 {
		t.Errorf("no credential: got %v", err)
	}
	bot, _ := newClient(t, srv, "bot", client.Options{}, nil)
	if _, err := bot.Page(ctx, client.Query{}); !errors.As(err, &p) || p.Type != client.TypeForbidden {
		t.Errorf("a key without analyst: got %v", err)
	}
	// A wrong base URL is not "not found".
	wrong, err := client.New(srv.URL+"/v2", client.Options{Token: client.StaticToken(secret("all"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Decision(ctx, "d1"); !errors.As(err, &p) || p.Type != client.TypeNoSuchRoute || client.IsNotFound(err) {
		t.Errorf("a wrong base URL: got %v, want no-such-route, not IsNotFound", err)
	}
}

func TestBaseURLWithAPathPrefix(t *testing.T) {
	a, _ := service(t, nil)
	srv := httptest.NewServer(http.StripPrefix("/data-api", a.Handler))
	defer srv.Close()
	c, err := client.New(srv.URL+"/data-api/", client.Options{Token: client.StaticToken(secret("all"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ingest(t.Context(), "42", "d1", client.NewMessage{Text: "hi", Language: "en"}); err != nil {
		t.Errorf("Ingest behind a prefix: %v", err)
	}
	for _, bad := range []string{"", "data-api.example.com", "ftp://x", "http://", "http://x/?a=1", "http://x/#f", "http://[::1"} {
		if _, err := client.New(bad, client.Options{}); err == nil {
			t.Errorf("New(%q) accepted, want an error", bad)
		}
	}
}

// fillPendingStore configures a pending store of one dialogue and fills it.
func fillPendingStore(t *testing.T) (*app.App, *httptest.Server) {
	t.Helper()
	a, srv := service(t, func(c *config.Config) { c.Dialogues.MaxPending = 1 })
	if _, err := a.Service.Ingest(t.Context(), model.Message{CustomerID: "c", DialogueID: "first", Language: "en", Text: "x"}); err != nil {
		t.Fatal(err)
	}
	return a, srv
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	a, srv := fillPendingStore(t)
	rt := srv.Client().Transport
	// The first attempt finds the store full; the store has room once the
	// first dialogue is decided, which the test does upon the 503.
	c, attempts := newClient(t, srv, "bot", client.Options{}, func(r *http.Request, n int) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if n == 1 && err == nil && resp.StatusCode == http.StatusServiceUnavailable {
			if _, err := a.Service.Consent(context.Background(), "first", false, ""); err != nil {
				t.Error(err)
			}
		}
		return resp, err
	})
	start := time.Now()
	in, err := c.Ingest(t.Context(), "c", "second", client.NewMessage{Text: "hi", Language: "en"})
	took := time.Since(start)
	if err != nil || in.PendingMessages != 1 {
		t.Fatalf("Ingest: got %+v, %v", in, err)
	}
	if n := attempts.Load(); n != 2 || took < time.Second {
		t.Errorf("got %d attempts in %v, want 2 after Retry-After: 1", n, took)
	}
}

func TestRetryBounds(t *testing.T) {
	_, srv := fillPendingStore(t)
	ingest := func(c *client.Client, ctx context.Context) error {
		_, err := c.Ingest(ctx, "c", "second", client.NewMessage{Text: "hi", Language: "en"})
		return err
	}
	var p *client.Problem
	for name, tc := range map[string]struct {
		retry    client.Retry
		attempts int32
	}{
		"Retry-After beyond MaxWait": {client.Retry{MaxWait: 500 * time.Millisecond}, 1},
		"one attempt":                {client.Retry{Attempts: 1}, 1},
		"two attempts":               {client.Retry{Attempts: 2}, 2},
	} {
		c, attempts := newClient(t, srv, "bot", client.Options{Retry: tc.retry}, nil)
		start := time.Now()
		err := ingest(c, t.Context())
		took := time.Since(start)
		if !errors.As(err, &p) || !client.IsUnavailable(err) || p.Type != client.TypePendingStoreFull || p.RetryAfter != time.Second {
			t.Errorf("%s: got %v, want the 503 problem with Retry-After 1s", name, err)
		}
		if n := attempts.Load(); n != tc.attempts || took >= time.Duration(tc.attempts)*time.Second {
			t.Errorf("%s: got %d attempts in %v, want %d", name, n, took, tc.attempts)
		}
	}

	// The context ends the wait for a retry.
	ctx, cancel := context.WithCancel(t.Context())
	rt := srv.Client().Transport
	c, _ := newClient(t, srv, "bot", client.Options{}, func(r *http.Request, _ int) (*http.Response, error) {
		defer cancel()
		return rt.RoundTrip(r)
	})
	start := time.Now()
	if err := ingest(c, ctx); !errors.Is(err, context.Canceled) || time.Since(start) >= time.Second {
		t.Errorf("cancelled while waiting: got %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}

func TestIngestIsRetriedOnlyWhenNothingWasAccepted(t *testing.T) {
	_, srv := service(t, nil)
	ctx := t.Context()
	rt := srv.Client().Transport
	errLost := errors.New("connection reset by peer")
	pending := func(dialog string) int {
		t.Helper()
		c, _ := newClient(t, srv, "bot", client.Options{}, nil)
		in, err := c.Ingest(ctx, "c", dialog, client.NewMessage{Text: "probe", Language: "en"})
		if err != nil {
			t.Fatal(err)
		}
		return in.PendingMessages - 1
	}

	// The reply is lost: the message may be held; no retry.
	c, attempts := newClient(t, srv, "bot", client.Options{}, func(r *http.Request, _ int) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if err == nil {
			resp.Body.Close()
			err = errLost
		}
		return nil, err
	})
	if _, err := c.Ingest(ctx, "c", "lost", client.NewMessage{Text: "hi", Language: "en"}); !errors.Is(err, errLost) || attempts.Load() != 1 {
		t.Errorf("a lost reply: got %v after %d attempts, want the error after 1", err, attempts.Load())
	}
	if n := pending("lost"); n != 1 {
		t.Errorf("a lost reply: %d messages held, want 1", n)
	}

	// A proxy's 502: not retried either.
	c, attempts = newClient(t, srv, "bot", client.Options{}, func(*http.Request, int) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{"Content-Type": {"text/html"}}, Body: io.NopCloser(strings.NewReader("<h1>502</h1>"))}, nil
	})
	var p *client.Problem
	if _, err := c.Ingest(ctx, "c", "proxied", client.NewMessage{Text: "hi", Language: "en"}); !errors.As(err, &p) || p.Status != 502 || p.Type != "about:blank" || attempts.Load() != 1 {
		t.Errorf("a proxy's 502: got %#v after %d attempts", err, attempts.Load())
	}

	// No connection was made: retried.
	c, attempts = newClient(t, srv, "bot", client.Options{}, func(r *http.Request, n int) (*http.Response, error) {
		if n == 1 {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		return rt.RoundTrip(r)
	})
	if in, err := c.Ingest(ctx, "c", "refused", client.NewMessage{Text: "hi", Language: "en"}); err != nil || in.PendingMessages != 1 || attempts.Load() != 2 {
		t.Errorf("a refused connection: got %+v, %v after %d attempts, want 1 message after 2", in, err, attempts.Load())
	}
}

func TestConsentRetryIsSafe(t *testing.T) {
	_, srv := service(t, nil)
	ctx := t.Context()
	rt := srv.Client().Transport
	c, _ := newClient(t, srv, "all", client.Options{}, nil)
	for _, text := range []string{"a", "b"} {
		if _, err := c.Ingest(ctx, "c", "d1", client.NewMessage{Text: text, Language: "en"}); err != nil {
			t.Fatal(err)
		}
	}
	// The first attempt commits, and its reply is lost.
	lossy, attempts := newClient(t, srv, "all", client.Options{}, func(r *http.Request, n int) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if n == 1 && err == nil {
			resp.Body.Close()
			return nil, errors.New("connection reset by peer")
		}
		return resp, err
	})
	res, err := lossy.Consent(ctx, "d1", true)
	if err != nil || !res.Consent || res.StoredMessages != 0 || attempts.Load() != 2 {
		t.Errorf("Consent with its first reply lost: got %+v, %v after %d attempts; want consent, 0 stored (already) after 2", res, err, attempts.Load())
	}
	if dec, err := c.Decision(ctx, "d1"); err != nil || dec.Messages != 2 {
		t.Errorf("Decision: got %+v, %v; want 2 messages stored", dec, err)
	}
	if got := collect(t, c.Export(ctx, client.Filter{DialogID: "d1"})); len(got) != 2 {
		t.Errorf("stored %d messages, want 2: nothing twice", len(got))
	}
}

// TestExportWaitsForASlot holds the only export slot with an export that
// stops reading, and checks that a second export is retried after its 503
// until the first ends.
func TestExportWaitsForASlot(t *testing.T) {
	a, srv := service(t, func(c *config.Config) { c.Database.MaxExports = 1 })
	const rows = 20_000 // more than the connection's buffers hold
	msgs := make([]model.Message, rows)
	for i := range msgs {
		msgs[i] = model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: strings.Repeat("x", 150), CreatedAt: time.Unix(0, int64(i+1))}
	}
	if err := a.DB.SaveConsents(t.Context(), []model.Consent{{Decision: model.Decision{DialogueID: "d", CustomerID: "c", Consent: true}, Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	first, _ := newClient(t, srv, "analyst", client.Options{}, nil)
	next, stop := iter.Pull2(first.Export(t.Context(), client.Filter{}))
	defer stop()
	if _, err, ok := next(); err != nil || !ok {
		t.Fatalf("first export: %v", err)
	}
	rt := srv.Client().Transport
	var statuses []int
	second, _ := newClient(t, srv, "analyst", client.Options{Retry: client.Retry{Attempts: 10}}, func(r *http.Request, _ int) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if err == nil {
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == http.StatusServiceUnavailable {
				stop() // the first analyst gives up
			}
		}
		return resp, err
	})
	if got := collect(t, second.Export(t.Context(), client.Filter{})); len(got) != rows {
		t.Errorf("second export: %d rows, want %d", len(got), rows)
	}
	if len(statuses) < 2 || statuses[0] != 503 || statuses[len(statuses)-1] != 200 {
		t.Errorf("second export: statuses %v, want 503 then, after retries, 200", statuses)
	}
}

func TestExportCutShortIsAnError(t *testing.T) {
	a, srv := service(t, nil)
	var msgs []model.Message
	for i := range 100 {
		msgs = append(msgs, model.Message{CustomerID: "c", DialogueID: "d", Language: "en", Text: fmt.Sprint("m", i), CreatedAt: time.Unix(0, int64(i+1))})
	}
	if err := a.DB.SaveConsents(t.Context(), []model.Consent{{Decision: model.Decision{DialogueID: "d", CustomerID: "c", Consent: true}, Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	rt := srv.Client().Transport
	// The connection drops after 1,000 bytes of the body, as a stream that
	// the service cuts ends: without its last chunk.
	c, attempts := newClient(t, srv, "all", client.Options{}, func(r *http.Request, _ int) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if err == nil {
			resp.Body = cutBody{io.LimitReader(resp.Body, 1000), resp.Body}
		}
		return resp, err
	})
	var got int
	var last error
	for _, err := range c.Export(t.Context(), client.Filter{}) {
		if err != nil {
			last = err
			break
		}
		got++
	}
	if last == nil || !errors.Is(last, io.ErrUnexpectedEOF) || got == 0 || got >= 100 || attempts.Load() != 1 {
		t.Errorf("a cut export: %d messages, then %v, after %d attempts; want some, then io.ErrUnexpectedEOF, no retry", got, last, attempts.Load())
	}
}

// cutBody ends with io.ErrUnexpectedEOF where its reader ends.
type cutBody struct {
	r io.Reader
	io.Closer
}

func (b cutBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func TestTokenSource(t *testing.T) {
	_, srv := service(t, nil)
	var calls atomic.Int32
	errIdP := errors.New("identity provider down")
	c, attempts := newClient(t, srv, "", client.Options{Token: func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return "", errIdP
		}
		return secret("all"), nil
	}}, nil)
	if _, err := c.Decision(t.Context(), "d1"); !errors.Is(err, errIdP) || attempts.Load() != 0 {
		t.Errorf("a failing token source: got %v after %d attempts, want its error before any", err, attempts.Load())
	}
	if _, err := c.Decision(t.Context(), "d1"); !client.IsNotFound(err) {
		t.Errorf("with a token: got %v, want the service's 404", err)
	}
}

// TestCustomerDataRefusesUnknownRecords reads a document whose second line
// is of a kind this client does not know, and one cut short: each ends the
// iteration with an error, after the records before it.
func TestCustomerDataRefusesUnknownRecords(t *testing.T) {
	_, srv := service(t, nil)
	for name, body := range map[string]string{
		"unknown kind": `{"kind":"consent","dialogId":"d1","consent":true}` + "\n" + `{"kind":"opinion","text":"x"}` + "\n",
		"cut short":    `{"kind":"consent","dialogId":"d1","consent":true}` + "\n" + `{"kind":"erasure","custo`,
	} {
		c, _ := newClient(t, srv, "all", client.Options{}, func(r *http.Request, _ int) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/x-ndjson"}},
				Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
		})
		var got []client.CustomerRecord
		var last error
		for r, err := range c.CustomerData(t.Context(), "42") {
			if err != nil {
				last = err
				break
			}
			got = append(got, r)
		}
		if len(got) != 1 || got[0].Decision == nil || got[0].Decision.DialogID != "d1" || last == nil {
			t.Errorf("%s: got %+v, then %v; want the consent, then an error", name, got, last)
		}
	}
}
