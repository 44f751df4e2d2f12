// Package client calls Data API over HTTP: typed calls for every endpoint of
// the chatbot's backend and of analysts, problem responses as *Problem
// errors, and retries that are safe.
//
// # Retries
//
// A call is retried when the service answers 503 (its pending store is
// full, every export slot is taken, its database does not answer, or it is
// shutting down), waiting what the reply's Retry-After asks, and, for calls
// that are safe to repeat, when the request or its reply is lost on the
// way. Retries are bounded by Retry.Attempts and Retry.MaxWait, and end
// when the call's context does: a wait that would overrun either bound is
// not started, and the last error is returned instead.
//
// Which calls are safe to repeat follows the contract:
//   - Reads (Decision, Page, Pages, Export, Dialogue, Healthy, Ready) change
//     nothing.
//   - Erase is idempotent: erasing twice deletes nothing more.
//   - Consent is safe: the contract makes a retried consent idempotent. A
//     refusal (false) records the refusal again and deletes nothing more;
//     a consent (true) whose first attempt committed finds nothing pending
//     and a latest decision of true, and answers 200 with StoredMessages 0
//     rather than storing anything twice. (So a retried consent's
//     StoredMessages can be 0 although the first attempt stored messages;
//     Decision tells how many.) The one case where a retry does more than
//     the first attempt: a message sent for the same dialogId between the
//     two starts a new dialogue, which the retried true then consents to.
//   - Ingest is not: a message is held each time it is received, so a
//     retry after a lost reply could hold it twice. Ingest is retried only
//     when the failure proves that nothing was accepted: the connection was
//     never made, or the service answered a 503 problem (a rejected request
//     changes nothing). Any other failure (a reset connection, a timeout
//     waiting for the reply, a proxy's 502) is returned to the caller, who
//     knows whether a duplicate matters.
//
// Exports are retried only until their stream begins; a stream cut short
// (the service's stall timeout, a dropped connection) ends the iterator
// with an error and is not resumed.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one Data API service. It is safe for concurrent use.
type Client struct {
	base  string // scheme, host and path prefix, without a trailing slash
	http  *http.Client
	token TokenSource
	retry Retry
}

// Options configures a Client. The zero value is valid: no credential, the
// default retries.
type Options struct {
	// HTTPClient sends the requests; nil is a client of its own with no
	// overall timeout (an export takes as long as it takes): bound each
	// call with its context instead.
	HTTPClient *http.Client
	// Token gives the bearer credential, an API key or an access token of
	// the service's OpenID Connect provider; nil sends none.
	Token TokenSource
	// Retry bounds retries.
	Retry Retry
}

// TokenSource returns the bearer credential to send. It is called before
// each attempt, so that a source of short-lived tokens can renew them.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken returns a TokenSource that always gives token, such as an
// API key.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

// Retry bounds the retries of one call.
type Retry struct {
	// Attempts is the most tries of a call, the first included: 1 never
	// retries; 0 means 3.
	Attempts int
	// MaxWait is the most time spent waiting between the tries of a call,
	// all waits together; 0 means 10 seconds. A 503 whose Retry-After
	// asks for more than what is left is returned at once.
	MaxWait time.Duration
}

// Default retry bounds, and the wait before a retry that no Retry-After
// sets: it doubles with each retry.
const (
	defaultAttempts = 3
	defaultMaxWait  = 10 * time.Second
	firstBackoff    = 100 * time.Millisecond
)

// New returns a Client of the service at baseURL, such as
// https://data-api.example.com or http://127.0.0.1:8080/prefix.
func New(baseURL string, o Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("data api client: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("data api client: base URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Retry.Attempts <= 0 {
		o.Retry.Attempts = defaultAttempts
	}
	if o.Retry.MaxWait <= 0 {
		o.Retry.MaxWait = defaultMaxWait
	}
	return &Client{base: strings.TrimSuffix(u.String(), "/"), http: o.HTTPClient, token: o.Token, retry: o.Retry}, nil
}

// request is one call to the service.
type request struct {
	method string
	path   []string // the path's segments, escaped here
	query  url.Values
	body   []byte // JSON, or nil
	accept string
	// idempotent calls are retried whatever went wrong; others only when
	// the failure proves that nothing was accepted.
	idempotent bool
}

// do sends r, retrying as the package documents, and returns a response
// with a 2xx status, whose body the caller must close, or an error: a
// *Problem for any other status.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		// A credential that cannot be had is the token source's to retry.
		var token string
		if c.token != nil {
			var err error
			if token, err = c.token(ctx); err != nil {
				return nil, fmt.Errorf("data api: credential: %w", err)
			}
		}
		resp, err := c.send(ctx, r, token)
		var (
			retry bool
			wait  = firstBackoff << (attempt - 1)
		)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, err
			}
			retry = r.idempotent || notSent(err)
		case resp.StatusCode < 300:
			return resp, nil
		default:
			p := readProblem(resp)
			err = p
			// A 503 problem from the service means it changed nothing.
			retry = resp.StatusCode == http.StatusServiceUnavailable && (r.idempotent || p.fromService)
			if p.RetryAfter > 0 {
				wait = p.RetryAfter
			}
		}
		if !retry || attempt >= c.retry.Attempts || waited+wait > c.retry.MaxWait {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("data api: waiting to retry: %w (after %w)", ctx.Err(), err)
		case <-t.C:
		}
		waited += wait
	}
}

// send makes one attempt of r with the bearer token, if any.
func (c *Client) send(ctx context.Context, r request, token string) (*http.Response, error) {
	var b strings.Builder
	b.WriteString(c.base)
	for _, seg := range r.path {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(seg))
	}
	if len(r.query) > 0 {
		b.WriteByte('?')
		b.WriteString(r.query.Encode())
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, b.String(), body)
	if err != nil {
		return nil, fmt.Errorf("data api: %w", err)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("data api: %w", err)
	}
	return resp, nil
}

// notSent reports whether err proves that the request never reached the
// service: no connection was made.
func notSent(err error) bool {
	var (
		op  *net.OpError
		dns *net.DNSError
	)
	return errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns)
}

// call sends r and decodes the JSON reply into out.
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("data api: %s %s: reading the reply: %w", r.method, "/"+strings.Join(r.path, "/"), err)
	}
	return nil
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
