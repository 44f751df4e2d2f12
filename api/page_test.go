package api

import (
	"bytes"
	jsonv2 "encoding/json/v2"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// FuzzMessageJSON: a message written by hand is the bytes encoding/json
// makes of it, whatever its text holds.
func FuzzMessageJSON(f *testing.F) {
	for _, text := range []string{
		"plain", "", `"quoted" and \backslashed\`, "<script>&amp;</script>", "tab\tnew\nline\r\x00\x1f\x7f",
		"\u2028\u2029", "Grüße, 日本語, 🙂", "\b\f", "\xff"[:0],
	} {
		f.Add("customer-1", "dialogue/1", "pt-BR", text, int64(1_795_728_992_942_456_789))
	}
	f.Add(`c"1`, `d\1`, "en", "x", int64(0))
	f.Fuzz(func(t *testing.T, customer, dialogue, language, text string, ns int64) {
		for _, s := range []string{customer, dialogue, language, text} {
			if !utf8.ValidString(s) {
				t.Skip("stored strings are valid UTF-8")
			}
		}
		m := model.StoredMessage{Message: model.Message{CustomerID: customer, DialogueID: dialogue, Language: language, Text: text,
			CreatedAt: time.Unix(0, ns).In(time.FixedZone("CET", 3600))}}
		want, err := jsonv2.Marshal(toJSON(m))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMessage(nil, m); !bytes.Equal(got, want) {
			t.Fatalf("appendMessage:\n got %s\nwant %s", got, want)
		}
	})
}

// TestWritePage: a page written by hand is the reply encoding/json makes
// of it, with and without a next cursor, and a buffer reused from the pool
// carries nothing of the page before.
func TestWritePage(t *testing.T) {
	msgs := []model.StoredMessage{
		{Message: model.Message{CustomerID: "c1", DialogueID: "d1", Language: "en", Text: "a longer first text <&>", CreatedAt: time.Unix(1, 2)}},
		{Message: model.Message{CustomerID: "c2", DialogueID: "d2", Language: "de", Text: "zwei", CreatedAt: time.Unix(3, 4)}},
	}
	for _, tc := range []struct {
		msgs []model.StoredMessage
		next string
	}{
		{msgs, "cursor-1"}, {msgs[1:], ""}, {nil, ""},
	} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		writePage(c, tc.msgs, tc.next)
		reply := struct {
			Data       []messageJSON `json:"data"`
			NextCursor *string       `json:"nextCursor"`
		}{Data: []messageJSON{}}
		for _, m := range tc.msgs {
			reply.Data = append(reply.Data, toJSON(m))
		}
		if tc.next != "" {
			reply.NextCursor = &tc.next
		}
		want, err := jsonv2.Marshal(reply)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Body.Bytes(); !bytes.Equal(got, append(want, '\n')) {
			t.Errorf("writePage:\n got %s\nwant %s", got, want)
		}
		if got := w.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", got)
		}
	}
}
