package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/model"
)

// loadOpenAPI parses and validates api/openapi.json.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadOpenAPI(t)
	if got, want := doc.OpenAPI, "3.0.3"; got != want {
		t.Errorf("openapi: got %q, want %q", got, want)
	}

	e := newEnv(t, envOptions{})
	w := e.do("GET", "/openapi.json", "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /openapi.json: got status %d, want 200", w.Code)
	}
	if got, want := w.Header().Get("Content-Type"), "application/json"; got != want {
		t.Errorf("GET /openapi.json Content-Type: got %q, want %q", got, want)
	}
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Body.Bytes(), raw) {
		t.Errorf("GET /openapi.json: got %d bytes that differ from api/openapi.json (%d bytes)", w.Body.Len(), len(raw))
	}
}

// TestOpenAPIOperationsAreComplete checks what every operation of the document
// must say, so that a new endpoint cannot be documented by half.
func TestOpenAPIOperationsAreComplete(t *testing.T) {
	doc := loadOpenAPI(t)
	open := map[string]bool{"/healthz": true, "/readyz": true, "/openapi.json": true}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" || op.Description == "" {
				t.Errorf("%s: lacks an operationId or a description", name)
			}
			if op.Responses.Status(http.StatusInternalServerError) == nil {
				t.Errorf("%s: does not document 500", name)
			}
			switch {
			case open[path]:
				if op.Security == nil || len(*op.Security) != 0 {
					t.Errorf("%s: got security %v, want [] (no authentication)", name, op.Security)
				}
			case op.Responses.Status(http.StatusUnauthorized) == nil:
				t.Errorf("%s: does not document 401", name)
			}
			if r := op.Responses.Value("4XX"); r == nil || r.Ref != notServedRef {
				t.Errorf("%s: does not answer 4XX with %s (no-such-route, method-not-allowed)", name, notServedRef)
			}
			for code, r := range op.Responses.Map() {
				if r.Value.Headers["X-Request-ID"] == nil {
					t.Errorf("%s %s: lacks the X-Request-ID header", name, code)
				}
				checkResponseContent(t, doc, name+" "+code, code, r.Value)
			}
		}
	}
}

// notServedRef is the response every operation gives for a path or a method
// the server does not serve.
const notServedRef = "#/components/responses/NotServed"

// checkResponseContent checks what a response's media types must say: a
// problem response names each problem type it may carry in an example of
// that type, and an NDJSON body names the schema of its lines.
func checkResponseContent(t *testing.T, doc *openapi3.T, name, code string, r *openapi3.Response) {
	t.Helper()
	for mediaType, media := range r.Content {
		switch mediaType {
		case "application/problem+json":
			if len(media.Examples) == 0 {
				t.Errorf("%s: names no problem type in its examples", name)
			}
			for key, ex := range media.Examples {
				p, err := asProblem(ex.Value.Value)
				switch {
				case err != nil:
					t.Errorf("%s example %s: %v", name, key, err)
				case p.Type != problemPrefix+key:
					t.Errorf("%s example %s: got type %q, want the example named after its type", name, key, p.Type)
				case !statusMatches(code, p.Status):
					t.Errorf("%s example %s: got status %d, want %s", name, key, p.Status, code)
				}
			}
		case "application/x-ndjson":
			if _, err := itemSchema(doc, media); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// statusMatches reports whether status falls under a response code such as
// "404" or "4XX".
func statusMatches(code string, status int) bool {
	s := strconv.Itoa(status)
	return code == s || (len(code) == 3 && strings.HasSuffix(code, "XX") && code[0] == s[0])
}

const problemPrefix = "urn:data-api:problem:"

// problemFields are the members of a problem that identify its kind.
type problemFields struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
}

func asProblem(v any) (problemFields, error) {
	var p problemFields
	raw, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(raw, &p)
	}
	return p, err
}

// checkProblem checks that a problem reply is one of those the response's
// examples name, with the same title and the reply's own status.
func checkProblem(t *testing.T, name string, r *openapi3.Response, w *httptest.ResponseRecorder) {
	t.Helper()
	var got problemFields
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Errorf("%s: problem %s: %v", name, w.Body, err)
		return
	}
	media := r.Content.Get("application/problem+json")
	if media == nil {
		t.Errorf("%s: got a problem, the response documents none", name)
		return
	}
	var named []string
	for _, ex := range media.Examples {
		want, err := asProblem(ex.Value.Value)
		if err != nil {
			continue // reported by TestOpenAPIOperationsAreComplete
		}
		if want.Type == got.Type {
			if got != want || got.Status != w.Code {
				t.Errorf("%s: got problem %+v with status %d, want %+v", name, got, w.Code, want)
			}
			return
		}
		named = append(named, want.Type)
	}
	t.Errorf("%s: got problem type %q, want one the response names: %v", name, got.Type, named)
}

// itemSchema is the schema of each line of an NDJSON media type: in OpenAPI
// 3.0 the media type's schema describes the whole body (a string of lines,
// which tools that know no NDJSON check as such), and x-itemSchema, as
// OpenAPI 3.2's itemSchema, references the schema of one line.
func itemSchema(doc *openapi3.T, media *openapi3.MediaType) (*openapi3.Schema, error) {
	ext, _ := media.Extensions["x-itemSchema"].(map[string]any)
	ref, _ := ext["$ref"].(string)
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	if !ok || doc.Components.Schemas[name] == nil {
		return nil, fmt.Errorf("x-itemSchema %v does not reference a schema of components.schemas", media.Extensions["x-itemSchema"])
	}
	return doc.Components.Schemas[name].Value, nil
}

// checkNDJSON checks every line of a newline-delimited JSON body against the
// schema of one line.
func checkNDJSON(body []byte, item *openapi3.Schema) error {
	if len(body) == 0 {
		return nil
	}
	if body[len(body)-1] != '\n' {
		return errors.New("the stream does not end with a newline")
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("line %d: %w", i+1, err)
		}
		if err := item.VisitJSON(v, openapi3.VisitAsResponse()); err != nil {
			return fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	return nil
}

// routeKey is one route: a method and a path template in OpenAPI syntax.
type routeKey struct{ method, path string }

func (k routeKey) String() string { return k.method + " " + k.path }

var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// pathAliases are paths the router serves as a second name of a documented
// path, with the same methods and operations. The document describes each
// operation once, under the documented path, and its description names the
// alias.
var pathAliases = map[string]string{"/data/": "/data"}

// canonicalPath is the documented path of a request path.
func canonicalPath(path string) string {
	if p, ok := pathAliases[path]; ok {
		return p
	}
	return path
}

func TestOpenAPIRoutesMatchRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t, envOptions{})

	documented := map[routeKey]bool{}
	for path, item := range doc.Paths.Map() {
		if _, ok := pathAliases[path]; ok {
			t.Errorf("%s: documented as a path of its own, want it named in the description of %s", path, pathAliases[path])
		}
		for method := range item.Operations() {
			documented[routeKey{method, path}] = true
		}
	}
	registered := map[routeKey]bool{}
	for _, r := range api.Routes(e.handler) {
		registered[routeKey{r.Method, ginParam.ReplaceAllString(r.Path, "{$1}")}] = true
	}
	// HEAD mirrors GET (TestHeadWhereverGet): the document describes GET, and
	// its description says so once for all; every GET has its HEAD.
	for k := range registered {
		if k.method == "GET" && !registered[routeKey{"HEAD", k.path}] {
			t.Errorf("%v: the router serves it, but not HEAD", k)
		}
		if k.method == "HEAD" && registered[routeKey{"GET", k.path}] && !documented[k] {
			continue
		}
		if canonical := canonicalPath(k.path); canonical != k.path {
			op := doc.Paths.Find(canonical).GetOperation(k.method)
			switch {
			case op == nil:
				t.Errorf("%v: the router serves it as an alias of %s %s, which the OpenAPI document does not describe", k, k.method, canonical)
			case !strings.Contains(op.Description, "`"+k.method+" "+k.path+"`"):
				t.Errorf("%v: the description of %s does not name the alias `%v`", k, op.OperationID, k)
			}
			continue
		}
		if !documented[k] {
			t.Errorf("%v: the router serves it, the OpenAPI document does not describe it", k)
		}
	}
	for k := range documented {
		if !registered[k] {
			t.Errorf("%v: the OpenAPI document describes it, the router does not serve it", k)
		}
		for alias, canonical := range pathAliases {
			if canonical == k.path && !registered[routeKey{k.method, alias}] {
				t.Errorf("%v: the router does not serve its alias %s", k, alias)
			}
		}
	}

	// The router must also answer each documented route and each alias, and
	// only with the documented methods: a path template's parameters take
	// sample values.
	paths := maps.Clone(doc.Paths.Map())
	for alias, canonical := range pathAliases {
		paths[alias] = doc.Paths.Find(canonical)
	}
	template := regexp.MustCompile(`\{[^}]+\}`)
	for path, item := range paths {
		target := template.ReplaceAllString(path, "probe-1")
		for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
			w := e.do(method, target, "")
			typ := problemType(w)
			if item.GetOperation(method) != nil || method == "HEAD" && item.Get != nil {
				if typ == "urn:data-api:problem:no-such-route" || typ == "urn:data-api:problem:method-not-allowed" {
					t.Errorf("%s %s: got %d %s, want the documented operation", method, target, w.Code, typ)
				}
				continue
			}
			if w.Code != http.StatusMethodNotAllowed || typ != "urn:data-api:problem:method-not-allowed" {
				t.Errorf("%s %s (undocumented method): got %d %q, want 405 method-not-allowed", method, target, w.Code, typ)
			}
		}
	}
}

// problemType is the type of w's problem body, or "" when it is none.
func problemType(w *httptest.ResponseRecorder) string {
	if w.Header().Get("Content-Type") != "application/problem+json" {
		return ""
	}
	var p struct{ Type string }
	_ = json.Unmarshal(w.Body.Bytes(), &p)
	return p.Type
}

// panicOnDialogue makes the service panic for one dialogue, for a 500.
type panicOnDialogue struct {
	api.Dialogues
	id string
}

func (p panicOnDialogue) Decision(ctx context.Context, id string) (model.Decision, error) {
	if id == p.id {
		panic("decision failed")
	}
	return p.Dialogues.Decision(ctx, id)
}

// flowStep is one request of the scripted flow and what it must get.
type flowStep struct {
	name         string
	before       func(*testEnv) // runs before the request, when set
	method       string
	target       string // "{cursor}" stands for the last nextCursor seen
	body         string
	key          string // the bearer token: "" sends the all-roles key's, "-" none
	status       int
	badRequest   bool // the document itself rejects the request
	undocumented bool // no operation matches: the reply must be a documented problem

	headers []string // more request headers: name, value pairs
}

func TestOpenAPIResponsesMatchSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	// The document describes an NDJSON body as a string of lines, each line
	// checked below against its x-itemSchema.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/csv", csvDecoder)
	t.Cleanup(func() {
		openapi3filter.UnregisterBodyDecoder("application/x-ndjson")
		openapi3filter.UnregisterBodyDecoder("text/csv")
	})
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the document does not list fails
		AuthenticationFunc:    bearerOnly,
	}

	e := newEnv(t, envOptions{
		config: func(c *config.Config) {
			c.Dialogues.MaxMessages, c.Dialogues.MaxPending = 3, 3
			c.Limits.MaxTextBytes, c.Limits.MaxBodyBytes = 512, 1024
			c.Auth.Keys = []config.Key{key("all", "ingest", "analyst", "admin"), key("chatbot", "ingest")}
		},
		wrap: func(d api.Dialogues) api.Dialogues { return panicOnDialogue{d, "dlg-panic"} },
	})
	all, chatbot := secret("all"), secret("chatbot")
	msg := func(text, lang string) string {
		b, _ := json.Marshal(map[string]string{"text": text, "language": lang})
		return string(b)
	}

	steps := []flowStep{
		{name: "ingest", method: "POST", target: "/data/cust-1/dlg-1", body: msg("hello", "EN"), status: 202},
		{name: "ingest second", method: "POST", target: "/data/cust-1/dlg-1", body: msg("how are you", "en"), status: 202},
		{name: "ingest other dialogue", method: "POST", target: "/data/cust-1/dlg-2", body: msg("hallo", "de"), status: 202},
		{name: "ingest other dialogue 2", method: "POST", target: "/data/cust-1/dlg-2", body: msg("wie geht's", "DE"), status: 202},
		{name: "ingest other dialogue 3", method: "POST", target: "/data/cust-1/dlg-2", body: msg("hi", "en-us"), status: 202},
		{name: "ingest dialogue full", method: "POST", target: "/data/cust-1/dlg-2", body: msg("one more", "en"), status: 422},
		{name: "ingest other customer", method: "POST", target: "/data/cust-2/dlg-1", body: msg("mine", "en"), status: 409},
		{name: "ingest bad language", method: "POST", target: "/data/cust-1/dlg-3", body: msg("hello", "not a tag!"), status: 400},
		{name: "ingest blank text", method: "POST", target: "/data/cust-1/dlg-3", body: msg("   ", "en"), status: 400},
		{name: "ingest text not a string", method: "POST", target: "/data/cust-1/dlg-3", body: `{"text": 5, "language": "en"}`, status: 400, badRequest: true},
		{name: "ingest not JSON", method: "POST", target: "/data/cust-1/dlg-3", body: `hello`, status: 400, badRequest: true},
		{name: "ingest bad id", method: "POST", target: "/data/cust%201/dlg-3", body: msg("hello", "en"), status: 400, badRequest: true},
		{name: "ingest too large", method: "POST", target: "/data/cust-1/dlg-3", body: msg(strings.Repeat("a", 2000), "en"), status: 413},

		{name: "consent", method: "POST", target: "/consents/dlg-1", body: `true`, status: 200},
		{name: "consent retried", method: "POST", target: "/consents/dlg-1", body: `true`, status: 200},
		{name: "consent object", method: "POST", target: "/consents/dlg-2", body: `{"consent": true}`, status: 200},
		{name: "consent unknown dialogue", method: "POST", target: "/consents/dlg-404", body: `true`, status: 404},
		{name: "refusal unknown dialogue", method: "POST", target: "/consents/dlg-x", body: `false`, status: 200},
		{name: "consent not a boolean", method: "POST", target: "/consents/dlg-1", body: `"true"`, status: 400, badRequest: true},
		{name: "consent null", method: "POST", target: "/consents/dlg-1", body: `null`, status: 400, badRequest: true},
		{name: "consent empty object", method: "POST", target: "/consents/dlg-1", body: `{}`, status: 400, badRequest: true},
		{name: "consent yes", method: "POST", target: "/consents/dlg-1", body: `yes`, status: 400, badRequest: true},

		{name: "first page", method: "GET", target: "/data?limit=2", status: 200},
		{name: "second page", method: "GET", target: "/data?limit=2&cursor={cursor}", status: 200},
		{name: "last page", method: "GET", target: "/data/?limit=2&cursor={cursor}", status: 200},
		{name: "filtered", method: "GET", target: "/data?customerId=cust-1&language=EN-us", status: 200},
		{name: "no match", method: "GET", target: "/data?customerId=nobody", status: 200},
		{name: "limit out of range", method: "GET", target: "/data?limit=0", status: 400, badRequest: true},
		{name: "unknown parameter", method: "GET", target: "/data?customer_id=cust-1", status: 400},
		{name: "forged cursor", method: "GET", target: "/data?cursor=AAAA", status: 400},
		{name: "bad language filter", method: "GET", target: "/data?language=not+a+tag", status: 400},
		{name: "export", method: "GET", target: "/data/export?language=en", status: 200},
		{name: "export nothing", method: "GET", target: "/data/export?customerId=nobody", status: 200},
		{name: "export with limit", method: "GET", target: "/data/export?limit=5", status: 400},
		{name: "filtered by dialogue and time", method: "GET", target: "/data?dialogId=dlg-2&since=2026-01-01T00:00:00Z&until=2030-01-01T00:00:00%2B01:00&language=de", status: 200},
		{name: "bad time", method: "GET", target: "/data?since=yesterday", status: 400, badRequest: true},
		{name: "empty range", method: "GET", target: "/data?since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", status: 400},
		{name: "bad dialogue filter", method: "GET", target: "/data?dialogId=a%20b", status: 400, badRequest: true},
		{name: "export as CSV", method: "GET", target: "/data/export?customerId=cust-1&since=2026-01-01T00:00:00Z", headers: []string{"Accept", "text/csv"}, status: 200},
		{name: "export as CSV, nothing", method: "GET", target: "/data/export?dialogId=dlg-none", headers: []string{"Accept", "text/csv"}, status: 200},
		{name: "export, Accept unknown", method: "GET", target: "/data/export?dialogId=dlg-1", headers: []string{"Accept", "application/json"}, status: 200},
		{name: "dialogue", method: "GET", target: "/dialogues/dlg-2", status: 200},
		{name: "dialogue never consented", method: "GET", target: "/dialogues/dlg-none", status: 404},
		{name: "dialogue with query", method: "GET", target: "/dialogues/dlg-2?order=desc", status: 400},
		{name: "dialogue bad id", method: "GET", target: "/dialogues/dlg%201", status: 400, badRequest: true},
		{name: "dialogue too large", before: storeDialogue("dlg-big", 1001), method: "GET", target: "/dialogues/dlg-big", status: 422},
		{name: "dialogue without analyst", method: "GET", target: "/dialogues/dlg-2", key: chatbot, status: 403},

		{name: "decision", method: "GET", target: "/consents/dlg-1", status: 200},
		{name: "decision of a refusal never seen", method: "GET", target: "/consents/dlg-x", status: 200},
		{name: "no decision", method: "GET", target: "/consents/dlg-none", status: 404},
		{name: "decision with query", method: "GET", target: "/consents/dlg-1?verbose=1", status: 400},
		{name: "decision panics", method: "GET", target: "/consents/dlg-panic", status: 500},
		{name: "customer data", method: "GET", target: "/customers/cust-1/data", status: 200},
		{name: "customer data with query", method: "GET", target: "/customers/cust-1/data?since=0", status: 400},
		{name: "customer data bad id", method: "GET", target: "/customers/cust%201/data", status: 400, badRequest: true},
		{name: "customer data of nobody", method: "GET", target: "/customers/nobody/data", status: 200},
		{name: "withdrawal", method: "POST", target: "/consents/dlg-1", body: `false`, status: 200},

		{name: "pending 1", method: "POST", target: "/data/cust-2/dlg-p1", body: msg("a", "en"), status: 202},
		{name: "pending 2", method: "POST", target: "/data/cust-2/dlg-p2", body: msg("b", "en"), status: 202},
		{name: "pending 3", method: "POST", target: "/data/cust-2/dlg-p3", body: msg("c", "en"), status: 202},
		{name: "pending store full", method: "POST", target: "/data/cust-2/dlg-p4", body: msg("d", "en"), status: 503},
		{name: "erase pending", method: "DELETE", target: "/customers/cust-2/data", status: 200},
		{name: "erase stored", method: "DELETE", target: "/customers/cust-1/data", status: 200},
		{name: "erase bad id", method: "DELETE", target: "/customers/cust%201/data", status: 400, badRequest: true},
		{name: "customer data after erasure", method: "GET", target: "/customers/cust-1/data", status: 200},

		{name: "healthz", method: "GET", target: "/healthz", status: 200},
		{name: "readyz", method: "GET", target: "/readyz", status: 200},
		{name: "metrics", method: "GET", target: "/metrics", status: 200},
		{name: "openapi", method: "GET", target: "/openapi.json", status: 200},

		{name: "no key", method: "GET", target: "/data", key: "-", status: 401, badRequest: true},
		{name: "unknown key", method: "GET", target: "/data", key: "not-a-known-key", status: 401},
		{name: "key lacks analyst", method: "GET", target: "/data", key: chatbot, status: 403},
		{name: "key lacks admin", method: "DELETE", target: "/customers/cust-1/data", key: chatbot, status: 403},
		{name: "key lacks admin to read", method: "GET", target: "/customers/cust-1/data", key: chatbot, status: 403},
		{name: "metrics without key", method: "GET", target: "/metrics", key: "-", status: 401},
		{name: "healthz without key", method: "GET", target: "/healthz", key: "-", status: 200},
		{name: "readyz without key", method: "GET", target: "/readyz", key: "-", status: 200},
		{name: "openapi without key", method: "GET", target: "/openapi.json", key: "-", status: 200},

		{name: "ingest ambiguous body", method: "POST", target: "/data/cust-1/dlg-3", body: `{"text": "a", "Text": "b", "language": "en"}`, status: 400},
		{name: "ingest language too long", method: "POST", target: "/data/cust-1/dlg-3", body: msg("hello", "en-x-"+strings.Repeat("abcdefgh-", 6)+"abcdef"), status: 400, badRequest: true},
		{name: "consent ambiguous body", method: "POST", target: "/consents/dlg-1", body: `{"consent": true, "consent": false}`, status: 400, badRequest: true},
		{name: "decision of an id with an encoded slash", method: "GET", target: "/consents/dlg%2F1", status: 400, badRequest: true},
		{name: "healthz from a web page", method: "GET", target: "/healthz", key: "-", headers: []string{"Origin", "https://evil.example"}, status: 403},
		{name: "consent from another site", method: "POST", target: "/consents/dlg-x", body: `false`, headers: []string{"Sec-Fetch-Site", "cross-site"}, status: 403},

		{name: "no such route", method: "GET", target: "/nope/cust-1", status: 404, undocumented: true},
		{name: "method not allowed", method: "PUT", target: "/data", status: 405, undocumented: true},
		{name: "readyz draining", before: func(e *testEnv) { e.handler.Drain() }, method: "GET", target: "/readyz", status: 503},
	}

	var cursor string
	for _, s := range steps {
		if s.before != nil {
			s.before(e)
		}
		target := strings.ReplaceAll(s.target, "{cursor}", cursor)
		k := all
		switch s.key {
		case "":
		case "-":
			k = ""
		default:
			k = s.key
		}
		newRequest := func() *http.Request {
			r := httptest.NewRequest(s.method, target, strings.NewReader(s.body))
			if s.body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			if k != "" {
				r.Header.Set("Authorization", "Bearer "+k)
			}
			for i := 0; i+1 < len(s.headers); i += 2 {
				r.Header.Set(s.headers[i], s.headers[i+1])
			}
			return r
		}
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, newRequest())
		name := fmt.Sprintf("%s (%s %s)", s.name, s.method, target)
		if w.Code != s.status {
			t.Errorf("%s: got status %d, want %d; body %s", name, w.Code, s.status, w.Body)
			continue
		}
		if w.Code == http.StatusOK && strings.HasPrefix(target, "/data") && !strings.HasPrefix(target, "/data/export") {
			var p struct{ NextCursor *string }
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			cursor = ""
			if p.NextCursor != nil {
				cursor = *p.NextCursor
			}
		}

		if ct := w.Header().Get("Content-Type"); strings.Contains(ct, "json") && !strings.Contains(ct, "ndjson") && !bytes.HasSuffix(w.Body.Bytes(), []byte("}\n")) {
			t.Errorf("%s: the %s reply does not end with a newline: %q", name, ct, w.Body)
		}

		req := newRequest()
		req.URL.Path = canonicalPath(req.URL.Path) // the document names each operation once
		route, params, err := router.FindRoute(req)
		if s.undocumented {
			if !errors.Is(err, routers.ErrPathNotFound) && !errors.Is(err, routers.ErrMethodNotAllowed) {
				t.Errorf("%s: got route %v (%v), want none in the document", name, route, err)
			}
			checkUndocumented(t, doc, name, w)
			continue
		}
		if err != nil {
			t.Errorf("%s: no operation of the document matches: %v", name, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		err = openapi3filter.ValidateRequest(context.Background(), in)
		switch {
		case s.badRequest && err == nil:
			t.Errorf("%s %s: the document accepts the request, want it rejected as the server does", route.Operation.OperationID, name)
		case !s.badRequest && err != nil:
			t.Errorf("%s %s: the document rejects the request: %v", route.Operation.OperationID, name, err)
		}
		// The server answers a documented operation only with the statuses
		// the operation lists itself: its 4XX is for servers that do not
		// serve it.
		documented := route.Operation.Responses.Value(strconv.Itoa(w.Code))
		if documented == nil {
			t.Errorf("%s %s: status %d is not among the operation's responses", route.Operation.OperationID, name, w.Code)
			continue
		}
		resp := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in,
			Status:                 w.Code,
			Header:                 w.Header(),
			Body:                   io.NopCloser(bytes.NewReader(w.Body.Bytes())),
			Options:                opts,
		}
		if err := openapi3filter.ValidateResponse(context.Background(), resp); err != nil {
			t.Errorf("%s %s: response %d %s does not match the document: %v", route.Operation.OperationID, name, w.Code, w.Body, err)
		}
		switch ct := w.Header().Get("Content-Type"); ct {
		case "application/problem+json":
			checkProblem(t, route.Operation.OperationID+" "+name, documented.Value, w)
		case "application/x-ndjson":
			item, err := itemSchema(doc, documented.Value.Content.Get(ct))
			if err == nil {
				err = checkNDJSON(w.Body.Bytes(), item)
			}
			if err != nil {
				t.Errorf("%s %s: NDJSON body %s does not match the document: %v", route.Operation.OperationID, name, w.Body, err)
			}
		}
	}
	if cursor != "" {
		t.Errorf("the last page has nextCursor %q, want null", cursor)
	}
}

// storeDialogue stores n messages of one dialogue straight into the
// database, more than any consent stores in the flow.
func storeDialogue(id string, n int) func(*testEnv) {
	return func(e *testEnv) {
		msgs := make([]model.Message, n)
		for i := range msgs {
			msgs[i] = model.Message{CustomerID: "cust-9", DialogueID: id, Language: "en", Text: "x", CreatedAt: time.Unix(0, int64(i+1))}
		}
		d := model.Decision{DialogueID: id, CustomerID: "cust-9", Consent: true, DecidedAt: time.Unix(0, 1)}
		if err := e.db.SaveConsents(context.Background(), []model.Consent{{Decision: d, Messages: msgs}}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// csvDecoder checks that a body is RFC 4180 CSV with the export's header
// row and returns it whole, as the schema of a text/csv body is a string.
func csvDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(records) == 0 || strings.Join(records[0], ",") != "customerId,dialogId,language,text,createdAt" {
		return nil, fmt.Errorf("header row %q", records)
	}
	return string(data), nil
}

// checkUndocumented checks a reply to a request no operation matches against
// the response every operation gives as its 4XX, NotServed.
func checkUndocumented(t *testing.T, doc *openapi3.T, name string, w *httptest.ResponseRecorder) {
	t.Helper()
	ref := doc.Components.Responses[strings.TrimPrefix(notServedRef, "#/components/responses/")]
	if ref == nil {
		t.Errorf("%s: the document has no %s", name, notServedRef)
		return
	}
	if !statusMatches("4XX", w.Code) {
		t.Errorf("%s: got status %d, want a 4XX", name, w.Code)
	}
	if w.Code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
		t.Errorf("%s: a 405 without an Allow header", name)
	}
	media := ref.Value.Content.Get(w.Header().Get("Content-Type"))
	if media == nil {
		t.Errorf("%s: got Content-Type %q, want one of %v", name, w.Header().Get("Content-Type"), ref.Value.Content)
		return
	}
	var body any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Errorf("%s: body %s: %v", name, w.Body, err)
		return
	}
	if err := media.Schema.Value.VisitJSON(body, openapi3.VisitAsResponse()); err != nil {
		t.Errorf("%s: response %d %s does not match the document: %v", name, w.Code, w.Body, err)
	}
	for h := range ref.Value.Headers {
		if ref.Value.Headers[h].Value.Required && w.Header().Get(h) == "" {
			t.Errorf("%s: the response lacks the %s header", name, h)
		}
	}
	checkProblem(t, name, ref.Value, w)
}

// bearerOnly accepts any request with a bearer token: which keys exist and
// what roles they hold is for the server to decide.
func bearerOnly(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme == nil || in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s is not HTTP bearer", in.SecuritySchemeName)
	}
	scheme, token, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return errors.New("no bearer token")
	}
	return nil
}
