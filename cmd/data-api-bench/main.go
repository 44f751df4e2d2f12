// Command data-api-bench loads a Data API service with the traffic of the
// chatbot's background job and of analysts, reports throughput and latency
// per endpoint, and then checks that every message the service acknowledged
// under a true consent is stored exactly once and that nothing of a dialogue
// refused consent is.
//
// With -mode query it sends no message: it measures analysts' queries over
// whatever consented data the target already holds (first pages of each
// filter combination, page -deep-pages against page 1) and one export of
// the whole data set, and checks nothing.
//
// Usage:
//
//	go run ./cmd/data-api-bench -url http://127.0.0.1:8080 [flags]
//	go run ./cmd/data-api-bench bare [-addr 127.0.0.1:18099]
//
// The bare subcommand serves the ceiling of -ceiling (a Gin server that
// answers ingestion as the service does and keeps nothing) in a process of
// its own, for -ceiling-url or another load generator such as wrk.
//
// It talks only to the URL it is given, which must be a loopback address
// unless -allow-remote is set, and follows no redirect. Its output holds
// counts, rates and latencies: never an identifier or a message text. It
// exits with status 1 when the consistency check fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = runBare(ctx, os.Args[2:], os.Stdout)
		stop()
	} else {
		err = run(context.Background(), os.Args[1:], os.Stdout)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "data-api-bench:", err)
		os.Exit(1)
	}
}

// errInconsistent is returned when the consistency check finds a stored data
// set that differs from what the service acknowledged.
var errInconsistent = errors.New("consistency check failed")

// Modes of the main phase.
const (
	modeFull   = "full"   // messages, consent decisions and analysts
	modeIngest = "ingest" // messages only: dialogues stay pending until their TTL
	modeQuery  = "query"  // analysts' queries over the data the target holds, then one export
)

// Ways the consistency check reads stored messages.
const (
	checkViaExport = "export" // one GET /data/export stream per customer
	checkViaPages  = "pages"  // GET /data, following nextCursor to the last page
)

// options are the tool's settings, from its flags.
type options struct {
	target          *url.URL
	also            []string // more instances of the target's deployment
	allowRemote     bool
	key             string
	mode            string
	duration        time.Duration
	maxRequests     int64
	conns           int
	customers       int
	messages        int
	trueShare       float64
	analysts        int
	pages           int
	deepPages       int
	exportEvery     time.Duration
	timeout         time.Duration
	ceiling         bool
	ceilingURL      string
	ceilingDuration time.Duration
	checkSample     int
	checkAll        bool
	checkVia        string
	jsonPath        string
}

// run loads the service its flags name, prints the report to stdout and
// returns errInconsistent if the consistency check fails.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	l := newLoader(o, stdout)
	defer l.client.CloseIdleConnections()

	rep := report{Target: o.target.String()}
	var (
		decided []dialogue
		acked   int64 // messages the target acknowledged
	)
	if o.ceiling {
		c, bare, target, err := l.ceiling(ctx)
		if err != nil {
			return err
		}
		rep.Ceiling = &c
		rep.Phases = append(rep.Phases, bare.report(), target.report())
		decided = append(decided, target.decided...)
		acked += target.stats[epIngest].ok
	}
	var answered int64 // queries the target answered, in query mode
	switch {
	case o.mode == modeQuery && ctx.Err() == nil:
		answered, err = l.runQuery(ctx, &rep)
		if err != nil {
			return err
		}
	case o.duration > 0 && ctx.Err() == nil:
		p := l.runPhase(ctx, l.mainPhase())
		rep.Phases = append(rep.Phases, p.report())
		decided = append(decided, p.decided...)
		acked += p.stats[epIngest].ok
	}

	switch {
	case ctx.Err() != nil:
		rep.CheckSkipped = "interrupted"
	case o.mode == modeQuery:
		rep.CheckSkipped = "-mode query only reads the data the target already holds; it sends nothing to check"
	case !o.ceiling && o.mode == modeIngest:
		rep.CheckSkipped = "-mode ingest sends no consent decision"
	case len(decided) == 0:
		rep.CheckSkipped = "no consent decision was acknowledged"
	case o.checkSample == 0 && !o.checkAll:
		rep.CheckSkipped = "-check-sample is 0"
	default:
		fmt.Fprintln(stdout, "checking stored messages...")
		c := l.check(ctx, decided)
		rep.Check = &c
	}

	rep.print(stdout)
	if o.jsonPath != "" {
		if err := rep.writeJSON(o.jsonPath); err != nil {
			return err
		}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case o.mode == modeQuery && answered == 0:
		return errors.New("the target answered no query; see the errors above and check -url and -key")
	case o.mode != modeQuery && acked == 0:
		return errors.New("the target acknowledged no message; see the errors above and check -url and -key")
	case rep.Check != nil && rep.Check.failed():
		return errInconsistent
	}
	return nil
}

// parseFlags reads and validates the command line.
func parseFlags(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("data-api-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		o      options
		rawURL string
	)
	fs.StringVar(&rawURL, "url", "", "base URL of the Data API to load, e.g. http://127.0.0.1:8080 (required)")
	var also []string
	fs.Func("also", "base URL of another instance of the same deployment (repeatable): requests go\n"+
		"round-robin over -url and every -also, so that no dialogue sticks to one instance", func(v string) error {
		also = append(also, v)
		return nil
	})
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "accept a -url whose host is not a loopback address")
	fs.StringVar(&o.key, "key", "", "API key sent as a bearer token with every request (default none)")
	fs.StringVar(&o.mode, "mode", modeFull, "main phase: full (messages, consents, analysts), ingest (messages only),\n"+
		"or query (analysts' queries over the data the target holds, then one export of it all; sends no message)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of the main phase; 0 skips it (with -ceiling only)")
	fs.Int64Var(&o.maxRequests, "max-requests", 5_000_000, "most requests sent in one phase")
	fs.IntVar(&o.conns, "conns", 64, "ingest workers (query workers with -mode query), each one request at a time")
	fs.IntVar(&o.customers, "customers", 1000, "size of the pool of customer ids")
	fs.IntVar(&o.messages, "messages", 20, "messages per dialogue")
	fs.Float64Var(&o.trueShare, "true-share", 0.8, "share of dialogues whose consent is true")
	fs.IntVar(&o.analysts, "analysts", 2, "analyst workers querying GET /data (full mode)")
	fs.IntVar(&o.pages, "pages", 5, "most pages an analyst follows per query (full mode)")
	fs.IntVar(&o.deepPages, "deep-pages", 100, "with -mode query, a walker follows nextCursor of the unfiltered query\n"+
		"from page 1 to this page, to compare its latency with page 1's")
	fs.DurationVar(&o.exportEvery, "export-every", 5*time.Second, "each analyst streams GET /data/export this often; 0 never")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "limit on one request, reading its reply included (the export of -mode query too)")
	fs.BoolVar(&o.ceiling, "ceiling", false, "first compare ingest throughput with a bare Gin server, run as this program's\n"+
		"bare subcommand in a process of its own")
	fs.StringVar(&o.ceilingURL, "ceiling-url", "", "with -ceiling, the base URL of a bare server already running (data-api-bench bare)")
	fs.DurationVar(&o.ceilingDuration, "ceiling-duration", 10*time.Second, "length of each of the two ceiling phases")
	fs.IntVar(&o.checkSample, "check-sample", 100, "customers whose decided dialogues are checked after the load")
	fs.BoolVar(&o.checkAll, "check-all", false, "check the decided dialogues of every customer")
	fs.StringVar(&o.checkVia, "check-via", checkViaExport, "how the check reads stored messages: export or pages")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	target, err := parseTarget(rawURL, o.allowRemote)
	if err != nil {
		return o, err
	}
	o.target = target
	if o.ceilingURL != "" {
		u, err := parseTarget(o.ceilingURL, o.allowRemote)
		if err != nil {
			return o, fmt.Errorf("-ceiling-url: %w", err)
		}
		o.ceilingURL = u.String()
	}
	for _, raw := range also {
		u, err := parseTarget(raw, o.allowRemote)
		if err != nil {
			return o, fmt.Errorf("-also: %w", err)
		}
		o.also = append(o.also, u.String())
	}
	return o, o.validate()
}

// validate reports every out-of-range setting at once.
func (o options) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.mode != modeFull && o.mode != modeIngest && o.mode != modeQuery {
		bad("-mode must be %s, %s or %s", modeFull, modeIngest, modeQuery)
	}
	if o.mode == modeQuery && o.ceiling {
		bad("-ceiling measures ingestion; it does not go with -mode query")
	}
	if o.duration < 0 || (o.duration == 0 && !o.ceiling) {
		bad("-duration must be positive (0 is allowed with -ceiling only)")
	}
	if o.maxRequests < 1 {
		bad("-max-requests must be positive")
	}
	if o.conns < 1 || o.conns > 10_000 {
		bad("-conns must be between 1 and 10000")
	}
	if o.customers < 1 {
		bad("-customers must be positive")
	}
	if o.messages < 1 {
		bad("-messages must be positive")
	}
	if o.trueShare < 0 || o.trueShare > 1 {
		bad("-true-share must be between 0 and 1")
	}
	if o.analysts < 0 || o.analysts > 1000 {
		bad("-analysts must be between 0 and 1000")
	}
	if o.pages < 1 {
		bad("-pages must be positive")
	}
	if o.deepPages < 2 {
		bad("-deep-pages must be at least 2")
	}
	if o.exportEvery < 0 {
		bad("-export-every must not be negative")
	}
	if o.timeout <= 0 {
		bad("-timeout must be positive")
	}
	if o.ceiling && o.ceilingDuration <= 0 {
		bad("-ceiling-duration must be positive")
	}
	if o.ceilingURL != "" && !o.ceiling {
		bad("-ceiling-url goes with -ceiling")
	}
	if o.checkSample < 0 {
		bad("-check-sample must not be negative")
	}
	if o.checkVia != checkViaExport && o.checkVia != checkViaPages {
		bad("-check-via must be %s or %s", checkViaExport, checkViaPages)
	}
	return errors.Join(errs...)
}

// parseTarget checks the base URL of the service to load. Unless
// allowRemote, its host must be a loopback address or "localhost", so that
// the tool cannot be pointed at someone else's service by mistake.
func parseTarget(raw string, allowRemote bool) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("-url is required, e.g. -url http://127.0.0.1:8080")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("-url must start with http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("-url has no host")
	case u.User != nil:
		return nil, errors.New("-url must not hold credentials; use -key")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("-url must not have a query or a fragment")
	case !allowRemote && !isLoopback(u.Hostname()):
		return nil, errors.New("-url host is not a loopback address; pass -allow-remote to load a remote service")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
// Names other than localhost are not resolved: what they resolve to could
// change between the check and the connection.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
