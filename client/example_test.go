package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/client"
	"github.com/data-api/data-api/config"
)

// The chatbot's backend and an analyst at work, against a Data API that
// this program starts for itself (in production: the service's URL, and
// keys or tokens from its operators).
func Example() {
	url, stop := startService()
	defer stop()
	ctx := context.Background()

	bot, err := client.New(url, client.Options{Token: client.StaticToken("the-bot-secret-0123456789")})
	if err != nil {
		log.Fatal(err)
	}
	// The chatbot holds each customer message until the dialogue ends...
	for _, text := range []string{"Hello, my order #1234 has not arrived", "It was due on Monday"} {
		if _, err := bot.Ingest(ctx, "42", "7f9c2ba4", client.NewMessage{Text: text, Language: "EN"}); err != nil {
			log.Fatal(err) // not retried unless nothing was accepted: the caller decides
		}
	}
	// ...then sends the customer's decision. A consent is retried on a 503
	// or a lost reply: a retry stores nothing twice.
	res, err := bot.Consent(ctx, "7f9c2ba4", true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", res.StoredMessages)

	analyst, err := client.New(url, client.Options{Token: client.StaticToken("the-analyst-secret-0123456789")})
	if err != nil {
		log.Fatal(err)
	}
	// Pages, newest first, following nextCursor.
	for page, err := range analyst.Pages(ctx, client.Query{Filter: client.Filter{CustomerID: "42"}, Limit: 1}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("page:", page.Messages[0].Text)
	}
	// The whole filtered set as one stream, in constant memory.
	for m, err := range analyst.Export(ctx, client.Filter{Language: "en", Since: time.Now().Add(-time.Hour)}) {
		if err != nil {
			log.Fatal(err) // the stream was cut short
		}
		fmt.Println("export:", m.Language, m.Text)
	}
	// A whole dialogue, oldest first.
	d, err := analyst.Dialogue(ctx, "7f9c2ba4")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dialogue of customer", d.CustomerID+":", len(d.Messages), "messages, first:", d.Messages[0].Text)
	// Problems are typed errors.
	if _, err := analyst.Decision(ctx, "never-seen"); client.IsNotFound(err) {
		fmt.Println("never-seen: no decision recorded")
	}
	var p *client.Problem
	if _, err := bot.Page(ctx, client.Query{}); errors.As(err, &p) {
		fmt.Println("the bot reading:", p.Status, p.Type)
	}

	// Output:
	// stored: 2
	// page: It was due on Monday
	// page: Hello, my order #1234 has not arrived
	// export: en It was due on Monday
	// export: en Hello, my order #1234 has not arrived
	// dialogue of customer 42: 2 messages, first: Hello, my order #1234 has not arrived
	// never-seen: no decision recorded
	// the bot reading: 403 urn:data-api:problem:forbidden
}

// startService starts Data API in this process over a fresh SQLite file,
// with two API keys, and returns its URL and a function that stops it.
func startService() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "data-api-example-")
	if err != nil {
		log.Fatal(err)
	}
	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(dir, "data.db")
	cfg.Auth.Keys = []config.Key{
		{Name: "chatbot", Key: "the-bot-secret-0123456789", Roles: []string{"ingest"}},
		{Name: "analyst", Key: "the-analyst-secret-0123456789", Roles: []string{"analyst"}},
	}
	a, err := app.New(context.Background(), cfg, app.Options{})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler)
	return srv.URL, func() {
		srv.Close()
		a.Close()
		os.RemoveAll(dir)
	}
}
