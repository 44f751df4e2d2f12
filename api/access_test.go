package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/model"
)

// accessLines decodes a right-of-access document: one JSON object a line.
func accessLines(t *testing.T, w *httptest.ResponseRecorder) []map[string]any {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type %q, want application/x-ndjson", ct)
	}
	var lines []map[string]any
	for line := range strings.Lines(w.Body.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// summary is a line of the document in brief: its kind and what tells it
// apart.
func summary(m map[string]any) string {
	switch m["kind"] {
	case "message":
		return fmt.Sprintf("message %v %v", m["dialogId"], m["text"])
	case "consent":
		return fmt.Sprintf("consent %v %v %v", m["dialogId"], m["consent"], m["messages"])
	case "erasure":
		return fmt.Sprintf("erasure %v %v", m["customerId"], m["messages"])
	}
	return fmt.Sprintf("unknown %v", m)
}

func TestCustomerData(t *testing.T) {
	e := newEnv(t, envOptions{config: withKeys(key("dpo", "admin"), key("bot", "ingest"), key("ana", "analyst"))})
	as := func(who, method, target, body string) *httptest.ResponseRecorder {
		return e.do(method, target, body, "Authorization", "Bearer "+secret(who))
	}
	post := func(customer, dialogue, text string) {
		t.Helper()
		if w := as("bot", "POST", "/data/"+customer+"/"+dialogue, `{"text": "`+text+`", "language": "en"}`); w.Code != 202 {
			t.Fatalf("ingest: %d %s", w.Code, w.Body)
		}
	}
	decide := func(dialogue, consent string) {
		t.Helper()
		if w := as("bot", "POST", "/consents/"+dialogue, consent); w.Code != 200 {
			t.Fatalf("consent: %d %s", w.Code, w.Body)
		}
	}
	post("alice", "a1", "first")
	e.clock.Advance(time.Second)
	post("alice", "a1", "second")
	decide("a1", "true")
	post("alice", "a2", "withdrawn later")
	decide("a2", "true")
	decide("a2", "false")
	post("alice", "a3", "still pending")
	post("bob", "b1", "bob's")
	decide("b1", "true")

	lines := accessLines(t, as("dpo", "GET", "/customers/alice/data", ""))
	var got []string
	for _, l := range lines {
		got = append(got, summary(l))
	}
	want := []string{
		"message a1 second", "message a1 first",
		"consent a1 true 2", "consent a2 true 1", "consent a2 false 1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if lines[0]["customerId"] != "alice" || lines[0]["language"] != "en" || lines[0]["createdAt"] != "2026-11-26T21:36:05.123456789Z" {
		t.Errorf("message line %v", lines[0])
	}
	// The callers' names are the operator's, not the customer's; pending
	// text is not stored.
	for _, s := range []string{`"bot"`, "keyName", "still pending", "bob"} {
		if strings.Contains(as("dpo", "GET", "/customers/alice/data", "").Body.String(), s) {
			t.Errorf("the document holds %s", s)
		}
	}

	if w := as("dpo", "DELETE", "/customers/alice/data", ""); w.Code != 200 {
		t.Fatalf("erasure: %d %s", w.Code, w.Body)
	}
	got = nil
	for _, l := range accessLines(t, as("dpo", "GET", "/customers/alice/data", "")) {
		got = append(got, summary(l))
	}
	want = []string{"consent a1 true 2", "consent a2 true 1", "consent a2 false 1", "erasure alice 2"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the erasure got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Nothing stored: 200 with an empty document.
	if w := as("dpo", "GET", "/customers/nobody/data", ""); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("a customer never seen: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	// The admin role only; no query; a valid id.
	wantProblem(t, as("ana", "GET", "/customers/bob/data", ""), 403)
	wantProblem(t, as("bot", "GET", "/customers/bob/data", ""), 403)
	wantProblem(t, e.do("GET", "/customers/bob/data", ""), 401)
	wantProblem(t, as("dpo", "GET", "/customers/bob/data?kind=message", ""), 400, "kind")
	wantProblem(t, as("dpo", "GET", "/customers/b%20ob/data", ""), 400, "customerId")
	wantProblem(t, as("dpo", "GET", "/customers/"+strings.Repeat("b", 129)+"/data", ""), 400, "customerId")
}

// accessSpy counts the records a right-of-access document was given.
type accessSpy struct {
	api.Dialogues
	records chan int
}

func (s accessSpy) CustomerData(ctx context.Context, id string, fn func(model.CustomerRecord) error) error {
	n := 0
	err := s.Dialogues.CustomerData(ctx, id, func(r model.CustomerRecord) error {
		n++
		return fn(r)
	})
	s.records <- n
	return err
}

// TestCustomerDataStopsWhenTheClientHangsUp reads the first line of a
// large document and hangs up: the stream stops rather than run to the
// end.
func TestCustomerDataStopsWhenTheClientHangsUp(t *testing.T) {
	spy := accessSpy{records: make(chan int, 1)}
	e := newEnv(t, envOptions{wrap: func(d api.Dialogues) api.Dialogues { spy.Dialogues = d; return spy }})
	const total = 100_000
	msgs := make([]model.Message, total)
	for i := range msgs {
		msgs[i] = model.Message{CustomerID: "c", DialogueID: "d", Language: "en",
			Text: fmt.Sprintf("message %d with some padding to make the line longer", i), CreatedAt: time.Unix(0, int64(i))}
	}
	if err := e.db.SaveConsents(t.Context(), []model.Consent{{Decision: model.Decision{DialogueID: "d", CustomerID: "c", Consent: true}, Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/customers/c/data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.CloseClientConnections()
	select {
	case n := <-spy.records:
		if n >= total {
			t.Fatalf("the document ran to the end (%d records) after the client hung up", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the document did not stop after the client hung up")
	}
	// The handler logs once the read has returned to it, after the spy.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), "right-of-access document ended early") {
		if time.Now().After(deadline) {
			t.Fatal("the cut stream is not logged")
		}
		time.Sleep(5 * time.Millisecond) // waiting for the handler's log line, not for a result
	}
}
