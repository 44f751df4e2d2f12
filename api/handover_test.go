package api_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/redis/rueidis"

	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/testserver"
)

// TestConsentCommittedAnswers200WhenRedisFailsAfterTheCommit makes Redis
// refuse the service between the database's commit of a decision and the
// release of the pending dialogue: the decision is stored, so the caller
// gets 200, not a 503 that says nothing changed; the take left behind
// times out, and a retried decision stores nothing twice.
//
// Everything is real: the router, SQLite, and a Redis server that refuses
// the service's user. The test holds SQLite's write lock from a connection
// of its own, so that the consent waits in its commit while the test
// refuses the user every command once the dialogue is taken, then lets the
// commit go.
func TestConsentCommittedAnswers200WhenRedisFailsAfterTheCommit(t *testing.T) {
	base := testserver.Redis(t)
	for _, decision := range []bool{true, false} {
		t.Run(fmt.Sprint(decision), func(t *testing.T) {
			ctx := context.Background()
			opts, err := rueidis.ParseURL(base)
			if err != nil {
				t.Fatal(err)
			}
			opts.DisableCache = true
			client, err := rueidis.NewClient(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			admin := func(args ...string) rueidis.RedisResult {
				return client.Do(context.Background(), client.B().Arbitrary(args...).Build())
			}
			user, password := "test-"+strings.ToLower(rand.Text()[:12]), rand.Text()
			if err := admin("ACL", "SETUSER", user, "on", ">"+password, "~*", "&*", "+@all").Error(); err != nil {
				t.Fatalf("ACL SETUSER: %v", err)
			}
			t.Cleanup(func() { admin("ACL", "DELUSER", user) })
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.UserPassword(user, password)
			prefix := "test:" + user + ":"
			const takeTimeout = 500 * time.Millisecond
			e := newEnv(t, envOptions{config: func(c *config.Config) {
				c.Dialogues.Store, c.Redis.URL, c.Redis.Prefix = "redis", u.String(), prefix
				c.Redis.TakeTimeout = takeTimeout
			}})
			const customer, dialogue = "cust-handover-5b1e", "dlg-handover-93ad"
			e.post(customer, dialogue, "first", "en")
			e.post(customer, dialogue, "second", "en")
			if !decision {
				e.consent(dialogue, true) // something to withdraw
				e.post(customer, dialogue, "third", "en")
			}

			lock, err := sql.Open("sqlite3", filepath.Join(e.dir, "data.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Close()
			conn, err := lock.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				t.Fatal(err)
			}
			offset := len(e.logs.String())
			body := fmt.Sprint(decision)
			reply := make(chan *struct {
				code int
				body string
			}, 1)
			go func() {
				w := e.do("POST", "/consents/"+dialogue, body)
				reply <- &struct {
					code int
					body string
				}{w.Code, w.Body.String()}
			}()

			// The dialogue is taken: the consent is in its commit, waiting
			// for the lock (SQLite's busy timeout is 5 s).
			for deadline := time.Now().Add(4 * time.Second); ; {
				taken, err := admin("HEXISTS", prefix+"d:"+dialogue, "busy").AsBool()
				if err != nil {
					t.Fatal(err)
				}
				if taken {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the consent never took the dialogue")
				}
				time.Sleep(time.Millisecond)
			}
			// Refuse the user every command from now on, on the connections
			// it holds too. (Killing them instead could discard the take's
			// answer before the service has read it.)
			if err := admin("ACL", "SETUSER", user, "-@all").Error(); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}

			got := <-reply
			if got.code != http.StatusOK {
				t.Fatalf("POST /consents/%s %s with Redis refusing after the commit: got %d %s, want 200", dialogue, body, got.code, got.body)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(got.body), &out); err != nil {
				t.Fatal(err)
			}
			if decision && out["storedMessages"] != float64(2) || !decision && (out["deletedMessages"] != float64(2) || out["droppedMessages"] != float64(1)) {
				t.Errorf("reply %s, want the decision's outcome", got.body)
			}
			logs := e.logs.String()[offset:]
			if !strings.Contains(logs, "could not be released") {
				t.Errorf("no warning that the dialogue was not released; log:\n%s", logs)
			}
			for _, id := range []string{customer, dialogue} {
				if strings.Contains(logs, id) {
					t.Errorf("the log names %q:\n%s", id, logs)
				}
			}

			// Redis serves again: the take left behind times out, and the
			// retried decision stores nothing twice.
			if err := admin("ACL", "SETUSER", user, "+@all").Error(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			e.consent(dialogue, decision)
			if waited := time.Since(start); waited < takeTimeout/2 {
				t.Errorf("the retry did not wait for the take to time out (%v)", waited)
			}
			w := e.do("GET", "/data?customerId="+customer, "")
			var page struct{ Data []struct{ Text string } }
			if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
				t.Fatalf("GET /data: %d %s", w.Code, w.Body)
			}
			want := 2
			if !decision {
				want = 0
			}
			if len(page.Data) != want {
				t.Errorf("stored after the retry: %+v, want %d messages, each once", page.Data, want)
			}
			if st := e.svc.Stats(); st.PendingDialogues != 0 {
				t.Errorf("pending after the retry: %+v", st)
			}
		})
	}
}
