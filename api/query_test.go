package api_test

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// seed stores n consented messages for each customer × language, pairs of
// them received at the same nanosecond, and returns their texts in the
// order the contract requires: newest createdAt first, ties broken by the
// stable id, which follows the order of storage.
func seed(t *testing.T, e *testEnv, customers, languages []string, n int) []string {
	t.Helper()
	type row struct {
		text      string
		tick, seq int
	}
	perCustomer := map[string][]row{}
	for i := range n {
		for _, c := range customers {
			for _, l := range languages {
				text := fmt.Sprintf("%s %s %d", c, l, i)
				e.post(c, "dlg-"+c, text, l)
				perCustomer[c] = append(perCustomer[c], row{text: text, tick: i / 2})
			}
		}
		if i%2 == 1 {
			e.clock.Advance(time.Microsecond)
		}
	}
	var rows []row
	for _, c := range customers {
		e.consent("dlg-"+c, true)
		for _, r := range perCustomer[c] {
			r.seq = len(rows)
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.tick, a.tick), cmp.Compare(b.seq, a.seq))
	})
	texts := make([]string, len(rows))
	for i, r := range rows {
		texts[i] = r.text
	}
	return texts
}

type page struct {
	Data []struct {
		CustomerID, DialogID, Language, Text, CreatedAt string
	}
	NextCursor *string
}

func getPage(t *testing.T, e *testEnv, target string) (page, http.Header) {
	t.Helper()
	w := e.do("GET", target, "")
	if w.Code != 200 {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	var p page
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	return p, w.Header()
}

var linkNext = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// all follows the Link header from target to the last page.
func all(t *testing.T, e *testEnv, target string) (texts []string, pages int) {
	t.Helper()
	for target != "" {
		p, h := getPage(t, e, target)
		pages++
		for _, m := range p.Data {
			texts = append(texts, m.Text)
		}
		target = ""
		if link := h.Get("Link"); link != "" {
			m := linkNext.FindStringSubmatch(link)
			if m == nil || p.NextCursor == nil {
				t.Fatalf("Link %q with nextCursor %v", link, p.NextCursor)
			}
			target = m[1]
		} else if p.NextCursor != nil {
			t.Fatalf("nextCursor %q without a Link header", *p.NextCursor)
		}
	}
	return texts, pages
}

func TestQueryFiltersAndPages(t *testing.T) {
	e := newEnv(t, envOptions{})
	texts := seed(t, e, []string{"alice", "bob"}, []string{"en", "de"}, 25)
	filter := func(keep func(string) bool) []string {
		var out []string
		for _, s := range texts {
			if keep(s) {
				out = append(out, s)
			}
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", texts},
		{"language=EN", filter(func(s string) bool { return strings.Contains(s, " en ") })},
		{"customerId=bob", filter(func(s string) bool { return strings.HasPrefix(s, "bob ") })},
		{"customerId=alice&language=de", filter(func(s string) bool { return strings.HasPrefix(s, "alice de ") })},
		{"customerId=carol", nil},
	} {
		for _, limit := range []int{1, 7, 100, 1000} {
			for _, path := range []string{"/data", "/data/"} {
				target := fmt.Sprintf("%s?limit=%d&%s", path, limit, tc.query)
				got, pages := all(t, e, target)
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Fatalf("GET %s: got %d messages %q…, want %d", target, len(got), got[:min(3, len(got))], len(tc.want))
				}
				if want := max(1, (len(tc.want)+limit-1)/limit); pages != want {
					t.Fatalf("GET %s: %d pages, want %d", target, pages, want)
				}
			}
		}
	}
	p, _ := getPage(t, e, "/data?customerId=carol")
	if p.Data == nil {
		t.Fatal(`no match must answer "data": [], not null`)
	}
	// Each message carries the fields of the contract, createdAt in RFC 3339 UTC with nanoseconds.
	p, _ = getPage(t, e, "/data?limit=1")
	m := p.Data[0]
	if m.CustomerID != "bob" || m.DialogID != "dlg-bob" || m.Language != "de" || m.CreatedAt != "2026-11-26T21:36:04.123468789Z" {
		t.Fatalf("newest message %+v", m)
	}
}

// TestQueryPageSaysItsLength: over a real server, a page far larger than
// what net/http buffers before it chunks a reply comes with its length and
// no chunked framing, and the length is the body's.
func TestQueryPageSaysItsLength(t *testing.T) {
	e := newEnv(t, envOptions{})
	seed(t, e, []string{"alice"}, []string{"en"}, 100)
	srv := httptest.NewServer(e.handler)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/data?limit=100")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /data: %d %v", resp.StatusCode, err)
	}
	if len(body) < 8<<10 || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Fatalf("a page of %d bytes: Content-Length %d, Transfer-Encoding %q", len(body), resp.ContentLength, resp.TransferEncoding)
	}
}

func TestQueryPagesStayStableWhileConsentsArrive(t *testing.T) {
	e := newEnv(t, envOptions{})
	texts := seed(t, e, []string{"alice"}, []string{"en"}, 30)
	p, _ := getPage(t, e, "/data?limit=10")
	// Newer messages consented meanwhile must not shift the next page.
	e.clock.Advance(time.Second)
	e.post("alice", "late", "late 1", "en")
	e.post("alice", "late", "late 2", "en")
	e.consent("late", true)
	got, _ := all(t, e, "/data?limit=10&cursor="+url.QueryEscape(*p.NextCursor))
	if strings.Join(got, "|") != strings.Join(texts[10:], "|") {
		t.Fatalf("pages after the first: %q, want %q", got, texts[10:])
	}
}

func TestQueryRejects(t *testing.T) {
	e := newEnv(t, envOptions{})
	seed(t, e, []string{"alice"}, []string{"en"}, 3)
	p, _ := getPage(t, e, "/data?limit=1&language=en")
	cursor := *p.NextCursor
	tampered := []byte(cursor)
	tampered[3] ^= 1
	for _, tc := range []struct {
		query    string
		mentions []string
	}{
		{"customer_id=alice", []string{"customer_id", "not a known query parameter"}},
		{"limit=0", []string{"limit", "between 1 and 1000"}},
		{"limit=1001", []string{"limit"}},
		{"limit=ten", []string{"limit"}},
		{"limit=1&limit=2", []string{"limit", "at most once"}},
		{"language=english!", []string{"language"}},
		{"language=", []string{"language", "empty"}},
		{"customerId=a/b", []string{"customerId"}},
		{"cursor=garbage", []string{"cursor"}},
		{"language=en&cursor=" + string(tampered), []string{"cursor"}},
		{"cursor=" + cursor, []string{"cursor"}},             // issued for language=en
		{"language=de&cursor=" + cursor, []string{"cursor"}}, // other filter
		{"language=en&customerId=alice&cursor=" + cursor, []string{"cursor"}},
	} {
		w := e.do("GET", "/data?"+tc.query, "")
		wantProblem(t, w, 400, tc.mentions...)
	}
	// The cursor still works with the filters it was issued for, in any case.
	if p, _ := getPage(t, e, "/data?limit=1&language=EN&cursor="+cursor); len(p.Data) != 1 {
		t.Fatalf("valid cursor: %d messages", len(p.Data))
	}
}

func TestExport(t *testing.T) {
	e := newEnv(t, envOptions{})
	texts := seed(t, e, []string{"alice", "bob"}, []string{"en", "pt-br"}, 300)
	for _, tc := range []struct {
		query string
		keep  func(string) bool
	}{
		{"", func(string) bool { return true }},
		{"?language=pt-BR&customerId=bob", func(s string) bool { return strings.HasPrefix(s, "bob pt-br ") }},
	} {
		w := e.do("GET", "/data/export"+tc.query, "")
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("export%s: %d %q", tc.query, w.Code, w.Header().Get("Content-Type"))
		}
		var got, want []string
		for _, s := range texts {
			if tc.keep(s) {
				want = append(want, s)
			}
		}
		sc := bufio.NewScanner(w.Body)
		for sc.Scan() {
			var m struct{ Text, CreatedAt string }
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			got = append(got, m.Text)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("export%s: %d lines, want %d in newest-first order", tc.query, len(got), len(want))
		}
	}
	if w := e.do("GET", "/data/export?customerId=nobody", ""); w.Code != 200 || w.Body.Len() != 0 {
		t.Fatalf("empty export: %d %q", w.Code, w.Body)
	}
	wantProblem(t, e.do("GET", "/data/export?limit=5", ""), 400, "limit")
	wantProblem(t, e.do("GET", "/data/export?language=x_y", ""), 400, "language")
}

func TestMalformedQueryStringIsRejected(t *testing.T) {
	e := newEnv(t, envOptions{})
	seed(t, e, []string{"alice", "bob"}, []string{"en"}, 1)
	for _, target := range []string{"/data?customerId=%zz", "/data?customerId=alice;x", "/data/export?customerId=%zz", "/consents/d?x=%zz"} {
		wantProblem(t, e.do("GET", target, ""), 400)
	}
	for _, target := range []string{"/healthz?verbose=1", "/readyz?x=1", "/metrics?name=x", "/openapi.json?v=3"} {
		wantProblem(t, e.do("GET", target, ""), 400)
	}
	for _, target := range []string{"/data/c/d?debug=1", "/consents/d?force=true"} {
		wantProblem(t, e.do("POST", target, `{"text": "x", "language": "en"}`), 400)
	}
}
