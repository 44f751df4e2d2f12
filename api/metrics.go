package api

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/data-api/data-api/service"
)

// Metrics is the service's Prometheus registry. No label value ever comes from
// a path, a query or a body: routes are patterns, statuses and methods are
// from fixed sets.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.HistogramVec
	series        sync.Map // requestSeries → the prometheus.Observer of requests
	writes        *prometheus.HistogramVec
	writeFailures *prometheus.CounterVec
	maxDialogues  prometheus.Gauge
	maxBytes      prometheus.Gauge
	maxAge        prometheus.Gauge
	// ready is the readiness check of the handler that serves /readyz.
	ready atomic.Pointer[func(context.Context) error]
}

// writeOps are the values of the op label of the database write metrics.
var writeOps = []string{"consent", "withdraw", "erase", "retention"}

// NewMetrics returns a registry with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "data_api_http_request_duration_seconds",
			Help:    "HTTP requests by route pattern, method and status; _count is the request count.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
		writes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "data_api_db_write_duration_seconds",
			Help:    "Database write transactions by operation (consent, withdraw, erase, retention), failed ones included.",
			Buckets: []float64{.0005, .001, .0025, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		writeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "data_api_db_write_failures_total",
			Help: "Database write transactions that failed, by operation (consent, withdraw, erase, retention).",
		}, []string{"op"}),
		maxDialogues: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "data_api_pending_dialogues_limit",
			Help: "The most pending dialogues (dialogues.max_pending).",
		}),
		maxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "data_api_pending_bytes_limit",
			Help: "The most bytes of pending text (dialogues.max_pending_bytes).",
		}),
		maxAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "data_api_retention_max_age_seconds",
			Help: "How long consented messages are kept (retention.max_age); 0 keeps them forever.",
		}),
	}
	for _, op := range writeOps {
		// Every series exists from the start, so that the first failure
		// is an increase.
		m.writes.WithLabelValues(op)
		m.writeFailures.WithLabelValues(op)
	}
	m.reg.MustRegister(m.requests, m.writes, m.writeFailures, m.maxDialogues, m.maxBytes, m.maxAge,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "data_api_ready",
			Help: "1 when /readyz would answer 200 now, 0 otherwise; checked at each scrape.",
		}, m.readyNow),
		// The scheduler's latencies tell how long runnable goroutines wait
		// for a CPU: under a saturated CPU, most of a consent's time.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveWrite records how long a database write took and, when err is not
// nil, that it failed.
func (m *Metrics) ObserveWrite(op string, d time.Duration, err error) {
	m.writes.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.writeFailures.WithLabelValues(op).Inc()
	}
}

// SetPendingLimits exposes the caps of the pending store.
func (m *Metrics) SetPendingLimits(dialogues int, bytes int64) {
	m.maxDialogues.Set(float64(dialogues))
	m.maxBytes.Set(float64(bytes))
}

// SetRetention exposes retention.max_age, which the oldest message's age
// is held to.
func (m *Metrics) SetRetention(maxAge time.Duration) { m.maxAge.Set(maxAge.Seconds()) }

// readyNow runs the readiness check of /readyz, for the data_api_ready
// gauge.
func (m *Metrics) readyNow() float64 {
	if f := m.ready.Load(); f != nil && (*f)(context.Background()) == nil {
		return 1
	}
	return 0
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Watch exposes the gauges and totals of svc, read at each scrape.
func (m *Metrics) Watch(svc interface{ Stats() service.Stats }) {
	m.reg.MustRegister(statsCollector{svc})
}

var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

func (m *Metrics) instrument(c *gin.Context) {
	start := time.Now()
	c.Next()
	method := c.Request.Method
	if !knownMethods[method] {
		method = "other"
	}
	m.observer(route(c), method, c.Writer.Status()).Observe(time.Since(start).Seconds())
}

// requestSeries names one series of the request histogram.
type requestSeries struct {
	route, method string
	status        int
}

// observer returns the request histogram's series for route, method and
// status. The series are few (routes and methods come from fixed sets), so
// each is looked up by its labels once and kept, sparing every request
// the client library's hashing and checking of label values.
func (m *Metrics) observer(route, method string, status int) prometheus.Observer {
	key := requestSeries{route, method, status}
	if o, ok := m.series.Load(key); ok {
		return o.(prometheus.Observer)
	}
	o, _ := m.series.LoadOrStore(key, m.requests.WithLabelValues(route, method, strconv.Itoa(status)))
	return o.(prometheus.Observer)
}

var (
	descPendingDialogues = prometheus.NewDesc("data_api_pending_dialogues", "Dialogues held in memory awaiting a consent decision.", nil, nil)
	descPendingMessages  = prometheus.NewDesc("data_api_pending_messages", "Messages held in memory awaiting a consent decision.", nil, nil)
	descPendingBytes     = prometheus.NewDesc("data_api_pending_bytes", "Bytes of message text held awaiting a consent decision.", nil, nil)
	descEvictions        = prometheus.NewDesc("data_api_pending_evictions_total", "Pending dialogues dropped without a decision, by cause (ttl, erasure, failover).", []string{"cause"}, nil)
	descRejections       = prometheus.NewDesc("data_api_ingest_rejections_total", "Messages refused by a cap, by cause (max_pending, max_pending_bytes, max_messages).", []string{"cause"}, nil)
	descConsents         = prometheus.NewDesc("data_api_consents_total", "Consent decisions recorded, by decision.", []string{"decision"}, nil)
	descStored           = prometheus.NewDesc("data_api_messages_stored_total", "Messages persisted by consents.", nil, nil)
	descDeleted          = prometheus.NewDesc("data_api_messages_deleted_total", "Stored messages deleted, by cause (withdrawal, erasure, retention).", []string{"cause"}, nil)
	descOldest           = prometheus.NewDesc("data_api_oldest_message_timestamp_seconds",
		"When the oldest consented message stored was created, in Unix seconds; absent when none is stored or the database did not answer.", nil, nil)
)

type statsCollector struct {
	svc interface{ Stats() service.Stats }
}

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPendingDialogues, descPendingMessages, descPendingBytes, descEvictions, descRejections, descConsents, descStored, descDeleted, descOldest} {
		ch <- d
	}
}

func (s statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := s.svc.Stats()
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descPendingDialogues, st.PendingDialogues)
	gauge(descPendingMessages, st.PendingMessages)
	gauge(descPendingBytes, st.PendingBytes)
	counter(descEvictions, st.EvictedTTL, "ttl")
	counter(descEvictions, st.EvictedErasure, "erasure")
	counter(descEvictions, st.EvictedFailover, "failover")
	counter(descRejections, st.RejectedFull, "max_pending")
	counter(descRejections, st.RejectedLimit, "max_messages")
	counter(descRejections, st.RejectedBytes, "max_pending_bytes")
	counter(descConsents, st.ConsentsTrue, "true")
	counter(descConsents, st.ConsentsFalse, "false")
	counter(descStored, st.StoredMessages)
	counter(descDeleted, st.WithdrawnMessages, "withdrawal")
	counter(descDeleted, st.ErasedMessages, "erasure")
	counter(descDeleted, st.RetentionDeletedMessages, "retention")
	if !st.OldestMessage.IsZero() {
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, float64(st.OldestMessage.UnixNano())/1e9)
	}
}
