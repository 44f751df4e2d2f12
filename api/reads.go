package api

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/data-api/data-api/model"
)

// timeFormat is RFC 3339 in UTC with all nine digits of the nanoseconds.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

type messageJSON struct {
	CustomerID string `json:"customerId"`
	DialogueID string `json:"dialogId"`
	Language   string `json:"language"`
	Text       string `json:"text"`
	CreatedAt  string `json:"createdAt"`
}

func toJSON(m model.StoredMessage) messageJSON {
	return messageJSON{m.CustomerID, m.DialogueID, m.Language, m.Text, m.CreatedAt.UTC().Format(timeFormat)}
}

// appendMessage appends m as GET /data and the NDJSON export have it: the
// bytes encoding/json/v2 makes of toJSON(m), written by hand, as encoding
// the page with encoding/json and formatting its times took a fifth of the
// service's CPU under analysts' load. Stored texts and ids are valid UTF-8
// (model.ValidateText, the ids' rules); AppendQuote would replace an
// invalid byte as encoding/json does, so its error is not needed.
func appendMessage(b []byte, m model.StoredMessage) []byte {
	b = append(b, `{"customerId":`...)
	b, _ = jsontext.AppendQuote(b, m.CustomerID)
	b = append(b, `,"dialogId":`...)
	b, _ = jsontext.AppendQuote(b, m.DialogueID)
	b = append(b, `,"language":`...)
	b, _ = jsontext.AppendQuote(b, m.Language)
	b = append(b, `,"text":`...)
	b, _ = jsontext.AppendQuote(b, m.Text)
	b = append(b, `,"createdAt":"`...)
	b = appendTimeFormat(b, m.CreatedAt)
	return append(b, `"}`...)
}

// appendTimeFormat appends t as t.UTC().AppendFormat(b, timeFormat) does
// (FuzzMessageJSON checks it), in half the time (47 against 100 ns): the
// general formatter parses its layout again for every row, 3% of the
// server's CPU under eight analysts.
func appendTimeFormat(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeFormat)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond(), 9)
	return append(b, 'Z')
}

// appendDigits appends v, which is not negative, in exactly n decimal
// digits.
func appendDigits(b []byte, v, n int) []byte {
	b = append(b, "000000000"[:n]...)
	for i := len(b) - 1; n > 0; i, n = i-1, n-1 {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// pageBufs holds the buffers pages are encoded into; one grown past
// maxPooledPage (a page of long texts) is left to the collector.
var pageBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledPage = 1 << 20

// writePage answers 200 with the page of msgs and the cursor next to the
// one after it ("" for none): {"data": [...], "nextCursor": ...}.
func writePage(c *gin.Context, msgs []model.StoredMessage, next string) {
	bp := pageBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"data":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMessage(b, m)
	}
	b = append(b, `],"nextCursor":`...)
	if next == "" {
		b = append(b, "null"...)
	} else {
		b, _ = jsontext.AppendQuote(b, next)
	}
	b = append(b, "}\n"...)
	// A page is larger than net/http buffers before it chunks a reply:
	// with its length said, it goes out without chunked framing, in one
	// write system call fewer (2 against 3 a page, measured).
	c.Writer.Header()["Content-Length"] = []string{strconv.Itoa(len(b))}
	writeBytes(c, http.StatusOK, jsonContentType, b)
	if cap(b) <= maxPooledPage {
		*bp = b
		pageBufs.Put(bp)
	}
}

func (h *Handler) query(c *gin.Context) error {
	q, err := parseQuery(c, true)
	if err != nil {
		return err
	}
	page, err := h.svc.Messages(c.Request.Context(), q)
	if err != nil {
		return err
	}
	if page.Next != "" {
		c.Header("Link", "<"+nextURL(c, page.Next)+`>; rel="next"`)
	}
	writePage(c, page.Messages, page.Next)
	return nil
}

// nextURL is the request's own URL with cursor replaced by next.
func nextURL(c *gin.Context, next string) string {
	v := c.Request.URL.Query()
	v.Set("cursor", next)
	return c.Request.URL.Path + "?" + v.Encode()
}

// exportFlushRows is how many rows the export buffers before flushing.
const exportFlushRows = 256

// exportBuffer is the size of an export's buffer: each write to the
// connection is at most this large, and must complete within the stall
// timeout.
const exportBuffer = 64 << 10

func (h *Handler) export(c *gin.Context) error {
	q, err := parseQuery(c, false)
	if err != nil {
		return err
	}
	format := ndjsonFormat
	if prefersCSV(c.Request.Header.Values("Accept")) {
		format = csvFormat
	}
	if c.Request.Method == http.MethodHead {
		return h.exportHead(c, q.Filter, format)
	}
	st := h.newStream(c, map[string]string{"Content-Type": format.contentType, "Vary": "Accept"}, format.start)
	err = h.svc.Export(c.Request.Context(), q.Filter, func(m model.StoredMessage) error {
		if err := st.next().write(m); err != nil {
			return err
		}
		return st.wrote()
	})
	return st.end(err, "export ended early", "rows")
}

// stream is a streamed reply: an export, or the right of access. Its
// status line waits for the first row, so that a refusal (every export slot
// taken, a database that does not answer) is still a problem response. Its
// rows are flushed every exportFlushRows, each write bound by the stall
// timeout. Should it fail once the status line is sent, the connection is
// cut, so that the client sees a body that ends without its last chunk:
// ending it cleanly would make a stream cut short pass for a whole one.
type stream struct {
	h      *Handler
	c      *gin.Context
	header map[string]string // set with the status line, taken back on a refusal
	begin  func(io.Writer) exportRows
	out    *stallWriter
	bw     *bufio.Writer
	rows   exportRows
	n      int // rows written
}

func (h *Handler) newStream(c *gin.Context, header map[string]string, begin func(io.Writer) exportRows) *stream {
	out := &stallWriter{w: c.Writer, rc: http.NewResponseController(c.Writer), stall: h.o.ExportStallTimeout}
	return &stream{h: h, c: c, header: header, begin: begin, out: out}
}

func (s *stream) start() {
	for k, v := range s.header {
		s.c.Header(k, v)
	}
	s.c.Status(http.StatusOK)
	s.bw = bufio.NewWriterSize(s.out, exportBuffer)
	s.rows = s.begin(s.bw)
}

// next returns what the next row is written to, starting the reply at the
// first row.
func (s *stream) next() exportRows {
	if s.bw == nil {
		s.start()
	}
	return s.rows
}

// wrote counts a row written, flushing every exportFlushRows.
func (s *stream) wrote() error {
	if s.n++; s.n%exportFlushRows == 0 {
		return s.flush()
	}
	return nil
}

func (s *stream) flush() error {
	if err := s.rows.flush(); err != nil {
		return err
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	return s.out.flush()
}

// end finishes the reply after its rows, err being how writing them ended:
// an error to answer as a problem while nothing is sent, else nil. A
// failure after the status line is logged as ended (with the rows written
// counted as unit) and the connection cut.
func (s *stream) end(err error, ended, unit string) error {
	if s.bw == nil {
		if err != nil {
			return err
		}
		s.start()
	}
	if err == nil {
		err = s.flush()
	}
	if err != nil && !s.c.Writer.Written() {
		for k := range s.header {
			s.c.Writer.Header().Del(k)
		}
		return err
	}
	if err != nil {
		s.h.log.WarnContext(s.c.Request.Context(), ended, unit, s.n, "err", err)
		cutConnection(s.c.Writer)
	}
	return nil
}

// cutConnection closes the connection of w's request without ending its
// response, when the connection can be had (not on HTTP/2, nor in tests
// that record the response).
func cutConnection(w gin.ResponseWriter) {
	// gin refuses to hand over the connection once a body is written; the
	// server's own writer, under it, does not.
	var rw http.ResponseWriter = w
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		rw = u.Unwrap()
	}
	if conn, _, err := http.NewResponseController(rw).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// stallWriter writes to the connection with a progress deadline: each write
// and each flush must complete within stall, renewed before each, so that
// a client that stops reading loses its export after stall, while one that
// reads slowly but steadily keeps it however long it takes.
type stallWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallWriter) renew() error {
	err := s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	if errors.Is(err, http.ErrNotSupported) {
		return nil // not a network connection, as in tests with a recorder
	}
	return err
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if err := s.renew(); err != nil {
		return 0, err
	}
	return s.w.Write(p)
}

func (s *stallWriter) flush() error {
	if err := s.renew(); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// exportFormat is a media type an export can be written in.
type exportFormat struct {
	contentType string
	start       func(w io.Writer) exportRows // writes what precedes the rows
}

// exportRows writes the rows of one export.
type exportRows interface {
	write(model.StoredMessage) error
	flush() error // hands what it buffers to the writer it was started on
}

// ndjsonFormat is the faithful form of an export: one JSON object per line,
// as GET /data has them.
var ndjsonFormat = exportFormat{"application/x-ndjson", func(w io.Writer) exportRows {
	return &ndjsonRows{w: w}
}}

type ndjsonRows struct {
	w    io.Writer
	line []byte
	enc  *json.Encoder // for writeValue, made on its first call
}

func (r *ndjsonRows) write(m model.StoredMessage) error {
	r.line = append(appendMessage(r.line[:0], m), '\n')
	_, err := r.w.Write(r.line)
	return err
}

// writeValue writes v as one line, as encoding/json encodes it.
func (r *ndjsonRows) writeValue(v any) error {
	if r.enc == nil {
		r.enc = json.NewEncoder(r.w)
		r.enc.SetEscapeHTML(false)
	}
	return r.enc.Encode(v)
}

func (r *ndjsonRows) flush() error { return nil }

// csvFormat is an export for spreadsheets: RFC 4180, with a header row and
// CRLF line ends, and every cell that a spreadsheet would read as a formula
// made text (see spreadsheetText).
var csvFormat = exportFormat{"text/csv; charset=utf-8; header=present", func(w io.Writer) exportRows {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	_ = cw.Write([]string{"customerId", "dialogId", "language", "text", "createdAt"}) // an error stays in cw, for flush
	return csvRows{cw}
}}

type csvRows struct{ w *csv.Writer }

func (r csvRows) write(m model.StoredMessage) error {
	return r.w.Write([]string{
		spreadsheetText(m.CustomerID), spreadsheetText(m.DialogueID), m.Language,
		spreadsheetText(m.Text), m.CreatedAt.UTC().Format(timeFormat),
	})
}

func (r csvRows) flush() error {
	r.w.Flush()
	return r.w.Error()
}

// spreadsheetText defends spreadsheet users against formula injection
// (OWASP, "CSV Injection"): a cell that starts with = + - @, a tab or a
// carriage return is prefixed with ', so that a spreadsheet shows it as
// text instead of evaluating it. Such a cell no longer holds exactly what
// was stored; NDJSON does.
func spreadsheetText(s string) string {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// prefersCSV reports whether the Accept header values ask for CSV over
// NDJSON: text/csv (or text/*) with a higher quality than
// application/x-ndjson, or the same quality named more specifically. Any
// other Accept, none included, gets NDJSON, as before CSV existed: a
// client that sends Accept: application/json gets the stream it always got
// rather than a 406.
func prefersCSV(accept []string) bool {
	csvQ, csvSpec := acceptQuality(accept, "text", "csv")
	ndjsonQ, ndjsonSpec := acceptQuality(accept, "application", "x-ndjson")
	return csvQ > ndjsonQ || csvQ > 0 && csvQ == ndjsonQ && csvSpec > ndjsonSpec
}

// acceptQuality returns the quality that Accept header values give the
// media type typ/sub, by its most specific matching range (RFC 9110,
// 12.5.1), and how specific that range is: 3 for typ/sub, 2 for typ/*, 1
// for */*, 0 for none.
func acceptQuality(accept []string, typ, sub string) (q float64, specificity int) {
	for _, header := range accept {
		for _, r := range strings.Split(header, ",") {
			mediaRange, params, _ := strings.Cut(r, ";")
			t, s, _ := strings.Cut(strings.TrimSpace(mediaRange), "/")
			spec := 0
			switch {
			case strings.EqualFold(t, typ) && strings.EqualFold(s, sub):
				spec = 3
			case strings.EqualFold(t, typ) && s == "*":
				spec = 2
			case t == "*" && s == "*":
				spec = 1
			}
			if spec <= specificity {
				continue
			}
			q, specificity = 1, spec
			for p := range strings.SplitSeq(params, ";") {
				name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(name, "q") {
					if v, err := strconv.ParseFloat(value, 64); err == nil && v >= 0 && v <= 1 {
						q = v
					}
				}
			}
		}
	}
	return q, specificity
}

type dialogueReply struct {
	DialogueID string        `json:"dialogId"`
	CustomerID string        `json:"customerId"`
	DecidedAt  string        `json:"decidedAt"`
	Messages   []messageJSON `json:"messages"`
}

func (h *Handler) dialogue(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	d, err := h.svc.Dialogue(c.Request.Context(), c.Param("dialogId"))
	if err != nil {
		return err
	}
	r := dialogueReply{
		DialogueID: d.Decision.DialogueID,
		CustomerID: d.Decision.CustomerID,
		DecidedAt:  d.Decision.DecidedAt.UTC().Format(timeFormat),
		Messages:   make([]messageJSON, len(d.Messages)),
	}
	for i, m := range d.Messages {
		r.Messages[i] = toJSON(m)
	}
	writeJSON(c, http.StatusOK, r)
	return nil
}

// errHeadOnly stops the export of a HEAD request at its first row.
var errHeadOnly = errors.New("HEAD: headers only")

// exportHead answers HEAD as GET would, without the stream: the filters are
// checked and the database asked for the first row, so that a bad filter, a
// database down or every export slot taken answer as they would to GET.
func (h *Handler) exportHead(c *gin.Context, f model.Filter, format exportFormat) error {
	err := h.svc.Export(c.Request.Context(), f, func(model.StoredMessage) error { return errHeadOnly })
	if err != nil && !errors.Is(err, errHeadOnly) {
		return err
	}
	c.Header("Content-Type", format.contentType)
	c.Header("Vary", "Accept")
	c.Status(http.StatusOK)
	return nil
}

type decisionReply struct {
	DialogueID string `json:"dialogId"`
	CustomerID string `json:"customerId"`
	Consent    bool   `json:"consent"`
	DecidedAt  string `json:"decidedAt"`
	Messages   int    `json:"messages"`
}

func (h *Handler) decision(c *gin.Context) error {
	if err := noQuery(c); err != nil {
		return err
	}
	d, err := h.svc.Decision(c.Request.Context(), c.Param("dialogId"))
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, toDecisionReply(d))
	return nil
}

func toDecisionReply(d model.Decision) decisionReply {
	return decisionReply{d.DialogueID, d.CustomerID, d.Consent, d.DecidedAt.UTC().Format(timeFormat), d.Messages}
}
