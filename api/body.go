package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// readBody reads the whole request body, refusing one over the limit while
// reading rather than after, and one that is not valid UTF-8.
func (h *Handler) readBody(c *gin.Context) ([]byte, error) {
	r := http.MaxBytesReader(c.Writer, c.Request.Body, h.o.MaxBodyBytes)
	body, err := io.ReadAll(r)
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

// decodeObject decodes a body that must be exactly one JSON object.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return model.Errorf(model.ErrInvalid, `the body must be a JSON object such as {"text": "…", "language": "en"}`)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return model.Errorf(model.ErrInvalid, typeErr.Field+" must be a JSON "+jsonKind(typeErr.Type.Kind().String()))
		case errors.As(err, &syntaxErr) && strings.HasPrefix(syntaxErr.Error(), "invalid character") && strings.Contains(syntaxErr.Error(), "after top-level value"):
			return model.Errorf(model.ErrInvalid, "the body holds data after its JSON object")
		}
		return model.Errorf(model.ErrInvalid, "the body is not well-formed JSON")
	}
	return nil
}

func jsonKind(goKind string) string {
	if goKind == "bool" {
		return "boolean"
	}
	return goKind
}

// hasLoneSurrogate reports whether a JSON text holds a \u escape of a UTF-16
// surrogate that is not part of a pair: encoding/json would silently turn it
// into U+FFFD, and text is rejected rather than replaced.
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
