package main

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// languages are the tags messages are sent with, already in the canonical
// form the service stores.
var languages = [...]string{"en", "de", "fr", "pt-BR"}

// textSize is the length in bytes of every message text, about that of a
// line typed into a chat.
const textSize = 76

// filler pads message texts to textSize; it holds no JSON special character.
const filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore"

// pageLimit is the page size analysts ask for.
const pageLimit = 100

// outcome is what became of one message, as the client saw it.
type outcome uint8

const (
	acked   outcome = iota + 1 // 202: the service holds it
	refused                    // another status: the service holds nothing of it
	unknown                    // no complete answer: it may or may not be held
)

// dialogue is what the consistency check needs to know of one dialogue whose
// consent decision the service acknowledged.
type dialogue struct {
	seq      int64 // number within the run, which makes its id
	customer int   // index in the customer pool
	consent  bool
	stored   int // storedMessages of the reply to a true decision
	outcomes []outcome
}

// loader sends load to one service at a time. Every id it makes starts with
// runID, so that no two runs share a dialogue or a customer.
type loader struct {
	opts     options
	client   *http.Client
	progress io.Writer
	runID    string
	seq      atomic.Int64  // dialogues started so far in this run
	spread   atomic.Uint64 // requests spread over -url and -also so far
}

// newLoader returns a loader whose client keeps a connection alive for each
// worker.
func newLoader(o options, progress io.Writer) *loader {
	perHost := o.conns + o.analysts + deepWalkers + checkWorkers
	transport := &http.Transport{
		// No proxy: the tool talks only to the URL it is given.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          perHost,
		MaxIdleConnsPerHost:   perHost,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	return &loader{
		opts: o,
		client: &http.Client{
			Transport:     transport,
			Timeout:       o.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		progress: progress,
		runID:    "b" + cryptorand.Text()[:8],
	}
}

func (l *loader) customerID(i int) string { return l.runID + "-c" + strconv.Itoa(i) }

func (l *loader) dialogueID(seq int64) string { return l.runID + "-d" + strconv.FormatInt(seq, 10) }

// text returns message i of dialogue seq: unique within the run, so that a
// message stored twice can be told from two messages.
func (l *loader) text(seq int64, i int) string {
	s := "dialogue " + strconv.FormatInt(seq, 10) + " message " + strconv.Itoa(i) + ": "
	if len(s) < textSize {
		s += filler[:textSize-len(s)]
	}
	return s
}

// send sends one request with the key, if any, to the next instance in
// turn when -also names more than one.
func (l *loader) send(ctx context.Context, method, target, body string) (*http.Response, error) {
	if primary := l.opts.target.String(); len(l.opts.also) > 0 && strings.HasPrefix(target, primary) {
		if i := l.spread.Add(1) % uint64(len(l.opts.also)+1); i > 0 {
			target = l.opts.also[i-1] + target[len(primary):]
		}
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if l.opts.key != "" {
		req.Header.Set("Authorization", "Bearer "+l.opts.key)
	}
	return l.client.Do(req)
}

// phaseKind is what the workers of a phase do.
type phaseKind uint8

const (
	kindChat   phaseKind = iota // the chatbot's messages and decisions, and analysts
	kindQuery                   // analysts' first pages and deep walks (query mode)
	kindExport                  // one export of the whole data set (query mode)
)

// phase is one bout of load against one server.
type phase struct {
	name     string
	kind     phaseKind
	base     string // the server's base URL, without a trailing slash
	duration time.Duration
	consents bool // end each dialogue with a consent decision
	analysts int

	// Query phases only.
	filters   *filterPool // values the query workers filter on
	walkers   int         // workers that follow nextCursor to deepPages
	deepPages int
}

// mainPhase is the phase the flags describe.
func (l *loader) mainPhase() phase {
	p := phase{name: "main (" + l.opts.mode + ")", kind: kindChat, base: l.opts.target.String(), duration: l.opts.duration}
	if l.opts.mode == modeFull {
		p.consents, p.analysts = true, l.opts.analysts
	}
	return p
}

// phaseResult is what a phase measured and the dialogues it had decided.
type phaseResult struct {
	phase
	workers int
	elapsed time.Duration
	stats   [numEndpoints]*endpointStats
	decided []dialogue

	walks, shortWalks int64 // deep walks that reached deepPages, and that met the last page first
}

// session is a phase under way.
type session struct {
	*loader
	phase
	ctx  context.Context // cancelled on interrupt only: ends requests in flight
	stop context.Context // done when no new request may start
	left atomic.Int64    // requests the phase may still start

	stats [numEndpoints]*endpointStats

	mu      sync.Mutex
	decided []dialogue

	walks, shortWalks atomic.Int64
}

// runPhase sends the load p describes until its duration is over or
// -max-requests were sent, waits for the requests in flight and returns
// what it measured.
func (l *loader) runPhase(ctx context.Context, p phase) phaseResult {
	workers := l.opts.conns
	switch p.kind {
	case kindChat:
		fmt.Fprintf(l.progress, "running %s: %d workers, %d analysts, for %s...\n", p.name, workers, p.analysts, p.duration)
	case kindQuery:
		fmt.Fprintf(l.progress, "running %s: %d workers, %s to page %d, for %s...\n", p.name, workers, plural(p.walkers, "deep walker"), p.deepPages, p.duration)
	case kindExport:
		workers = 1
		fmt.Fprintf(l.progress, "running %s...\n", p.name)
	}
	stop, cancel := context.WithTimeout(ctx, p.duration)
	defer cancel()
	s := &session{loader: l, phase: p, ctx: ctx, stop: stop}
	s.left.Store(l.opts.maxRequests)
	for i := range s.stats {
		s.stats[i] = newEndpointStats(l.opts.timeout)
	}

	start := time.Now()
	var wg sync.WaitGroup
	switch p.kind {
	case kindChat:
		for range workers {
			wg.Go(s.chat)
		}
		for range p.analysts {
			wg.Go(s.analyse)
		}
	case kindQuery:
		for i := range workers {
			wg.Go(func() { s.query(i) })
		}
		for range p.walkers {
			wg.Go(s.walk)
		}
	case kindExport:
		wg.Go(s.exportAll)
	}
	wg.Wait()
	return phaseResult{
		phase:      p,
		workers:    workers,
		elapsed:    time.Since(start),
		stats:      s.stats,
		decided:    s.decided,
		walks:      s.walks.Load(),
		shortWalks: s.shortWalks.Load(),
	}
}

// next reports whether one more request may start, and counts it.
func (s *session) next() bool {
	return s.stop.Err() == nil && s.left.Add(-1) >= 0
}

// chat plays the chatbot's background job: dialogue after dialogue, each
// message in turn, then, if the phase has them, the customer's decision. A
// dialogue cut short by the end of the phase stays pending until its TTL.
func (s *session) chat() {
	for {
		d := dialogue{
			seq:      s.seq.Add(1),
			customer: rand.IntN(s.opts.customers),
			outcomes: make([]outcome, s.opts.messages),
		}
		dialogueID := s.dialogueID(d.seq)
		msgURL := s.base + "/data/" + s.customerID(d.customer) + "/" + dialogueID
		lang := languages[rand.IntN(len(languages))]
		for i := range d.outcomes {
			if !s.next() {
				return
			}
			d.outcomes[i] = s.message(msgURL, s.text(d.seq, i), lang)
		}
		if !s.consents {
			continue
		}
		if !s.next() {
			return
		}
		d.consent = rand.Float64() < s.opts.trueShare
		var ok bool
		if d.stored, ok = s.decide(dialogueID, d.consent); ok {
			s.mu.Lock()
			s.decided = append(s.decided, d)
			s.mu.Unlock()
		}
	}
}

// message sends one customer message.
func (s *session) message(target, text, lang string) outcome {
	// text and lang hold no character that JSON escapes.
	body := `{"text":"` + text + `","language":"` + lang + `"}`
	switch s.do(epIngest, http.MethodPost, target, body, nil) {
	case http.StatusAccepted:
		return acked
	case 0:
		return unknown
	default:
		return refused
	}
}

// decide sends a dialogue's consent decision and reports whether the service
// acknowledged it, with the number of messages a true decision stored.
func (s *session) decide(dialogueID string, consent bool) (stored int, ok bool) {
	ep, body := epConsentFalse, "false"
	var read func(io.Reader) (int64, error)
	if consent {
		ep, body = epConsentTrue, "true"
		read = func(r io.Reader) (int64, error) {
			var reply struct {
				StoredMessages *int `json:"storedMessages"`
			}
			if err := json.NewDecoder(r).Decode(&reply); err != nil || reply.StoredMessages == nil {
				return 0, errBadBody
			}
			stored = *reply.StoredMessages
			return 0, nil
		}
	}
	return stored, s.do(ep, http.MethodPost, s.base+"/consents/"+dialogueID, body, read) == http.StatusOK
}

// analyse plays an analyst: queries with random filters, each followed for
// a few pages, and every -export-every a whole export.
func (s *session) analyse() {
	lastExport := time.Now()
	for {
		f := s.randomFilter()
		if s.opts.exportEvery > 0 && time.Since(lastExport) >= s.opts.exportEvery {
			if !s.next() {
				return
			}
			lastExport = time.Now()
			s.do(epExport, http.MethodGet, withQuery(s.base+"/data/export", f), "", countLines)
			continue
		}
		cursor := ""
		for range s.opts.pages {
			if !s.next() {
				return
			}
			next, ok := s.page(epQuery, f, cursor)
			if !ok || next == "" {
				break
			}
			cursor = next
		}
	}
}

// randomFilter returns no filter, a language, a customer or both, with
// equal odds.
func (s *session) randomFilter() url.Values {
	f := url.Values{}
	n := rand.IntN(4)
	if n&1 != 0 {
		f.Set("language", languages[rand.IntN(len(languages))])
	}
	if n&2 != 0 {
		f.Set("customerId", s.customerID(rand.IntN(s.opts.customers)))
	}
	return f
}

// page fetches one page of GET /data with the filters f, which it leaves
// as they are, records it under ep and returns its nextCursor.
func (s *session) page(ep endpoint, f url.Values, cursor string) (next string, ok bool) {
	q := url.Values{}
	maps.Copy(q, f)
	q.Set("limit", strconv.Itoa(pageLimit))
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var reply pageReply
	status := s.do(ep, http.MethodGet, withQuery(s.base+"/data", q), "", func(r io.Reader) (int64, error) {
		if err := json.NewDecoder(r).Decode(&reply); err != nil {
			return 0, errBadBody
		}
		return int64(len(reply.Data)), nil
	})
	return reply.NextCursor, status == http.StatusOK
}

// errBadBody marks a reply whose body is not what the contract says.
var errBadBody = errors.New("malformed reply body")

// do sends one request and records under ep its latency, reading the reply
// included. read, if not nil, consumes the body of a successful reply and
// returns the rows it held; the rest of the body is discarded, so that the
// connection can be reused. do returns the status, or 0 when no complete,
// well-formed answer came.
func (s *session) do(ep endpoint, method, target, body string, read func(io.Reader) (int64, error)) int {
	start := time.Now()
	resp, err := s.send(s.ctx, method, target, body)
	if err != nil {
		s.stats[ep].record(time.Since(start), failTransport, 0)
		return 0
	}
	var rows int64
	if resp.StatusCode == ep.want() && read != nil {
		rows, err = read(resp.Body)
	}
	if _, cerr := io.Copy(io.Discard, resp.Body); err == nil {
		err = cerr
	}
	_ = resp.Body.Close()
	elapsed := time.Since(start)
	switch {
	case errors.Is(err, errBadBody):
		s.stats[ep].record(elapsed, failBody, 0)
		return 0
	case err != nil:
		s.stats[ep].record(elapsed, failTransport, 0)
		return 0
	case resp.StatusCode != ep.want():
		s.stats[ep].record(elapsed, strconv.Itoa(resp.StatusCode), 0)
	default:
		s.stats[ep].record(elapsed, "", rows)
	}
	return resp.StatusCode
}

// pageReply is a page of GET /data, with what the tool reads of each message.
type pageReply struct {
	Data       []storedMessage `json:"data"`
	NextCursor string          `json:"nextCursor"`
}

// storedMessage is what the tool reads of a stored message.
type storedMessage struct {
	DialogueID string `json:"dialogId"`
	Text       string `json:"text"`
}

// countLines reads an NDJSON stream to its end and counts its lines.
func countLines(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// withQuery appends q to path, if q holds anything.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
