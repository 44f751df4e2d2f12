package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// NewMessage is a customer message to hold until its dialogue's decision.
type NewMessage struct {
	Text     string `json:"text"`
	Language string `json:"language"` // a BCP 47 tag, such as "en" or "pt-BR"
}

// Ingested is the reply to Ingest.
type Ingested struct {
	CustomerID      string `json:"customerId"`
	DialogID        string `json:"dialogId"`
	PendingMessages int    `json:"pendingMessages"` // the dialogue's messages held so far
}

// Ingest holds a message of customerID's dialogue dialogID in the service's
// memory until the dialogue's consent decision. It is not retried unless
// the failure proves nothing was accepted (see the package documentation):
// after any other error the message may or may not be held.
func (c *Client) Ingest(ctx context.Context, customerID, dialogID string, m NewMessage) (Ingested, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return Ingested{}, err
	}
	var out Ingested
	err = c.call(ctx, request{method: http.MethodPost, path: []string{"data", customerID, dialogID}, body: body}, &out)
	return out, err
}

// ConsentResult is the reply to Consent.
type ConsentResult struct {
	DialogID   string `json:"dialogId"`
	CustomerID string `json:"customerId"` // empty for a refusal of a dialogue never seen
	Consent    bool   `json:"consent"`
	// StoredMessages is how many messages a consent stored: 0 when a
	// retried consent finds them stored already.
	StoredMessages int `json:"storedMessages"`
	// DeletedMessages (stored messages deleted) and DroppedMessages
	// (pending messages dropped) are what a refusal did.
	DeletedMessages int `json:"deletedMessages"`
	DroppedMessages int `json:"droppedMessages"`
}

// Consent records the customer's decision on dialogID: true stores its
// pending messages, false drops them and deletes any stored. A consent to a
// dialogue with nothing pending and no earlier consent is a not-found
// Problem (IsNotFound). Consent is retried: see the package documentation
// for why that is safe.
func (c *Client) Consent(ctx context.Context, dialogID string, consent bool) (ConsentResult, error) {
	var out ConsentResult
	err := c.call(ctx, request{method: http.MethodPost, path: []string{"consents", dialogID}, body: []byte(strconv.FormatBool(consent)), idempotent: true}, &out)
	return out, err
}

// Decision is a consent decision recorded for a dialogue.
type Decision struct {
	DialogID   string    `json:"dialogId"`
	CustomerID string    `json:"customerId"`
	Consent    bool      `json:"consent"`
	DecidedAt  time.Time `json:"decidedAt"`
	Messages   int       `json:"messages"` // stored by a consent, deleted by a refusal
}

// Decision returns the latest decision recorded for dialogID; none is a
// not-found Problem (IsNotFound).
func (c *Client) Decision(ctx context.Context, dialogID string) (Decision, error) {
	var out Decision
	err := c.call(ctx, request{method: http.MethodGet, path: []string{"consents", dialogID}, idempotent: true}, &out)
	return out, err
}

// Message is a consented message.
type Message struct {
	CustomerID string    `json:"customerId"`
	DialogID   string    `json:"dialogId"`
	Language   string    `json:"language"`
	Text       string    `json:"text"`
	CreatedAt  time.Time `json:"createdAt"` // when the service received it
}

// Filter selects consented messages; every field set must match. Zero
// fields match everything.
type Filter struct {
	Language   string
	CustomerID string
	DialogID   string
	Since      time.Time // createdAt at or after
	Until      time.Time // createdAt before
}

func (f Filter) values() url.Values {
	v := url.Values{}
	for name, s := range map[string]string{"language": f.Language, "customerId": f.CustomerID, "dialogId": f.DialogID} {
		if s != "" {
			v.Set(name, s)
		}
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	return v
}

// Query asks for one page of consented messages.
type Query struct {
	Filter
	Limit  int    // 1 to 1000; 0 is the service's default, 100
	Cursor string // NextCursor of the previous page, with the same Filter
}

// Page is one page of consented messages, newest first.
type Page struct {
	Messages   []Message `json:"data"`
	NextCursor string    `json:"nextCursor"` // empty on the last page
}

// Page returns one page of the consented messages q selects, newest first.
func (c *Client) Page(ctx context.Context, q Query) (Page, error) {
	v := q.values()
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	var out Page
	err := c.call(ctx, request{method: http.MethodGet, path: []string{"data"}, query: v, idempotent: true}, &out)
	return out, err
}

// Pages returns the pages of the consented messages q selects, from q's
// cursor on, following NextCursor to the last page. An error ends the
// iteration.
func (c *Client) Pages(ctx context.Context, q Query) iter.Seq2[Page, error] {
	return func(yield func(Page, error) bool) {
		for {
			p, err := c.Page(ctx, q)
			if err != nil {
				yield(Page{}, err)
				return
			}
			if !yield(p, nil) || p.NextCursor == "" {
				return
			}
			q.Cursor = p.NextCursor
		}
	}
}

// Export returns every consented message f selects, newest first, as the
// service streams them: memory stays flat however many there are. An
// error ends the iteration: one before the stream begins (after the
// retries), or a stream cut short, which is not resumed. Stopping the
// iteration early closes the stream. The service cuts an export whose
// client takes no data for its stall timeout (30 s by default): keep
// iterating, or stop.
func (c *Client) Export(ctx context.Context, f Filter) iter.Seq2[Message, error] {
	return func(yield func(Message, error) bool) {
		resp, err := c.do(ctx, request{method: http.MethodGet, path: []string{"data", "export"}, query: f.values(), accept: "application/x-ndjson", idempotent: true})
		if err != nil {
			yield(Message{}, err)
			return
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var m Message
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(Message{}, fmt.Errorf("data api: export cut short: %w", err))
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// Dialogue is a consented dialogue.
type Dialogue struct {
	DialogID   string    `json:"dialogId"`
	CustomerID string    `json:"customerId"`
	DecidedAt  time.Time `json:"decidedAt"` // its latest consent
	Messages   []Message `json:"messages"`  // oldest first
}

// Dialogue returns the consented dialogue dialogID. Nothing stored for it
// is a not-found Problem (IsNotFound); a dialogue too large for one reply
// is a Problem of Type TypeTooLarge: read it with Pages and Filter.DialogID.
func (c *Client) Dialogue(ctx context.Context, dialogID string) (Dialogue, error) {
	var out Dialogue
	err := c.call(ctx, request{method: http.MethodGet, path: []string{"dialogues", dialogID}, idempotent: true}, &out)
	return out, err
}

// Erasure is the reply to Erase.
type Erasure struct {
	CustomerID      string `json:"customerId"`
	DeletedMessages int    `json:"deletedMessages"` // stored messages deleted
	DroppedMessages int    `json:"droppedMessages"` // pending messages dropped
}

// Erase deletes every stored message of customerID and drops their pending
// dialogues. It is idempotent, and retried.
func (c *Client) Erase(ctx context.Context, customerID string) (Erasure, error) {
	var out Erasure
	err := c.call(ctx, request{method: http.MethodDelete, path: []string{"customers", customerID, "data"}, idempotent: true}, &out)
	return out, err
}

// CustomerRecord is one record of what the service stores about a
// customer: Kind says which of Message, Decision and Erasure is set.
type CustomerRecord struct {
	Kind     string // "message", "consent" or "erasure"
	Message  *Message
	Decision *Decision
	Erasure  *ErasureRecord
}

// ErasureRecord records an erasure of a customer's data.
type ErasureRecord struct {
	CustomerID string    `json:"customerId"`
	ErasedAt   time.Time `json:"erasedAt"`
	Messages   int       `json:"messages"` // stored messages it deleted
}

// CustomerData returns everything the service stores about customerID, for
// the customer's right of access (role admin): their messages, newest
// first, then their consent decisions and erasures, oldest first, streamed
// as Export streams. An error ends the iteration, as Export's does; a
// record of a kind this client does not know is one.
func (c *Client) CustomerData(ctx context.Context, customerID string) iter.Seq2[CustomerRecord, error] {
	return func(yield func(CustomerRecord, error) bool) {
		resp, err := c.do(ctx, request{method: http.MethodGet, path: []string{"customers", customerID, "data"}, accept: "application/x-ndjson", idempotent: true})
		if err != nil {
			yield(CustomerRecord{}, err)
			return
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var line json.RawMessage
			err := dec.Decode(&line)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(CustomerRecord{}, fmt.Errorf("data api: customer data cut short: %w", err))
				return
			}
			r, err := customerRecord(line)
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

func customerRecord(line json.RawMessage) (CustomerRecord, error) {
	var r CustomerRecord
	var kind struct{ Kind string }
	err := json.Unmarshal(line, &kind)
	switch r.Kind = kind.Kind; {
	case err != nil:
	case r.Kind == "message":
		r.Message = new(Message)
		err = json.Unmarshal(line, r.Message)
	case r.Kind == "consent":
		r.Decision = new(Decision)
		err = json.Unmarshal(line, r.Decision)
	case r.Kind == "erasure":
		r.Erasure = new(ErasureRecord)
		err = json.Unmarshal(line, r.Erasure)
	default:
		err = fmt.Errorf("data api: a customer record of unknown kind %q", r.Kind)
	}
	return r, err
}

// Healthy reports whether the service's process serves (GET /healthz).
func (c *Client) Healthy(ctx context.Context) error {
	return c.probe(ctx, "healthz")
}

// Ready reports whether the service can take traffic (GET /readyz): its
// database answers and it is not shutting down. A 503 is retried within
// the bounds; what remains of it is a Problem (IsUnavailable).
func (c *Client) Ready(ctx context.Context) error {
	return c.probe(ctx, "readyz")
}

func (c *Client) probe(ctx context.Context, path string) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: []string{path}, idempotent: true})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
