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

const (
	epIngest       endpoint = iota // POST /data/{customerId}/{dialogId}
	epConsentTrue                  // POST /consents/{dialogId} with true
	epConsentFalse                 // POST /consents/{dialogId} with false
	epQuery                        // GET /data
	epExport                       // GET /data/export
	numEndpoints
)

var endpointNames = [numEndpoints]string{"ingest", "consent-true", "consent-false", "query", "export"}

func (e endpoint) String() string { return endpointNames[e] }

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
	} else {
		e.failures[failure]++
	}
}

// report is everything a run measured.
type report struct {
	Target       string         `json:"target"`
	Phases       []phaseReport  `json:"phases"`
	Ceiling      *ceilingReport `json:"ceiling,omitempty"`
	Check        *checkReport   `json:"check,omitempty"`
	CheckSkipped string         `json:"checkSkipped,omitempty"`
}

// phaseReport is what one phase measured.
type phaseReport struct {
	Name      string           `json:"name"`
	Seconds   float64          `json:"seconds"`
	Workers   int              `json:"workers"`
	Analysts  int              `json:"analysts"`
	Endpoints []endpointReport `json:"endpoints"`
}

// endpointReport is what one phase measured of one endpoint.
type endpointReport struct {
	Endpoint  string           `json:"endpoint"`
	Requests  int64            `json:"requests"`
	OK        int64            `json:"ok"`
	PerSecond float64          `json:"requestsPerSecond"`
	LatencyMs latencyReport    `json:"latencyMs"`
	Rows      int64            `json:"rows,omitempty"`   // messages read by queries and exports
	Failures  map[string]int64 `json:"errors,omitempty"` // by status code, "transport" or "body"
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
// ingestion always.
func (r phaseResult) report() phaseReport {
	p := phaseReport{Name: r.name, Seconds: r.elapsed.Seconds(), Workers: r.workers, Analysts: r.analysts}
	for ep, s := range r.stats {
		if s.requests == 0 && endpoint(ep) != epIngest {
			continue
		}
		ms := func(q float64) float64 { return float64(s.latency.ValueAtPercentile(q)) / 1000 }
		p.Endpoints = append(p.Endpoints, endpointReport{
			Endpoint:  endpoint(ep).String(),
			Requests:  s.requests,
			OK:        s.ok,
			PerSecond: float64(s.requests) / r.elapsed.Seconds(),
			LatencyMs: latencyReport{P50: ms(50), P90: ms(90), P99: ms(99), P999: ms(99.9), Max: float64(s.latency.Max()) / 1000},
			Rows:      s.rows,
			Failures:  s.failures,
		})
	}
	return p
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
	fmt.Fprintf(w, "\n%s: %.1fs, %d workers, %d analysts\n", p.Name, p.Seconds, p.Workers, p.Analysts)
	fmt.Fprintf(w, "%-13s %9s %9s %9s %8s %8s %8s %8s %8s %9s  %s\n",
		"endpoint", "requests", "ok", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "rows", "errors")
	for _, e := range p.Endpoints {
		l := e.LatencyMs
		rows := "-" // only queries and exports read rows
		if e.Endpoint == epQuery.String() || e.Endpoint == epExport.String() {
			rows = strconv.FormatInt(e.Rows, 10)
		}
		fmt.Fprintf(w, "%-13s %9d %9d %9.1f %8.2f %8.2f %8.2f %8.2f %8.2f %9s  %s\n",
			e.Endpoint, e.Requests, e.OK, e.PerSecond, l.P50, l.P90, l.P99, l.P999, l.Max, rows, failures(e.Failures))
	}
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
