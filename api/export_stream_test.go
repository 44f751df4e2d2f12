package api_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/model"
)

// exportSpy reports how an export ended.
type exportSpy struct {
	api.Dialogues
	rows chan int
}

func (s exportSpy) Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error {
	n := 0
	err := s.Dialogues.Export(ctx, f, func(m model.StoredMessage) error {
		n++
		return fn(m)
	})
	s.rows <- n
	return err
}

func TestExportStopsWhenTheClientHangsUp(t *testing.T) {
	spy := exportSpy{rows: make(chan int, 1)}
	e := newEnv(t, envOptions{wrap: func(d api.Dialogues) api.Dialogues { spy.Dialogues = d; return spy }})
	const total = 100_000
	var msgs []model.Message
	for i := range total {
		msgs = append(msgs, model.Message{CustomerID: "c", DialogueID: "d", Language: "en",
			Text: fmt.Sprintf("message %d with some padding to make the line longer", i), CreatedAt: time.Unix(0, int64(i))})
	}
	if err := e.db.SaveConsents(t.Context(), []model.Consent{{Decision: model.Decision{DialogueID: "d", CustomerID: "c", Consent: true}, Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/data/export")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // hang up after the first line
	srv.CloseClientConnections()
	select {
	case n := <-spy.rows:
		if n >= total {
			t.Fatalf("the export ran to the end (%d rows) after the client hung up", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the export did not stop after the client hung up")
	}
}
