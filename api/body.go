package api

import (
	"bytes"
	"encoding/json/jsontext"
	json "encoding/json/v2"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// readBody reads the whole request body, refusing one over the limit while
// reading rather than after, and one that is not valid UTF-8.
func (h *Handler) readBody(c *gin.Context) ([]byte, error) {
	body, err := h.readAll(c)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, model.Errorf(errTooLarge, "the request body exceeds "+strconv.FormatInt(h.o.MaxBodyBytes, 10)+" bytes (limits.max_body_bytes)")
		}
		return nil, model.Errorf(model.ErrInvalid, "the request body could not be read")
	}
	if !utf8.Valid(body) {
		return nil, model.Errorf(model.ErrInvalid, "the request body is not valid UTF-8")
	}
	return body, nil
}

// readAll reads the body whole. A body that says its length within the
// limit, as the chatbot's do, is read into a buffer of that size at once;
// any other is read through http.MaxBytesReader, which stops at the limit.
func (h *Handler) readAll(c *gin.Context) ([]byte, error) {
	r := c.Request
	if n := r.ContentLength; n >= 0 && n <= h.o.MaxBodyBytes {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil // net/http ends the body at its length
	}
	return io.ReadAll(http.MaxBytesReader(c.Writer, r.Body, h.o.MaxBodyBytes))
}

// errAmbiguousMember refuses a body that names a member twice, or names a
// known member in another case: encoding/json would let the last duplicate
// win and match names in any case, so such a body could mean what the
// client did not intend.
var errAmbiguousMember = fmt.Errorf("%w: ambiguous member", model.ErrInvalid)

// decodeObject decodes a body that must be exactly one JSON object into v, a
// pointer to a struct. Member names match exactly (encoding/json/v2), a name
// given twice anywhere in the body is refused, and so are invalid UTF-8, \u
// escapes of unpaired surrogates and data after the object.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return model.Errorf(model.ErrInvalid, `the body must be a JSON object such as {"text": "…", "language": "en"}`)
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var semErr *json.SemanticError
	var synErr *jsontext.SyntacticError
	switch {
	case errors.As(err, &semErr) && semErr.GoType != nil && semErr.JSONPointer.Parent() == "":
		return model.Errorf(model.ErrInvalid, quoteName(semErr.JSONPointer.LastToken())+" must be a JSON "+jsonKind(semErr.GoType))
	case errors.As(err, &synErr) && errors.Is(synErr.Err, jsontext.ErrDuplicateName):
		p := synErr.JSONPointer
		where := ""
		if p.Parent() != "" {
			where = " within " + quoteName(string(p.Parent()))
		}
		return model.Errorf(errAmbiguousMember, "the body names "+quoteName(p.LastToken())+" twice"+where+"; give each member once")
	case hasLoneSurrogate(body):
		where := "the body"
		if synErr != nil && synErr.JSONPointer != "" && synErr.JSONPointer.Parent() == "" {
			where = quoteName(synErr.JSONPointer.LastToken())
		}
		return model.Errorf(model.ErrInvalid, where+` contains a \u escape of an unpaired UTF-16 surrogate, which is not valid text`)
	case firstValueIsComplete(body):
		return model.Errorf(model.ErrInvalid, "the body holds data after its JSON object")
	}
	return model.Errorf(model.ErrInvalid, "the body is not well-formed JSON")
}

// firstValueIsComplete reports whether body starts with a whole JSON value.
func firstValueIsComplete(body []byte) bool {
	_, err := jsontext.NewDecoder(bytes.NewReader(body)).ReadValue()
	return err == nil
}

// refuseCaseVariants refuses a member that no field took (unknown holds
// them) whose name is one of known in another case, such as "TEXT": a client
// that sends it means the known member, which names are not.
func refuseCaseVariants(unknown map[string]jsontext.Value, known ...string) error {
	for name := range unknown {
		for _, k := range known {
			if strings.EqualFold(name, k) {
				return model.Errorf(errAmbiguousMember, quoteName(name)+" is not a member of this body: names are case-sensitive; did you mean "+strconv.Quote(k)+"?")
			}
		}
	}
	return nil
}

// quoteName quotes a member name from the body for a problem's detail,
// leaving out a name too long to be useful there.
func quoteName(name string) string {
	if len(name) > 64 {
		return "a member"
	}
	return strconv.Quote(name)
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Bool {
		return "boolean"
	}
	return t.Kind().String()
}

// hasLoneSurrogate reports whether a JSON text holds a \u escape of a UTF-16
// surrogate that is not part of a pair: encoding/json (v1) would silently
// turn it into U+FFFD; v2 refuses it, and this tells the client why.
func hasLoneSurrogate(body []byte) bool {
	for i := 0; i+6 <= len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if body[i+1] != 'u' {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		r := hex4(body[i+2 : i+6])
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 > len(body) || body[i+6] != '\\' || body[i+7] != 'u' {
				return true
			}
			if lo := hex4(body[i+8 : i+12]); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return -1
		}
	}
	return r
}
