package api_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
)

// smallBuffers is a listener whose connections have a small kernel send
// buffer, so that a client that stops reading stalls the server's writes
// after a few kilobytes rather than megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// stalledExport sends GET target on a connection of its own, reads the
// status line and headers, and then reads nothing
// more until readRest is called, which reads the rest and reports whether
// the body ended cleanly. status is 0 when no headers came within 5 s.
func stalledExport(t *testing.T, addr, target string) (status int, readRest func() error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest("GET", "http://"+addr+target, nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 64), req)
	if err != nil {
		return 0, func() error { return err }
	}
	return resp.StatusCode, func() error {
		defer resp.Body.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
}

// exportEnds reports when each export returns, and how.
type exportEnds struct {
	api.Dialogues
	ended chan error
}

func (s exportEnds) Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error {
	err := s.Dialogues.Export(ctx, f, fn)
	s.ended <- err
	return err
}

// TestStalledExportsHoldBackNothing opens exports that never read past
// their headers and checks that every other kind of request still answers
// promptly meanwhile, and that each stalled export is cut once it has made
// no progress for the stall timeout.
func TestStalledExportsHoldBackNothing(t *testing.T) {
	const (
		stalled = 8
		stall   = time.Second
		prompt  = 2 * time.Second // what "promptly" means here, under -race on a shared machine
	)
	spy := exportEnds{ended: make(chan error, 2*stalled)}
	e := newEnv(t, envOptions{
		config: func(c *config.Config) {
			c.Server.ExportStallTimeout = stall
			c.Database.MaxExports = stalled
		},
		wrap: func(d api.Dialogues) api.Dialogues { spy.Dialogues = d; return spy },
	})
	// About 4 MB of NDJSON, far more than the socket buffers and the
	// server's own buffers hold.
	const rows = 20_000
	text := strings.Repeat("a customer message of a typical length, padded to be longer. ", 3)
	msgs := make([]model.Message, rows)
	for i := range msgs {
		msgs[i] = model.Message{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: text, CreatedAt: time.Unix(0, int64(i+1))}
	}
	if err := e.db.SaveConsents(t.Context(), []model.Consent{
		{Decision: model.Decision{DialogueID: "d1", CustomerID: "c1", Consent: true}, Messages: msgs},
		{Decision: model.Decision{DialogueID: "d2", CustomerID: "c2", Consent: true}, Messages: []model.Message{
			{CustomerID: "c2", DialogueID: "d2", Language: "en", Text: "erase me", CreatedAt: time.Unix(0, 1)}}},
	}); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewUnstartedServer(e.handler)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	// Cut the stalled connections before Close waits for their handlers.
	defer srv.CloseClientConnections()

	start := time.Now()
	rests := make([]func() error, stalled)
	var wg sync.WaitGroup
	for i := range stalled {
		wg.Go(func() {
			var status int
			status, rests[i] = stalledExport(t, addr, "/data/export")
			if status != http.StatusOK {
				t.Errorf("stalled export %d: status %d, want 200", i, status)
			}
		})
	}
	wg.Wait()
	t.Logf("%d exports open and not reading after %v", stalled, time.Since(start).Round(time.Millisecond))

	// One more export finds every export slot taken.
	status, rest := stalledExport(t, addr, "/data/export")
	if status != http.StatusServiceUnavailable {
		t.Errorf("export beyond database.max_exports: status %d, want 503", status)
	}
	_ = rest()
	if err := <-spy.ended; !errors.Is(err, model.ErrUnavailable) {
		t.Errorf("export beyond database.max_exports: ended with %v, want ErrUnavailable", err)
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	for _, r := range []struct {
		name, method, target, body string
		status                     int
	}{
		{"page", "GET", "/data?limit=10", "", 200},
		{"decision", "GET", "/consents/d1", "", 200},
		{"ingest of a new dialogue", "POST", "/data/c3/d3", `{"text":"hi","language":"en"}`, 202},
		{"readiness", "GET", "/readyz", "", 200},
		{"erasure", "DELETE", "/customers/c2/data", "", 200},
	} {
		req, _ := http.NewRequest(r.method, srv.URL+r.target, strings.NewReader(r.body))
		began := time.Now()
		resp, err := hc.Do(req)
		took := time.Since(began)
		if err != nil {
			t.Errorf("%s while %d exports stall: %v after %v", r.name, stalled, err, took.Round(time.Millisecond))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s while %d exports stall: %d in %v", r.name, stalled, resp.StatusCode, took.Round(time.Millisecond))
		if resp.StatusCode != r.status || took > prompt {
			t.Errorf("%s while %d exports stall: %d %s after %v, want %d within %v", r.name, stalled, resp.StatusCode, body, took.Round(time.Millisecond), r.status, prompt)
		}
	}

	// Each stalled export is cut: no sooner than the stall timeout after
	// its client stopped reading, and not much later.
	deadline := time.After(stall + 20*time.Second)
	for i := range stalled {
		select {
		case err := <-spy.ended:
			took := time.Since(start)
			if err == nil {
				t.Errorf("stalled export %d ended without an error after %v, want it cut", i, took)
			}
			if i == 0 && took < stall {
				t.Errorf("the first stalled export was cut after %v, before the stall timeout %v", took, stall)
			}
			t.Logf("stalled export %d cut after %v: %v", i, took.Round(time.Millisecond), err)
		case <-deadline:
			t.Fatalf("only %d of %d stalled exports were cut within %v", i, stalled, stall+20*time.Second)
		}
	}
	// Their clients see a body that ends early, not a clean end.
	for i, rest := range rests {
		began := time.Now()
		err := rest()
		t.Logf("stalled export %d: the rest read in %v: %v", i, time.Since(began), err)
		if err == nil {
			t.Errorf("stalled export %d: the body ended cleanly, want it cut short", i)
		}
	}
}

// TestSlowExportReaderKeepsItsExport checks that the stall timeout is a
// progress deadline, not a total one: a client that reads slowly but
// steadily gets the whole export however much longer than the stall timeout
// it takes.
func TestSlowExportReaderKeepsItsExport(t *testing.T) {
	const stall = 2 * time.Second
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Server.ExportStallTimeout = stall }})
	const rows = 8_000 // about 2 MB of NDJSON
	text := strings.Repeat("a customer message of a typical length, padded to be longer. ", 3)
	msgs := make([]model.Message, rows)
	for i := range msgs {
		msgs[i] = model.Message{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: text, CreatedAt: time.Unix(0, int64(i+1))}
	}
	if err := e.db.SaveConsents(t.Context(), []model.Consent{{Decision: model.Decision{DialogueID: "d1", CustomerID: "c1", Consent: true}, Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e.handler)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()

	start := time.Now()
	resp, err := http.Get(srv.URL + "/data/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// 16 KiB every 25 ms: about 640 KiB/s, so that each 64 KiB write of the
	// server is taken within a twentieth of the stall timeout, and the whole
	// export takes longer than the stall timeout.
	var (
		buf   = make([]byte, 16<<10)
		lines int
	)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		lines += strings.Count(string(buf[:n]), "\n")
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d lines in %v: %v", lines, time.Since(start), err)
		}
		time.Sleep(25 * time.Millisecond) // the client's pace, not a wait for a result
	}
	took := time.Since(start)
	t.Logf("%d lines read in %v", lines, took.Round(time.Millisecond))
	if lines != rows {
		t.Errorf("got %d lines, want %d", lines, rows)
	}
	if took <= stall {
		t.Errorf("the export took %v, no longer than the stall timeout %v: the test proves nothing", took, stall)
	}
}

// failingExport fails every export after its rows, as a database that dies
// mid-stream does.
type failingExport struct{ api.Dialogues }

func (f failingExport) Export(ctx context.Context, flt model.Filter, fn func(model.StoredMessage) error) error {
	if err := f.Dialogues.Export(ctx, flt, fn); err != nil {
		return err
	}
	return model.Errorf(model.ErrUnavailable, "the database went away")
}

// TestExportCutShortIsNotAWholeExport checks that an export that fails once
// its status line is sent ends without the last chunk of its body, so that
// the client cannot take it for a whole export, in either format; and that
// one that fails before anything is sent is a problem response.
func TestExportCutShortIsNotAWholeExport(t *testing.T) {
	e := newEnv(t, envOptions{wrap: func(d api.Dialogues) api.Dialogues { return failingExport{d} }})
	msgs := make([]model.Message, 1000) // more than one flush of rows
	for i := range msgs {
		msgs[i] = model.Message{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: "hello", CreatedAt: time.Unix(0, int64(i+1))}
	}
	msgs[0].CustomerID, msgs[0].DialogueID = "c2", "d2"
	if err := e.db.SaveConsents(t.Context(), []model.Consent{
		{Decision: model.Decision{DialogueID: "d1", CustomerID: "c1", Consent: true}, Messages: msgs[1:]},
		{Decision: model.Decision{DialogueID: "d2", CustomerID: "c2", Consent: true}, Messages: msgs[:1]},
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.handler)
	defer srv.Close()
	get := func(target, accept string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", srv.URL+target, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	for _, accept := range []string{"application/x-ndjson", "text/csv"} {
		resp, body, err := get("/data/export?customerId=c1", accept)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "hello") || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s, failing mid-stream: got %d, %d bytes, %v; want 200, rows, then io.ErrUnexpectedEOF", accept, resp.StatusCode, len(body), err)
		}
		resp, body, err = get("/data/export?customerId=c2", accept)
		if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") == "" || err != nil {
			t.Errorf("%s, failing before anything is sent: got %d %q %s, %v; want a 503 problem", accept, resp.StatusCode, resp.Header.Get("Content-Type"), body, err)
		}
	}
}
