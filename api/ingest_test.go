package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/data-api/data-api/config"
)

func TestIngestAccepts(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i, tc := range []struct {
		path, body string
		headers    []string
		want       map[string]any
	}{
		{"/data/c1/d1", `{"text": "hello", "language": "EN"}`, []string{"Content-Type", "application/json"},
			map[string]any{"customerId": "c1", "dialogId": "d1", "pendingMessages": 1.0}},
		// No Content-Type, unknown fields ignored, white space around the object.
		{"/data/c1/d1", " \n{\"text\": \"again\", \"language\": \"en-us\", \"mood\": 3}\n", nil,
			map[string]any{"customerId": "c1", "dialogId": "d1", "pendingMessages": 2.0}},
		// A non-JSON Content-Type is accepted when the body is JSON.
		{"/data/123/550e8400-e29b-41d4-a716-446655440000", `{"text": "uuid ids", "language": "zh-hant-tw"}`, []string{"Content-Type", "text/plain"},
			map[string]any{"customerId": "123", "dialogId": "550e8400-e29b-41d4-a716-446655440000", "pendingMessages": 1.0}},
		{"/data/A.b_c~d:e-f/" + strings.Repeat("x", 128), `{"text": "😀 \ud83d\ude00", "language": "de"}`, nil,
			map[string]any{"customerId": "A.b_c~d:e-f", "dialogId": strings.Repeat("x", 128), "pendingMessages": 1.0}},
		{"/data/c1/long", `{"text": "` + strings.Repeat("é", 4096) + `", "language": "fr"}`, nil,
			map[string]any{"customerId": "c1", "dialogId": "long", "pendingMessages": 1.0}},
	} {
		w := e.do("POST", tc.path, tc.body, tc.headers...)
		if w.Code != http.StatusAccepted {
			t.Fatalf("case %d: status %d, want 202; body %s", i, w.Code, w.Body)
		}
		got := decode(t, w)
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("case %d: %s = %v, want %v", i, k, got[k], v)
			}
		}
	}
	// Languages are stored canonical: en-us → en-US, zh-hant-tw → zh-Hant-TW.
	for _, id := range []string{"d1", "550e8400-e29b-41d4-a716-446655440000"} {
		e.consent(id, true)
	}
	for _, q := range []string{"language=en-US", "language=EN-us", "language=zh-Hant-TW"} {
		got := decode(t, e.do("GET", "/data?"+q, ""))
		if n := len(got["data"].([]any)); n != 1 {
			t.Errorf("GET /data?%s: %d messages, want 1", q, n)
		}
	}
}

func TestIngestRejects(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Limits.MaxTextBytes, c.Limits.MaxBodyBytes = 16, 64 }})
	ok := `{"text": "hi", "language": "en"}`
	for _, tc := range []struct {
		name, path, body string
		status           int
		mentions         []string
	}{
		{"id too long", "/data/" + strings.Repeat("c", 129) + "/d", ok, 400, []string{"customerId", "128"}},
		{"id with a bad character", "/data/c@x/d", ok, 400, []string{"customerId", "A-Z"}},
		{"id dot", "/data/c/.", ok, 400, []string{"dialogId"}},
		{"id dot dot", "/data/../d", ok, 400, []string{"customerId"}},
		{"language missing", "/data/c/d", `{"text": "hi"}`, 400, []string{"language", "required"}},
		{"language malformed", "/data/c/d", `{"text": "hi", "language": "english!"}`, 400, []string{"language", "BCP 47"}},
		{"language with underscore", "/data/c/d", `{"text": "hi", "language": "en_US"}`, 400, []string{"language"}},
		{"text missing", "/data/c/d", `{"language": "en"}`, 400, []string{"text", "empty"}},
		{"text blank", "/data/c/d", `{"text": " \t\n\u00a0", "language": "en"}`, 400, []string{"text", "white space"}},
		{"text too long", "/data/c/d", `{"text": "12345678901234567", "language": "en"}`, 400, []string{"text", "16 bytes"}},
		{"text with NUL", "/data/c/d", `{"text": "a\u0000b", "language": "en"}`, 400, []string{"text", "NUL"}},
		{"invalid UTF-8", "/data/c/d", "{\"text\": \"a\xffb\", \"language\": \"en\"}", 400, []string{"UTF-8"}},
		{"lone surrogate", "/data/c/d", `{"text": "a\ud800b", "language": "en"}`, 400, []string{"surrogate"}},
		{"malformed JSON", "/data/c/d", `{"text": "hi", "language": "en"`, 400, []string{"JSON"}},
		{"trailing data", "/data/c/d", ok + ` {}`, 400, []string{"after"}},
		{"array body", "/data/c/d", `[` + ok + `]`, 400, []string{"object"}},
		{"null body", "/data/c/d", `null`, 400, []string{"object"}},
		{"string body", "/data/c/d", `"hi"`, 400, []string{"object"}},
		{"empty body", "/data/c/d", ``, 400, []string{"object"}},
		{"text of wrong type", "/data/c/d", `{"text": 5, "language": "en"}`, 400, []string{"text", "string"}},
		{"language of wrong type", "/data/c/d", `{"text": "hi", "language": ["en"]}`, 400, []string{"language", "string"}},
		{"body too large", "/data/c/d", `{"text": "hi", "language": "en", "pad": "` + strings.Repeat("x", 64) + `"}`, 413, []string{"64 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do("POST", tc.path, tc.body)
			wantProblem(t, w, tc.status, tc.mentions...)
		})
	}
	if st := e.svc.Stats(); st.PendingDialogues != 0 {
		t.Fatalf("a rejected message was kept: %+v", st)
	}
}

// TestIngestRefusesAmbiguousBodies: a known member named twice or in another
// case is a 400 that keeps nothing; unknown members stay ignored.
func TestIngestRefusesAmbiguousBodies(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct{ body, mention string }{
		{`{"text":"a","text":"b","language":"en"}`, "twice"},
		{`{"text":"a","language":"en","language":"de"}`, "twice"},
		{`{"text":"a","Text":"b","language":"en"}`, `did you mean \"text\"`},
		{`{"TEXT":"a","language":"en"}`, `did you mean \"text\"`},
		{`{"text":"a","language":"en","Language":"de"}`, `did you mean \"language\"`},
		{`{"text":"a","LANGUAGE":"en"}`, `did you mean \"language\"`},
		{`{"text":"a","language":"en","mood":1,"mood":2}`, "twice"},
		{`{"text":"a","language":"en","meta":{"k":1,"k":2}}`, "twice"},
	} {
		wantProblem(t, e.do("POST", "/data/c/d", tc.body), http.StatusBadRequest, tc.mention)
	}
	if st := e.svc.Stats(); st.PendingDialogues != 0 {
		t.Fatalf("an ambiguous message was kept: %+v", st)
	}
	if w := e.do("POST", "/data/c/d", `{"text":"a","language":"en","mood":1,"Mood":2,"TEXTS":3}`); w.Code != http.StatusAccepted {
		t.Fatalf("unknown members: %d %s", w.Code, w.Body)
	}
}

func TestIngestReportsEveryProblem(t *testing.T) {
	e := newEnv(t, envOptions{})
	w := e.do("POST", "/data/c$/d", `{"text": "", "language": "??"}`)
	p := wantProblem(t, w, 400, "3 problems")
	if n := len(p["errors"].([]any)); n != 3 {
		t.Fatalf("errors %v, want 3 entries", p["errors"])
	}
}

func TestIngestConflictsAndCaps(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Dialogues.MaxPending, c.Dialogues.MaxMessages = 2, 2 }})
	e.post("alice", "d1", "one", "en")
	wantProblem(t, e.do("POST", "/data/bob/d1", `{"text": "x", "language": "en"}`), 409, "another customer")
	e.post("alice", "d1", "two", "en")
	wantProblem(t, e.do("POST", "/data/alice/d1", `{"text": "three", "language": "en"}`), 422, "2 pending messages")
	e.post("alice", "d2", "one", "en")
	w := e.do("POST", "/data/alice/d3", `{"text": "x", "language": "en"}`)
	wantProblem(t, w, 503, "pending dialogues")
	if w.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	// A decided dialogue keeps its customer: bob may not reuse d1 after consent.
	e.consent("d1", true)
	wantProblem(t, e.do("POST", "/data/bob/d1", `{"text": "x", "language": "en"}`), 409)
	// Nothing accepted before was lost: d1's two messages are stored.
	got := decode(t, e.do("GET", "/data?customerId=alice", ""))
	if n := len(got["data"].([]any)); n != 2 {
		t.Fatalf("stored %d messages, want 2", n)
	}
}

// TestLanguageTagIsBounded: a tag of 64 bytes is accepted; one byte more,
// or an 18 KB private-use tag, is a 400 on ingest and in a filter alike.
func TestLanguageTagIsBounded(t *testing.T) {
	e := newEnv(t, envOptions{})
	tag := func(n int) string { // en-x-aaaaaaaa-aaaaaaaa-…, n bytes
		b := []byte("en-x")
		for len(b) < n {
			b = append(b, '-')
			b = append(b, strings.Repeat("a", min(8, n-len(b)))...)
		}
		return string(b[:n])
	}
	body := func(lang string) string { return `{"text": "hi", "language": "` + lang + `"}` }
	if len(tag(64)) != 64 || strings.HasSuffix(tag(64), "-") || strings.HasSuffix(tag(65), "-") {
		t.Fatalf("bad test tags %q %q", tag(64), tag(65))
	}
	if w := e.do("POST", "/data/c/d", body(tag(64))); w.Code != http.StatusAccepted {
		t.Fatalf("a tag of 64 bytes: %d %s", w.Code, w.Body)
	}
	for _, lang := range []string{tag(65), tag(18 << 10)} {
		wantProblem(t, e.do("POST", "/data/c/d", body(lang)), 400, "language", "at most 64 bytes")
		wantProblem(t, e.do("GET", "/data?language="+lang, ""), 400, "language", "at most 64 bytes")
		wantProblem(t, e.do("GET", "/data/export?language="+lang, ""), 400, "language", "at most 64 bytes")
	}
	if w := e.do("GET", "/data?language="+strings.ToUpper(tag(64)), ""); w.Code != http.StatusOK {
		t.Fatalf("a filter of 64 bytes: %d %s", w.Code, w.Body)
	}
}

// TestIngestByteCap: the cap counts every byte a pending message holds, its
// language tag too.
func TestIngestByteCap(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Dialogues.MaxBytes = 7 }})
	e.post("c", "d1", "hello", "en")
	w := e.do("POST", "/data/c/d1", `{"text": "x", "language": "en"}`)
	wantProblem(t, w, 503, "7 bytes of pending messages")
	if w.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if got := e.svc.Stats().PendingBytes; got != 7 {
		t.Fatalf("pending bytes %d, want 7 (text and tag)", got)
	}
	// A one-byte text under a long tag counts the tag.
	e2 := newEnv(t, envOptions{config: func(c *config.Config) { c.Dialogues.MaxBytes = 64 }})
	lang := "en-x-" + strings.Repeat("abcdefgh-", 6) + "abc" // 62 bytes
	wantProblem(t, e2.do("POST", "/data/c/d1", `{"text": "xyz", "language": "`+lang+`"}`), 503)
	if w := e2.do("POST", "/data/c/d1", `{"text": "xy", "language": "`+lang+`"}`); w.Code != http.StatusAccepted {
		t.Fatalf("62-byte tag and 2 bytes of text under a cap of 64: %d %s", w.Code, w.Body)
	}
}
