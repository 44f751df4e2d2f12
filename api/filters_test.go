package api_test

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/internal/fake"
	"github.com/data-api/data-api/model"
)

// exported is one line of an NDJSON export.
type exported struct {
	CustomerID, DialogID, Language, Text, CreatedAt string
}

// exportAll reads the NDJSON export of target.
func exportAll(t *testing.T, e *testEnv, target string) []exported {
	t.Helper()
	w := e.do("GET", target, "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET %s: %d %q %s", target, w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var out []exported
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		var m exported
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestQueryTimeAndDialogueFilters(t *testing.T) {
	e := newEnv(t, envOptions{})
	seed(t, e, []string{"alice", "bob"}, []string{"en", "de"}, 25)
	// A second dialogue of alice's, later.
	e.clock.Advance(time.Millisecond)
	e.post("alice", "dlg-late", "late", "en")
	e.consent("dlg-late", true)
	whole := exportAll(t, e, "/data/export")
	at := func(d time.Duration) time.Time { return fake.Start.Add(d) }
	since, until := at(3*time.Microsecond), at(9*time.Microsecond)
	paris := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		query string
		keep  func(exported) bool
	}{
		{"dialogId=dlg-bob", func(m exported) bool { return m.DialogID == "dlg-bob" }},
		{"dialogId=dlg-late&customerId=alice&language=en", func(m exported) bool { return m.DialogID == "dlg-late" }},
		{"dialogId=dlg-bob&customerId=alice", func(exported) bool { return false }},
		{"dialogId=dlg-alice&language=DE", func(m exported) bool { return m.DialogID == "dlg-alice" && m.Language == "de" }},
		{"since=" + since.Format(time.RFC3339Nano), func(m exported) bool { return !created(t, m).Before(since) }},
		{"until=" + until.Format(time.RFC3339Nano), func(m exported) bool { return created(t, m).Before(until) }},
		// The same instants written in another zone, the + escaped.
		{"since=" + url.QueryEscape(since.In(paris).Format(time.RFC3339Nano)) + "&until=" + url.QueryEscape(until.In(paris).Format(time.RFC3339Nano)),
			func(m exported) bool { return !created(t, m).Before(since) && created(t, m).Before(until) }},
		{"since=" + since.Format(time.RFC3339Nano) + "&until=" + until.Format(time.RFC3339Nano) + "&customerId=bob&language=en",
			func(m exported) bool {
				return !created(t, m).Before(since) && created(t, m).Before(until) && m.CustomerID == "bob" && m.Language == "en"
			}},
		{"since=" + strings.ToLower(at(time.Millisecond).Format(time.RFC3339Nano)), func(m exported) bool { return m.Text == "late" }},
		{"until=1970-01-01T00:00:00Z", func(exported) bool { return false }},
		{"since=0001-01-01T00:00:01Z&until=9999-12-31T23:59:59Z", func(exported) bool { return true }},
	} {
		var want []string
		for _, m := range whole {
			if tc.keep(m) {
				want = append(want, m.Text)
			}
		}
		for _, limit := range []int{1, 7, 1000} {
			target := fmt.Sprintf("/data?limit=%d&%s", limit, tc.query)
			if got, _ := all(t, e, target); !slices.Equal(got, want) {
				t.Errorf("GET %s: got %d messages, want %d: %q", target, len(got), len(want), want)
			}
		}
		var got []string
		for _, m := range exportAll(t, e, "/data/export?"+tc.query) {
			got = append(got, m.Text)
		}
		if !slices.Equal(got, want) {
			t.Errorf("GET /data/export?%s: got %d messages, want %d", tc.query, len(got), len(want))
		}
	}
}

func created(t *testing.T, m exported) time.Time {
	t.Helper()
	c, err := time.Parse(time.RFC3339Nano, m.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQueryRejectsBadFilters(t *testing.T) {
	e := newEnv(t, envOptions{})
	seed(t, e, []string{"alice"}, []string{"en"}, 3)
	const since = "2026-11-26T21:36:04.123456789Z"
	p, _ := getPage(t, e, "/data?limit=1&since="+since)
	cursor := url.QueryEscape(*p.NextCursor)
	for _, tc := range []struct {
		query    string
		mentions []string
	}{
		{"since=yesterday", []string{"since", "RFC 3339"}},
		{"since=2026-11-26", []string{"since", "RFC 3339"}},
		{"until=2026-11-26T21:36:04", []string{"until", "offset"}},
		{"since=2026-11-26T22:36:04+01:00", []string{"since", "%2B"}}, // the + arrives as a space
		{"until=2026-13-01T00:00:00Z", []string{"until"}},
		{"since=", []string{"since", "empty"}},
		{"until=", []string{"until", "empty"}},
		{"dialogId=", []string{"dialogId", "empty"}},
		{"dialogId=a/b", []string{"dialogId"}},
		{"dialogId=" + strings.Repeat("d", 129), []string{"dialogId"}},
		{"since=" + since + "&since=" + since, []string{"since", "at most once"}},
		{"since=" + since + "&until=" + since, []string{"until", "later than since"}},
		{"since=2026-11-27T00:00:00Z&until=2026-11-26T00:00:00Z", []string{"until", "later than since"}},
		{"dialog_id=d", []string{"dialog_id", "dialogId, since, until"}},
		// A cursor is bound to its filters, the new ones too.
		{"cursor=" + cursor, []string{"cursor"}},
		{"since=2026-11-26T21:36:04.123456790Z&cursor=" + cursor, []string{"cursor"}},
		{"since=" + since + "&until=2030-01-01T00:00:00Z&cursor=" + cursor, []string{"cursor"}},
		{"since=" + since + "&dialogId=dlg-alice&cursor=" + cursor, []string{"cursor"}},
	} {
		for _, path := range []string{"/data", "/data/export"} {
			if path == "/data/export" && strings.Contains(tc.query, "cursor") {
				continue
			}
			wantProblem(t, e.do("GET", path+"?"+tc.query, ""), 400, tc.mentions...)
		}
	}
	// The cursor works for the same instant written in another zone.
	if p, _ := getPage(t, e, "/data?limit=1&since="+url.QueryEscape("2026-11-26T22:36:04.123456789+01:00")+"&cursor="+cursor); len(p.Data) != 1 {
		t.Fatalf("the cursor with since in another zone: %d messages, want 1", len(p.Data))
	}
}

// csvExport reads a CSV export of target and checks its framing.
func csvExport(t *testing.T, e *testEnv, target, accept string) [][]string {
	t.Helper()
	w := e.do("GET", target, "", "Accept", accept)
	if w.Code != 200 {
		t.Fatalf("GET %s as %s: %d %s", target, accept, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/csv; charset=utf-8; header=present" {
		t.Fatalf("GET %s as %s: Content-Type %q, want text/csv", target, accept, ct)
	}
	if !strings.Contains(w.Header().Get("Vary"), "Accept") {
		t.Errorf("GET %s: Vary %q, want Accept", target, w.Header().Get("Vary"))
	}
	body := w.Body.String()
	if !strings.HasSuffix(body, "\r\n") || strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") {
		t.Errorf("GET %s: lines do not all end with CRLF: %q", target, body)
	}
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("GET %s: not RFC 4180 CSV: %v\n%s", target, err, body)
	}
	if len(records) == 0 || !slices.Equal(records[0], []string{"customerId", "dialogId", "language", "text", "createdAt"}) {
		t.Fatalf("GET %s: header row %q", target, records)
	}
	return records[1:]
}

func TestExportCSV(t *testing.T) {
	e := newEnv(t, envOptions{})
	texts := []string{
		"plain",
		`with "quotes", a comma`,
		"two\nlines",
		"=HYPERLINK(\"http://evil.example\",\"click\")",
		"+1+1",
		"-2+3",
		"@SUM(A1:A2)",
		"\tcmd",
		"\rcmd",
		"ok=1+1 inside",
		"'already quoted",
	}
	for _, s := range texts {
		e.post("-1", "dlg-x", s, "en") // an id a spreadsheet would read as a number
		e.clock.Advance(time.Microsecond)
	}
	e.consent("dlg-x", true)
	ndjson := exportAll(t, e, "/data/export")

	rows := csvExport(t, e, "/data/export", "text/csv")
	if len(rows) != len(texts) {
		t.Fatalf("got %d rows, want %d", len(rows), len(texts))
	}
	for i, r := range rows {
		m := ndjson[i]
		want := []string{"'-1", "dlg-x", "en", m.Text, m.CreatedAt}
		if first := m.Text[0]; strings.IndexByte("=+-@\t\r", first) >= 0 {
			want[3] = "'" + m.Text
		}
		// encoding/csv writes a line break inside a cell as CRLF, which it
		// reads back as LF, and drops a lone CR.
		want[3] = strings.ReplaceAll(want[3], "\r", "")
		if !slices.Equal(r, want) {
			t.Errorf("row %d: got %q, want %q", i, r, want)
		}
	}
	// Filters apply as to NDJSON; an empty export is its header row.
	if rows := csvExport(t, e, "/data/export?customerId=nobody", "text/csv"); len(rows) != 0 {
		t.Errorf("empty CSV export: %q", rows)
	}
	if rows := csvExport(t, e, "/data/export?language=en&until="+url.QueryEscape(ndjson[len(ndjson)-2].CreatedAt), "text/csv"); len(rows) != 1 || rows[0][3] != "plain" {
		t.Errorf("filtered CSV export: %q, want the oldest message only", rows)
	}
	wantProblem(t, e.do("GET", "/data/export?limit=5", "", "Accept", "text/csv"), 400, "limit")
}

func TestExportNegotiation(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		accept []string
		want   string
	}{
		{nil, "application/x-ndjson"},
		{[]string{"*/*"}, "application/x-ndjson"},
		{[]string{"application/x-ndjson"}, "application/x-ndjson"},
		{[]string{"application/json"}, "application/x-ndjson"}, // unknown: NDJSON as always, not 406
		{[]string{"text/html,application/xhtml+xml"}, "application/x-ndjson"},
		{[]string{"text/csv"}, "text/csv"},
		{[]string{"TEXT/CSV; charset=utf-8"}, "text/csv"},
		{[]string{"text/*"}, "text/csv"},
		{[]string{"text/csv, */*;q=0.1"}, "text/csv"},
		{[]string{"text/csv;q=0.5, application/x-ndjson"}, "application/x-ndjson"},
		{[]string{"application/x-ndjson;q=0.4, text/csv;q=0.9"}, "text/csv"},
		{[]string{"text/csv, application/x-ndjson"}, "application/x-ndjson"}, // a tie keeps the default
		{[]string{"text/csv, */*"}, "text/csv"},                              // named beats a wildcard
		{[]string{"text/csv;q=0"}, "application/x-ndjson"},
		{[]string{"text/csv;q=0, */*"}, "application/x-ndjson"},
		{[]string{"text/csv;q=2"}, "text/csv"}, // a bad quality counts as 1
		{[]string{"application/json", "text/csv"}, "text/csv"},
	} {
		r := httptest.NewRequest("GET", "/data/export", nil)
		for _, a := range tc.accept {
			r.Header.Add("Accept", a)
		}
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, r)
		if ct := w.Header().Get("Content-Type"); w.Code != 200 || !strings.HasPrefix(ct, tc.want) {
			t.Errorf("Accept %q: %d %q, want %s", tc.accept, w.Code, ct, tc.want)
		}
	}
	// HEAD says what GET would send.
	w := e.do("HEAD", "/data/export", "", "Accept", "text/csv")
	if ct := w.Header().Get("Content-Type"); w.Code != 200 || !strings.HasPrefix(ct, "text/csv") || w.Header().Get("Vary") != "Accept" {
		t.Errorf("HEAD with Accept text/csv: %d %q, Vary %q; want 200 text/csv, Vary Accept", w.Code, ct, w.Header().Get("Vary"))
	}
}

// dialogueReply is the body of GET /dialogues/{dialogId}.
type dialogueReply struct {
	DialogID, CustomerID, DecidedAt string
	Messages                        []exported
}

func TestDialogue(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) {
		c.Dialogues.MaxMessages = 1500
		c.Auth.Keys = []config.Key{key("analyst", "analyst"), key("bot", "ingest"), key("dpo", "admin")}
	}})
	as := func(k string) []string { return []string{"Authorization", "Bearer " + secret(k)} }
	ingest := func(customer, dialogue, text, lang string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"text": text, "language": lang})
		if w := e.do("POST", "/data/"+customer+"/"+dialogue, string(body), as("bot")...); w.Code != 202 {
			t.Fatalf("ingest: %d %s", w.Code, w.Body)
		}
	}
	consent := func(dialogue, decision string) {
		t.Helper()
		if w := e.do("POST", "/consents/"+dialogue, decision, as("bot")...); w.Code != 200 {
			t.Fatalf("consent: %d %s", w.Code, w.Body)
		}
	}
	get := func(dialogue string) dialogueReply {
		t.Helper()
		w := e.do("GET", "/dialogues/"+dialogue, "", as("analyst")...)
		if w.Code != 200 {
			t.Fatalf("GET /dialogues/%s: %d %s", dialogue, w.Code, w.Body)
		}
		var d dialogueReply
		if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}

	for i, text := range []string{"hello", "my order", "thanks"} {
		ingest("c1", "d1", text, []string{"EN", "de", "en"}[i])
		e.clock.Advance(time.Microsecond)
	}
	// Two messages at the same nanosecond keep the order they came in.
	ingest("c1", "d1", "tie 1", "en")
	ingest("c1", "d1", "tie 2", "en")
	e.clock.Advance(time.Second)
	consent("d1", "true")
	d := get("d1")
	var texts []string
	for _, m := range d.Messages {
		texts = append(texts, m.Text)
		if m.CustomerID != "c1" || m.DialogID != "d1" {
			t.Errorf("message %+v", m)
		}
	}
	if want := []string{"hello", "my order", "thanks", "tie 1", "tie 2"}; !slices.Equal(texts, want) {
		t.Errorf("messages %q, want %q oldest first", texts, want)
	}
	if d.DialogID != "d1" || d.CustomerID != "c1" || d.DecidedAt != "2026-11-26T21:36:05.123459789Z" || d.Messages[0].CreatedAt != "2026-11-26T21:36:04.123456789Z" || d.Messages[1].Language != "de" {
		t.Errorf("dialogue %+v", d)
	}

	// A dialogue consented again after new messages holds both consents' messages.
	ingest("c1", "d1", "one more", "en")
	e.clock.Advance(time.Second)
	consent("d1", "true")
	if d := get("d1"); len(d.Messages) != 6 || d.Messages[5].Text != "one more" || d.DecidedAt != "2026-11-26T21:36:06.123459789Z" {
		t.Errorf("after a second consent: %d messages, decided %s", len(d.Messages), d.DecidedAt)
	}

	// Nothing stored: never seen, pending only, refused, withdrawn, erased.
	ingest("c2", "pending", "not yet", "en")
	ingest("c2", "refused", "no", "en")
	consent("refused", "false")
	ingest("c2", "withdrawn", "yes then no", "en")
	consent("withdrawn", "true")
	consent("withdrawn", "false")
	ingest("c3", "erased", "gone", "en")
	consent("erased", "true")
	if w := e.do("DELETE", "/customers/c3/data", "", as("dpo")...); w.Code != 200 {
		t.Fatalf("erase: %d", w.Code)
	}
	for _, id := range []string{"never", "pending", "refused", "withdrawn", "erased"} {
		wantProblem(t, e.do("GET", "/dialogues/"+id, "", as("analyst")...), 404, "no consented message")
	}
	wantProblem(t, e.do("GET", "/dialogues/a%20b", "", as("analyst")...), 400, "dialogId")
	wantProblem(t, e.do("GET", "/dialogues/d1?verbose=1", "", as("analyst")...), 400, "verbose")
	wantProblem(t, e.do("GET", "/dialogues/d1", "", as("bot")...), 403)
	wantProblem(t, e.do("GET", "/dialogues/d1", ""), 401)

	// The largest dialogue one consent stores fits; one message more does not.
	big := make([]model.Message, 1500)
	for i := range big {
		big[i] = model.Message{CustomerID: "c4", DialogueID: "big", Language: "en", Text: fmt.Sprint(i), CreatedAt: fake.Start.Add(time.Duration(i))}
	}
	store := func(msgs ...model.Message) {
		t.Helper()
		if err := e.db.SaveConsents(t.Context(), []model.Consent{{Decision: model.Decision{DialogueID: "big", CustomerID: "c4", Consent: true, DecidedAt: fake.Start}, Messages: msgs}}); err != nil {
			t.Fatal(err)
		}
	}
	store(big...)
	if d := get("big"); len(d.Messages) != 1500 || d.Messages[0].Text != "0" || d.Messages[1499].Text != "1499" {
		t.Errorf("a dialogue of 1500 messages: got %d", len(d.Messages))
	}
	store(model.Message{CustomerID: "c4", DialogueID: "big", Language: "en", Text: "1500", CreatedAt: fake.Start.Add(time.Hour)})
	wantProblem(t, e.do("GET", "/dialogues/big", "", as("analyst")...), 422, "more than 1500 messages", "GET /data?dialogId=")
	n := 0
	for target := "/data?limit=1000&dialogId=big"; target != ""; {
		w := e.do("GET", target, "", as("analyst")...)
		var p page
		if err := json.Unmarshal(w.Body.Bytes(), &p); w.Code != 200 || err != nil {
			t.Fatalf("GET %s: %d %v", target, w.Code, err)
		}
		n += len(p.Data)
		target = ""
		if p.NextCursor != nil {
			target = "/data?limit=1000&dialogId=big&cursor=" + url.QueryEscape(*p.NextCursor)
		}
	}
	if n != 1501 {
		t.Errorf("the dialogue by pages: %d messages, want 1501", n)
	}
}
