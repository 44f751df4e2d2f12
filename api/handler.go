// Package api is Data API's HTTP layer: routing, handlers, middleware,
// problem responses and the OpenAPI document.
package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
	"github.com/data-api/data-api/service"
)

// Dialogues is what the handlers need from the service.
type Dialogues interface {
	Ingest(ctx context.Context, m model.Message) (int, error)
	Consent(ctx context.Context, dialogueID string, consent bool, keyName string) (model.Outcome, error)
	Decision(ctx context.Context, dialogueID string) (model.Decision, error)
	Messages(ctx context.Context, q model.Query) (model.Page, error)
	Export(ctx context.Context, f model.Filter, fn func(model.StoredMessage) error) error
	Dialogue(ctx context.Context, dialogueID string) (model.Dialogue, error)
	Erase(ctx context.Context, customerID, keyName string) (model.ErasureOutcome, error)
	CustomerData(ctx context.Context, customerID string, fn func(model.CustomerRecord) error) error
	Ready(ctx context.Context) error
	Stats() service.Stats
}

// Options configures the handler.
type Options struct {
	Logger *slog.Logger
	// RequestLog receives one JSON line per request, in the Logger's format
	// and at its level; nil discards them.
	RequestLog   io.Writer
	MaxBodyBytes int64
	// Keys are the accepted API keys. With none and no OIDC issuer, every
	// endpoint is open.
	Keys []Key
	// OIDC configures the tokens accepted beside the keys.
	OIDC OIDC
	// Clock tells the time for the checks of tokens; nil is time.Now.
	Clock func() time.Time
	// MetricsOpen serves /metrics without a key even when keys exist.
	MetricsOpen bool
	Metrics     *Metrics

	// AllowedOrigins are the web origins whose pages may call the API;
	// every other request a page makes is refused.
	AllowedOrigins []string
	// ExportStallTimeout is how long an export waits for its client to take
	// each write (up to 64 KiB) before it cuts the export; required.
	ExportStallTimeout time.Duration
}

// Handler serves the Data API over HTTP.
type Handler struct {
	engine   *gin.Engine
	svc      Dialogues
	o        Options
	log      *slog.Logger
	auth     *authenticator
	ids      *requestIDs
	idRoutes []idRoute // the routes whose paths hold ids
	draining atomic.Bool
}

// NewHandler returns the HTTP handler of the whole API.
func NewHandler(svc Dialogues, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RequestLog == nil {
		o.RequestLog = io.Discard
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	h := &Handler{
		svc:  svc,
		o:    o,
		log:  o.Logger,
		auth: newAuthenticator(o.Keys, o.OIDC, o.Clock, o.Logger),
		ids:  newRequestIDs(),
	}
	h.engine = h.routes()
	ready := h.ready
	o.Metrics.ready.Store(&ready)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.engine.ServeHTTP(w, r)
}

// Drain makes /readyz answer 503 from now on, so that load balancers stop
// sending traffic before the server shuts down.
func (h *Handler) Drain() { h.draining.Store(true) }
