package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
)

// Bounds of the filter values query mode discovers.
const (
	discoverLimit          = 1000 // messages read to discover filter values: one page of the largest size
	maxDiscoveredCustomers = 200
	maxDiscoveredLanguages = 50
)

// deepWalkers is how many workers of a query phase follow nextCursor to
// page -deep-pages, besides the -conns query workers.
const deepWalkers = 1

// queryEndpoints are the filter combinations every query worker takes in
// turn.
var queryEndpoints = [...]endpoint{epQueryNone, epQueryLanguage, epQueryCustomer, epQueryBoth}

// filterPool holds filter values found in the target's data. They stay in
// memory: no report shows them.
type filterPool struct {
	sampled   int // messages read to find them
	customers []string
	languages []string
}

func (f *filterPool) customer() string { return f.customers[rand.IntN(len(f.customers))] }

func (f *filterPool) language() string { return f.languages[rand.IntN(len(f.languages))] }

// discoveryReport counts what query mode found to filter on.
type discoveryReport struct {
	Sampled   int `json:"sampledMessages"` // newest messages read
	Customers int `json:"customers"`       // distinct customerIds kept
	Languages int `json:"languages"`       // distinct languages kept
}

func (d *discoveryReport) print(w io.Writer) {
	fmt.Fprintf(w, "query filters from the newest %d messages: %d customers, %d languages\n", d.Sampled, d.Customers, d.Languages)
}

// discover reads the newest messages the target holds and keeps the
// distinct customerIds and languages among them, up to a bound each.
func (l *loader) discover(ctx context.Context) (*filterPool, error) {
	var page struct {
		Data []struct {
			CustomerID string `json:"customerId"`
			Language   string `json:"language"`
		} `json:"data"`
	}
	target := withQuery(l.opts.target.String()+"/data", url.Values{"limit": {strconv.Itoa(discoverLimit)}})
	if err := l.read(ctx, target, func(r io.Reader) error { return json.NewDecoder(r).Decode(&page) }); err != nil {
		return nil, fmt.Errorf("discover query filters with GET /data: %w", err)
	}
	f := &filterPool{sampled: len(page.Data)}
	seenCustomer, seenLanguage := map[string]bool{}, map[string]bool{}
	for _, m := range page.Data {
		if m.CustomerID != "" && !seenCustomer[m.CustomerID] && len(f.customers) < maxDiscoveredCustomers {
			seenCustomer[m.CustomerID] = true
			f.customers = append(f.customers, m.CustomerID)
		}
		if m.Language != "" && !seenLanguage[m.Language] && len(f.languages) < maxDiscoveredLanguages {
			seenLanguage[m.Language] = true
			f.languages = append(f.languages, m.Language)
		}
	}
	if len(f.customers) == 0 || len(f.languages) == 0 {
		return nil, errors.New("the target holds no consented message to query; load it first, e.g. with -mode full")
	}
	return f, nil
}

func (f *filterPool) report() *discoveryReport {
	return &discoveryReport{Sampled: f.sampled, Customers: len(f.customers), Languages: len(f.languages)}
}

// runQuery is query mode: it discovers filter values, runs the query phase
// and then one export of the whole data set. It returns the number of
// queries the target answered.
func (l *loader) runQuery(ctx context.Context, rep *report) (answered int64, err error) {
	fmt.Fprintln(l.progress, "discovering query filters...")
	pool, err := l.discover(ctx)
	if err != nil {
		return 0, err
	}
	rep.Discovery = pool.report()
	q := l.runPhase(ctx, phase{
		name:      "main (query)",
		kind:      kindQuery,
		base:      l.opts.target.String(),
		duration:  l.opts.duration,
		filters:   pool,
		walkers:   deepWalkers,
		deepPages: l.opts.deepPages,
	})
	rep.Phases = append(rep.Phases, q.report())
	for _, ep := range queryEndpoints {
		answered += q.stats[ep].ok
	}
	if ctx.Err() != nil {
		return answered, nil
	}
	// The export is bounded by -timeout, as every request is, not by
	// -duration.
	e := l.runPhase(ctx, phase{name: "export (whole data set)", kind: kindExport, base: l.opts.target.String(), duration: l.opts.timeout})
	rep.Phases = append(rep.Phases, e.report())
	return answered, nil
}

// query plays an analyst who looks at the newest messages: the first page
// of each filter combination in turn, starting with combination first,
// with random values from the pool.
func (s *session) query(first int) {
	for i := first; s.next(); i++ {
		ep := queryEndpoints[i%len(queryEndpoints)]
		f := url.Values{}
		if ep == epQueryLanguage || ep == epQueryBoth {
			f.Set("language", s.filters.language())
		}
		if ep == epQueryCustomer || ep == epQueryBoth {
			f.Set("customerId", s.filters.customer())
		}
		s.page(ep, f, "")
	}
}

// walk follows nextCursor of the unfiltered query from page 1 to page
// deepPages, again and again, recording page 1, the pages between, and the
// deep page apart. A walk that meets the last page of the data first is
// counted short; one cut by the end of the phase, not at all.
func (s *session) walk() {
	for {
		cursor := ""
		for n := 1; ; n++ {
			if !s.next() {
				return
			}
			ep := epQueryWalk
			switch n {
			case 1:
				ep = epQueryPage1
			case s.deepPages:
				ep = epQueryDeep
			}
			next, ok := s.page(ep, nil, cursor)
			if !ok {
				break
			}
			if n == s.deepPages {
				s.walks.Add(1)
				break
			}
			if next == "" {
				s.shortWalks.Add(1)
				break
			}
			cursor = next
		}
	}
}

// exportAll streams GET /data/export without filters once, counting its
// lines.
func (s *session) exportAll() {
	if s.next() {
		s.do(epExport, http.MethodGet, s.base+"/data/export", "", countLines)
	}
}

// deepReport compares the deep page of the walks with their page 1.
type deepReport struct {
	Page       int           `json:"page"`       // -deep-pages
	PageLimit  int           `json:"pageLimit"`  // messages per page
	Walks      int64         `json:"walks"`      // walks that reached Page
	ShortWalks int64         `json:"shortWalks"` // walks that met the last page of the data first
	Page1Ms    latencyReport `json:"page1LatencyMs"`
	DeepMs     latencyReport `json:"deepLatencyMs"`
	RatioP50   float64       `json:"ratioP50,omitempty"` // deep p50 / page 1 p50
	RatioP99   float64       `json:"ratioP99,omitempty"`
}

// deepReport summarises the walks of a query phase.
func (r phaseResult) deepReport() *deepReport {
	d := &deepReport{
		Page:       r.deepPages,
		PageLimit:  pageLimit,
		Walks:      r.walks,
		ShortWalks: r.shortWalks,
		Page1Ms:    r.stats[epQueryPage1].latencies(),
		DeepMs:     r.stats[epQueryDeep].latencies(),
	}
	if r.stats[epQueryDeep].requests > 0 && d.Page1Ms.P50 > 0 && d.Page1Ms.P99 > 0 {
		d.RatioP50 = d.DeepMs.P50 / d.Page1Ms.P50
		d.RatioP99 = d.DeepMs.P99 / d.Page1Ms.P99
	}
	return d
}

func (d *deepReport) print(w io.Writer) {
	fmt.Fprintf(w, "deep pages (no filter, %d per page): %d walks reached page %d, %d met the last page first\n",
		d.PageLimit, d.Walks, d.Page, d.ShortWalks)
	if d.RatioP50 == 0 {
		fmt.Fprintf(w, "  no page %d was fetched: the data set may hold fewer than %d messages, or -duration is too short\n",
			d.Page, d.Page*d.PageLimit)
		return
	}
	for _, row := range []struct {
		name string
		l    latencyReport
	}{{"page 1", d.Page1Ms}, {"page " + strconv.Itoa(d.Page), d.DeepMs}} {
		fmt.Fprintf(w, "  %-9s p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f ms\n", row.name, row.l.P50, row.l.P90, row.l.P99, row.l.P999)
	}
	fmt.Fprintf(w, "  page %d / page 1: p50 x%.2f, p99 x%.2f\n", d.Page, d.RatioP50, d.RatioP99)
}
