package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// ceilingReport compares the target's ingestion with the ceiling's.
type ceilingReport struct {
	Seconds    float64 `json:"seconds"` // length of each phase as set
	CeilingRPS float64 `json:"ceilingRequestsPerSecond"`
	CeilingP99 float64 `json:"ceilingP99Ms"`
	TargetRPS  float64 `json:"targetRequestsPerSecond"`
	TargetP99  float64 `json:"targetP99Ms"`
	Ratio      float64 `json:"ratio"` // target / ceiling
}

func (c *ceilingReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nceiling: ingestion on a bare in-process Gin server and on the target, %gs each\n", c.Seconds)
	fmt.Fprintf(w, "%-22s %12s %8s\n", "server", "ingest req/s", "p99 ms")
	fmt.Fprintf(w, "%-22s %12.1f %8.2f\n", "bare Gin (in-process)", c.CeilingRPS, c.CeilingP99)
	fmt.Fprintf(w, "%-22s %12.1f %8.2f\n", "target", c.TargetRPS, c.TargetP99)
	fmt.Fprintf(w, "target/ceiling ratio   %12.2f\n", c.Ratio)
}

// ceiling measures how fast this machine and this tool can send messages to
// a server that does nothing with them, then how fast the target ingests
// the same load: messages only with -mode ingest, or real dialogues with
// their consent decisions with -mode full. The bare server runs in this
// process and so shares its CPUs with the load, as the target does on one
// machine.
func (l *loader) ceiling(ctx context.Context) (c ceilingReport, bare, target phaseResult, err error) {
	d := l.opts.ceilingDuration
	srv, err := startBareServer()
	if err != nil {
		return c, bare, target, err
	}
	bare = l.runPhase(ctx, phase{name: "ceiling: bare Gin (in-process)", base: srv.url, duration: d})
	if err := srv.close(); err != nil {
		return c, bare, target, fmt.Errorf("bare server: %w", err)
	}
	l.client.CloseIdleConnections()
	target = l.runPhase(ctx, phase{name: "ceiling: target", base: l.opts.target.String(), duration: d, consents: l.opts.mode == modeFull})

	b := bare.report().endpoint(epIngest.String())
	t := target.report().endpoint(epIngest.String())
	c = ceilingReport{
		Seconds:    d.Seconds(),
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

// bareServer is the ceiling's reference: Gin with no middleware and one
// route that reads a message, discards it and answers 202 with a small JSON
// body, as the real service does.
type bareServer struct {
	srv  *http.Server
	url  string
	done chan error // Serve's result
}

// startBareServer starts a bareServer on a free loopback port.
func startBareServer() (*bareServer, error) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.POST("/data/:customerId/:dialogId", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.JSON(http.StatusAccepted, struct {
			CustomerID      string `json:"customerId"`
			DialogueID      string `json:"dialogId"`
			PendingMessages int    `json:"pendingMessages"`
		}{c.Param("customerId"), c.Param("dialogId"), 1})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bare server: %w", err)
	}
	s := &bareServer{
		srv:  &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second},
		url:  "http://" + ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// close stops the server and waits for Serve to return.
func (s *bareServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
