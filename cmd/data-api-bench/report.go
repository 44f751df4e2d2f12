package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// endpoint is a kind of request the tool measures.
type endpoint int

// Every endpoint from epQuery on reads stored messages and counts them.
const (
	epIngest        endpoint = iota // POST /data/{customerId}/{dialogId}
	epConsentTrue                   // POST /consents/{dialogId} with true
	epConsentFalse                  // POST /consents/{dialogId} with false
	epQuery                         // GET /data, analysts' pages in full mode
	epExport                        // GET /data/export
	epQueryNone                     // query mode: GET /data, first page, no filter
	epQueryLanguage                 // query mode: first page, language
	epQueryCustomer                 // query mode: first page, customerId
	epQueryBoth                     // query mode: first page, customerId and language
	epQueryPage1                    // query mode: page 1 of a deep walk, no filter
	epQueryWalk                     // query mode: pages between page 1 and the deep page
	epQueryDeep                     // query mode: page -deep-pages of a deep walk
	numEndpoints
)

var endpointNames = [numEndpoints]string{
	"ingest", "consent-true", "consent-false", "query", "export",
	"query-none", "query-language", "query-customer", "query-both",
	"query-page1", "query-walk", "query-deep",
}

func (e endpoint) String() string { return endpointNames[e] }

// readsRows reports whether e's replies hold stored messages.
func (e endpoint) readsRows() bool { return e >= epQuery }

// endpointNamed returns the endpoint of a name in a report.
func endpointNamed(name string) (endpoint, bool) {
	for ep, n := range endpointNames {
		if n == name {
			return endpoint(ep), true
		}
	}
	return 0, false
}

// want is the status of a successful request.
func (e endpoint) want() int {
	if e == epIngest {
		return 202
	}
	return 200
}

// Failure keys other than a status code.
const (
	failTransport = "transport" // no answer, or a body cut short
	failBody      = "body"      // a successful status with a malformed body
)

// endpointStats gathers the outcomes of one endpoint's requests in a phase.
type endpointStats struct {
	mu       sync.Mutex
	latency  *hdrhistogram.Histogram // microseconds
	requests int64
	ok       int64
	rows     int64
	busy     time.Duration    // summed latency of the successful requests
	failures map[string]int64 // by status code, failTransport or failBody
}

// newEndpointStats returns empty stats whose histogram tracks latencies up
// to highest (at least a second) with three significant digits.
func newEndpointStats(highest time.Duration) *endpointStats {
	return &endpointStats{
		latency:  hdrhistogram.New(1, max(highest, time.Second).Microseconds(), 3),
		failures: map[string]int64{},
	}
}

// record counts one request that took d; failure is empty for a success.
func (e *endpointStats) record(d time.Duration, failure string, rows int64) {
	us := min(max(d.Microseconds(), 1), e.latency.HighestTrackableValue())
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.latency.RecordValue(us) // in range by construction
	e.requests++
	e.rows += rows
	if failure == "" {
		e.ok++
		e.busy += d
	} else {
		e.failures[failure]++
	}
}

// report is everything a run measured.
type report struct {
	Target       string           `json:"target"`
	Discovery    *discoveryReport `json:"discovery,omitempty"` // query mode
	Phases       []phaseReport    `json:"phases"`
	Ceiling      *ceilingReport   `json:"ceiling,omitempty"`
	Check        *checkReport     `json:"check,omitempty"`
	CheckSkipped string           `json:"checkSkipped,omitempty"`
}

// phaseReport is what one phase measured.
type phaseReport struct {
	Name        string           `json:"name"`
	Seconds     float64          `json:"seconds"`
	Workers     int              `json:"workers"`
	Analysts    int              `json:"analysts"`
	DeepWalkers int              `json:"deepWalkers,omitempty"`
	Endpoints   []endpointReport `json:"endpoints"`
	Deep        *deepReport      `json:"deep,omitempty"` // query mode: page -deep-pages against page 1
}

// endpointReport is what one phase measured of one endpoint.
type endpointReport struct {
	Endpoint  string        `json:"endpoint"`
	Requests  int64         `json:"requests"`
	OK        int64         `json:"ok"`
	PerSecond float64       `json:"requestsPerSecond"`
	LatencyMs latencyReport `json:"latencyMs"`
	Rows      int64         `json:"rows,omitempty"` // messages read by queries and exports
	// RowsPerSecond is, for exports, the rows streamed per second of the
	// exports' own time (the sum of their latencies).
	RowsPerSecond float64          `json:"rowsPerSecond,omitempty"`
	Failures      map[string]int64 `json:"errors,omitempty"` // by status code, "transport" or "body"
}

// latencyReport holds latency percentiles in milliseconds.
type latencyReport struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
}

// report summarises the phase: every endpoint that saw a request, and
// ingestion always in a phase that sends messages.
func (r phaseResult) report() phaseReport {
	p := phaseReport{Name: r.name, Seconds: r.elapsed.Seconds(), Workers: r.workers, Analysts: r.analysts, DeepWalkers: r.walkers}
	for ep, s := range r.stats {
		if s.requests == 0 && (endpoint(ep) != epIngest || r.kind != kindChat) {
			continue
		}
		e := endpointReport{
			Endpoint:  endpoint(ep).String(),
			Requests:  s.requests,
			OK:        s.ok,
			PerSecond: float64(s.requests) / r.elapsed.Seconds(),
			LatencyMs: s.latencies(),
			Rows:      s.rows,
			Failures:  s.failures,
		}
		if endpoint(ep) == epExport && s.busy > 0 {
			e.RowsPerSecond = float64(s.rows) / s.busy.Seconds()
		}
		p.Endpoints = append(p.Endpoints, e)
	}
	if r.kind == kindQuery {
		p.Deep = r.deepReport()
	}
	return p
}

// latencies returns the percentiles of the recorded latencies.
func (e *endpointStats) latencies() latencyReport {
	ms := func(q float64) float64 { return float64(e.latency.ValueAtPercentile(q)) / 1000 }
	return latencyReport{P50: ms(50), P90: ms(90), P99: ms(99), P999: ms(99.9), Max: float64(e.latency.Max()) / 1000}
}

// endpoint returns the report of the named endpoint, or a zero one.
func (p phaseReport) endpoint(name string) endpointReport {
	for _, e := range p.Endpoints {
		if e.Endpoint == name {
			return e
		}
	}
	return endpointReport{Endpoint: name}
}

// print writes the report as aligned text tables.
func (r report) print(w io.Writer) {
	fmt.Fprintf(w, "\ntarget %s\n", r.Target)
	if r.Discovery != nil {
		r.Discovery.print(w)
	}
	for _, p := range r.Phases {
		p.print(w)
	}
	if r.Ceiling != nil {
		r.Ceiling.print(w)
	}
	fmt.Fprintln(w)
	switch {
	case r.Check != nil:
		r.Check.print(w)
	case r.CheckSkipped != "":
		fmt.Fprintf(w, "consistency check skipped: %s\n", r.CheckSkipped)
	}
}

func (p phaseReport) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s: %.1fs, %s", p.Name, p.Seconds, plural(p.Workers, "worker"))
	if p.Analysts > 0 {
		fmt.Fprintf(w, ", %s", plural(p.Analysts, "analyst"))
	}
	if p.DeepWalkers > 0 {
		fmt.Fprintf(w, ", %s", plural(p.DeepWalkers, "deep walker"))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-14s %9s %9s %9s %8s %8s %8s %8s %8s %9s %10s  %s\n",
		"endpoint", "requests", "ok", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "rows", "rows/s", "errors")
	for _, e := range p.Endpoints {
		l := e.LatencyMs
		rows, rate := "-", "-" // only queries and exports read rows; rows/s is for exports
		if ep, ok := endpointNamed(e.Endpoint); ok && ep.readsRows() {
			rows = strconv.FormatInt(e.Rows, 10)
		}
		if e.RowsPerSecond > 0 {
			rate = strconv.FormatFloat(e.RowsPerSecond, 'f', 0, 64)
		}
		fmt.Fprintf(w, "%-14s %9d %9d %9.1f %8.2f %8.2f %8.2f %8.2f %8.2f %9s %10s  %s\n",
			e.Endpoint, e.Requests, e.OK, e.PerSecond, l.P50, l.P90, l.P99, l.P999, l.Max, rows, rate, failures(e.Failures))
	}
	if p.Deep != nil {
		p.Deep.print(w)
	}
}

// plural returns "1 worker" or "n workers".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// failures formats failure counts as "503:12 transport:3", or "-".
func failures(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}

// writeJSON writes the report as indented JSON to path.
func (r report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("-json: %w", err)
	}
	return nil
}
