package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/data-api/data-api/config"
	"github.com/gin-gonic/gin"
)

// ceilingReport compares the target's ingestion with the ceiling's.
type ceilingReport struct {
	Seconds    float64 `json:"seconds"` // length of each phase as set
	Ceiling    string  `json:"ceiling"` // which bare server: its own process, or the one at -ceiling-url
	CeilingRPS float64 `json:"ceilingRequestsPerSecond"`
	CeilingP99 float64 `json:"ceilingP99Ms"`
	TargetRPS  float64 `json:"targetRequestsPerSecond"`
	TargetP99  float64 `json:"targetP99Ms"`
	Ratio      float64 `json:"ratio"` // target / ceiling
}

func (c *ceilingReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nceiling: ingestion on a bare Gin server (%s) and on the target, %gs each\n", c.Ceiling, c.Seconds)
	fmt.Fprintf(w, "%-22s %12s %8s\n", "server", "ingest req/s", "p99 ms")
	fmt.Fprintf(w, "%-22s %12.1f %8.2f\n", "bare Gin", c.CeilingRPS, c.CeilingP99)
	fmt.Fprintf(w, "%-22s %12.1f %8.2f\n", "target", c.TargetRPS, c.TargetP99)
	fmt.Fprintf(w, "target/ceiling ratio   %12.2f\n", c.Ratio)
}

// ceiling measures how fast this machine and this tool can send messages to
// a server that does nothing with them, then how fast the target ingests
// the same load: messages only with -mode ingest, or real dialogues with
// their consent decisions with -mode full. The bare server runs in a
// process of its own, as the target does, so that it does not share this
// process's scheduler and heap with the load; or it is the one at
// -ceiling-url.
func (l *loader) ceiling(ctx context.Context) (c ceilingReport, bare, target phaseResult, err error) {
	d := l.opts.ceilingDuration
	url, which := l.opts.ceilingURL, "at "+l.opts.ceilingURL
	if url == "" {
		srv, err := startBareProcess(ctx)
		if err != nil {
			return c, bare, target, err
		}
		defer func() { err = errors.Join(err, srv.stop()) }()
		url, which = srv.url, "its own process"
	}
	bare = l.runPhase(ctx, phase{name: "ceiling: bare Gin", base: url, duration: d})
	l.client.CloseIdleConnections()
	target = l.runPhase(ctx, phase{name: "ceiling: target", base: l.opts.target.String(), duration: d, consents: l.opts.mode == modeFull})

	b := bare.report().endpoint(epIngest.String())
	t := target.report().endpoint(epIngest.String())
	c = ceilingReport{
		Seconds:    d.Seconds(),
		Ceiling:    which,
		CeilingRPS: b.PerSecond,
		CeilingP99: b.LatencyMs.P99,
		TargetRPS:  t.PerSecond,
		TargetP99:  t.LatencyMs.P99,
	}
	if c.CeilingRPS > 0 {
		c.Ratio = c.TargetRPS / c.CeilingRPS
	}
	return c, bare, target, nil
}

// bareHandler is the ceiling: Gin with no middleware and one route that
// reads a message, discards it, and answers 202 with the reply the service
// gives a dialogue's first message, byte for byte.
func bareHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.POST("/data/:customerId/:dialogId", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		customer, dialogue := c.Param("customerId"), c.Param("dialogId")
		reply := make([]byte, 0, 64+len(customer)+len(dialogue))
		reply = append(reply, `{"customerId":"`...)
		reply = append(reply, customer...)
		reply = append(reply, `","dialogId":"`...)
		reply = append(reply, dialogue...)
		reply = append(reply, `","pendingMessages":`...)
		reply = strconv.AppendInt(reply, 1, 10)
		reply = append(reply, "}\n"...)
		c.Data(http.StatusAccepted, "application/json; charset=utf-8", reply)
	})
	return e
}

// runBare is the bare subcommand: it serves bareHandler at -addr, with the
// service's default server settings, until ctx ends, after printing
// "listening on <url>".
func runBare(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("data-api-bench bare", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("bare server: %w", err)
	}
	// The service's default timeouts: net/http sets a deadline per request
	// for each, which is part of what serving costs.
	d := config.Default().Server
	srv := &http.Server{
		Handler:           bareHandler(),
		ReadHeaderTimeout: d.ReadHeaderTimeout,
		ReadTimeout:       d.ReadTimeout,
		WriteTimeout:      d.WriteTimeout,
		IdleTimeout:       d.IdleTimeout,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// bareProcess is this program run as the bare subcommand.
type bareProcess struct {
	cmd *exec.Cmd
	url string
}

// startBareProcess starts this program's bare subcommand on a free loopback
// port and returns once it listens.
func startBareProcess(ctx context.Context) (*bareProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bare server: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, "bare", "-addr", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bare server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bare server: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("bare server: did not start (%q, %v)", line, errors.Join(err, cmd.Wait()))
	}
	return &bareProcess{cmd: cmd, url: url}, nil
}

// stop ends the process with SIGTERM and waits for it.
func (p *bareProcess) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("bare server: %w", err)
	}
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("bare server: %w", err)
	}
	return nil
}
