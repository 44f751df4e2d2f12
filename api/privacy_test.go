package api_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/data-api/data-api/internal/canary"
)

func TestErasure(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.post("alice", "a1", "stored 1", "en")
	e.post("alice", "a1", "stored 2", "en")
	e.consent("a1", true)
	e.post("alice", "a2", "pending", "en")
	e.post("bob", "b1", "bob's", "en")
	e.consent("b1", true)

	w := e.do("DELETE", "/customers/alice/data", "")
	if w.Code != 200 {
		t.Fatalf("erasure: %d %s", w.Code, w.Body)
	}
	got := decode(t, w)
	if got["customerId"] != "alice" || got["deletedMessages"] != 2.0 || got["droppedMessages"] != 1.0 {
		t.Fatalf("erasure reply %v", got)
	}
	// Idempotent.
	if got := decode(t, e.do("DELETE", "/customers/alice/data", "")); got["deletedMessages"] != 0.0 {
		t.Fatalf("second erasure: %v", got)
	}
	// The pending dialogue is gone, bob's data stays, the proof of consent stays.
	wantProblem(t, e.do("POST", "/consents/a2", "true"), 404)
	texts, _ := all(t, e, "/data")
	if strings.Join(texts, "|") != "bob's" {
		t.Fatalf("left after erasure: %q", texts)
	}
	if got := decode(t, e.do("GET", "/consents/a1", "")); got["consent"] != true || got["messages"] != 2.0 {
		t.Fatalf("ledger after erasure: %v", got)
	}
	wantProblem(t, e.do("DELETE", "/customers/al%20ice/data", ""), 400, "customerId")
	wantProblem(t, e.do("DELETE", "/customers/alice/data?force=1", ""), 400, "force")
}

// TestCanaryLeavesNoTrace posts unique texts that are then refused,
// withdrawn, erased or left to expire, and looks for them everywhere the
// service writes: log lines, metrics, responses and every file under the
// data directory. A text consented and kept is in no file either: it is
// stored encrypted.
func TestCanaryLeavesNoTrace(t *testing.T) {
	e := newEnv(t, envOptions{})
	canaries := map[string]string{
		"refused":   "CANARY-refused-8c1f0a",
		"withdrawn": "CANARY-withdrawn-31b7e2",
		"erased":    "CANARY-erased-5d27b9",
		"expired":   "CANARY-expired-e4a613",
	}
	const kept = "CANARY-kept-90d4c1"
	ids := []string{"canary-cust-1", "canary-dlg-refused", "canary-dlg-erased", "canary-dlg-expired", "canary-dlg-withdrawn"}
	e.post(ids[0], ids[1], canaries["refused"], "en")
	e.consent(ids[1], false)
	e.post(ids[0], ids[4], canaries["withdrawn"], "en")
	e.consent(ids[4], true)
	e.consent(ids[4], false)
	e.post(ids[0], ids[2], canaries["erased"], "en")
	e.consent(ids[2], true)
	e.post(ids[0], ids[3], canaries["expired"], "en")
	e.post("canary-cust-2", "canary-dlg-kept", kept, "en")
	e.consent("canary-dlg-kept", true)
	e.clock.Advance(time.Hour)
	e.svc.Sweep(t.Context())
	if w := e.do("DELETE", "/customers/"+ids[0]+"/data", ""); w.Code != 200 {
		t.Fatalf("erasure: %d", w.Code)
	}
	// Also the failure paths: a rejected message and a panic-free 4xx.
	e.do("POST", "/data/"+ids[0]+"/x", `{"text": "CANARY-rejected-77aa01", "language": "??"}`)
	canaries["rejected"] = "CANARY-rejected-77aa01"

	var responses bytes.Buffer
	for _, target := range []string{"/data", "/data/export", "/metrics", "/consents/" + ids[2], "/customers/" + ids[0] + "/data"} {
		responses.Write(e.do("GET", target, "").Body.Bytes())
	}
	if !strings.Contains(responses.String(), kept) {
		t.Fatal("the kept text is in no response: the control failed")
	}
	metrics := e.do("GET", "/metrics", "").Body.String()
	logs := e.logs.String()
	for name, canary := range canaries {
		if strings.Contains(logs, canary) {
			t.Errorf("the %s canary is in the log", name)
		}
		if strings.Contains(responses.String(), canary) {
			t.Errorf("the %s canary is in a response", name)
		}
	}
	if strings.Contains(logs, kept) {
		t.Error("the kept canary is in the log")
	}
	for _, id := range ids {
		if strings.Contains(logs, id) {
			t.Errorf("id %s is in the log", id)
		}
		if strings.Contains(metrics, id) {
			t.Errorf("id %s is in the metrics", id)
		}
	}
	canaries["kept"] = kept
	needles := make(map[string][]byte, len(canaries))
	for name, c := range canaries {
		needles[name] = []byte(c)
	}
	found, err := canary.Find(e.dir, needles)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("a canary is in a file: %s", f)
	}
}
