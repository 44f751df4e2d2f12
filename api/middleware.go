package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

const requestIDHeader = "X-Request-ID"

// requestIDs makes request ids unique across processes without the cost of
// a random number per request: a random prefix per process and a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (r *requestIDs) next() string {
	return r.prefix + strconv.FormatUint(r.n.Add(1), 36)
}

// requestID takes the caller's X-Request-ID when it is sane, makes one
// otherwise, and echoes it in the response.
func (h *Handler) requestID(c *gin.Context) {
	id := c.GetHeader(requestIDHeader)
	if !saneRequestID(id) {
		id = h.ids.next()
	}
	c.Set(requestIDHeader, id)
	c.Header(requestIDHeader, id)
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

// route is the pattern that matched the request, never the path itself,
// which holds identifiers.
func route(c *gin.Context) string {
	if p := c.FullPath(); p != "" {
		return p
	}
	return "unmatched"
}

// logRequests writes one line per request: no path, query, body or id of a
// customer or dialogue, only the route pattern.
func (h *Handler) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	status := c.Writer.Status()
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	h.log.LogAttrs(c.Request.Context(), level, "request",
		slog.String("method", c.Request.Method),
		slog.String("route", route(c)),
		slog.Int("status", status),
		slog.Duration("latency", time.Since(start)),
		slog.Int("bytes", c.Writer.Size()),
		slog.String("request_id", c.GetString(requestIDHeader)),
	)
}

// recoverPanic turns a panic in a handler into a 500 problem and a log line
// with the stack, never the request body.
func (h *Handler) recoverPanic(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		h.log.ErrorContext(c.Request.Context(), "handler panicked",
			"route", route(c),
			"request_id", c.GetString(requestIDHeader),
			"panic", fmt.Sprintf("%T", v),
			"stack", string(debug.Stack()))
		if !c.Writer.Written() {
			writeProblem(c, problem{
				Type:   problemTypePrefix + internal.slug,
				Title:  internal.title,
				Status: internal.status,
				Detail: defaultDetail(internal),
			})
		}
		c.Abort()
	}()
	c.Next()
}
