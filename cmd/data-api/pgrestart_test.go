package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgresRestart puts a TCP proxy between the service and PostgreSQL
// and, while consents are being written, cuts every connection, then
// refuses new ones for a while, as a primary's restart (or a failover
// behind a virtual IP) does. Consents and reads then fail with 503 and write nothing in part;
// once the server answers again they succeed without a restart of the
// service, and each dialogue, its consent retried, is stored once, whole.
func TestPostgresRestart(t *testing.T) {
	u, _ := pgSchema(t, "restart_")
	direct := u.String()
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr()

	inst := start(t, []string{
		"DATA_API_DATABASE_DRIVER=postgres",
		"DATA_API_DATABASE_DSN=" + u.String(),
		`DATA_API_ENCRYPTION_KEYS=[{"id":"k1","key":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]`,
		"DATA_API_ENCRYPTION_ACTIVE=k1",
		"DATA_API_JOURNAL_DIR=" + filepath.Join(t.TempDir(), "journal"),
	})
	const perDialogue = 5
	send := func(id string) {
		for i := range perDialogue {
			call(t, inst, "POST", "/data/cust-1/"+id, fmt.Sprintf(`{"text": "%s %d", "language": "en"}`, id, i), 202)
		}
	}
	send("first")
	call(t, inst, "POST", "/consents/first", "true", 200)

	// Consents before the server goes away, then consents in flight when
	// it does: their traffic is held, then every connection is cut.
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%02d", i)
		send(ids[i])
	}
	statuses := make([]int, len(ids))
	for i, id := range ids[:10] {
		statuses[i] = callStatus(t, inst, "POST", "/consents/"+id, "true")
	}
	proxy.pause()
	var wg sync.WaitGroup
	for i, id := range ids[10:] {
		wg.Go(func() { statuses[10+i] = callStatus(t, inst, "POST", "/consents/"+id, "true") })
	}
	proxy.waitHeld(t)
	proxy.cut(true)
	wg.Wait()
	t.Logf("consents around the cut: %v", statuses)

	// While the server is away: 503, and nothing half-written.
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/consents/" + ids[len(ids)-1], "true"},
		{"GET", "/data?customerId=cust-1", ""},
		{"GET", "/readyz", ""},
	} {
		if status := callStatus(t, inst, r.method, r.path, r.body); status != 503 {
			t.Fatalf("%s %s while the database is away: %d, want 503", r.method, r.path, status)
		}
	}
	counts := storedPerDialogue(t, direct)
	for id, n := range counts {
		if n != perDialogue {
			t.Fatalf("dialogue %s stored in part: %d of %d messages", id, n, perDialogue)
		}
	}
	for i, id := range ids {
		if statuses[i] == 200 && counts[id] != perDialogue {
			t.Fatalf("consent of %s answered 200, but %d messages are stored", id, counts[id])
		}
		if statuses[i] != 200 && statuses[i] != 503 {
			t.Fatalf("consent of %s: %d, want 200 or 503", id, statuses[i])
		}
	}

	// Back: the same process serves again, and a retried consent stores
	// what is not stored yet, once.
	proxy.cut(false)
	deadline := time.Now().Add(30 * time.Second)
	for callStatus(t, inst, "GET", "/readyz", "") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("not ready again after the database came back")
		}
		time.Sleep(50 * time.Millisecond) // polling for the pool to reconnect
	}
	for i, id := range ids {
		if statuses[i] != 200 {
			call(t, inst, "POST", "/consents/"+id, "true", 200)
		}
	}
	counts = storedPerDialogue(t, direct)
	if len(counts) != len(ids)+1 {
		t.Fatalf("%d dialogues stored, want %d", len(counts), len(ids)+1)
	}
	for id, n := range counts {
		if n != perDialogue {
			t.Fatalf("dialogue %s: %d messages stored, want %d", id, n, perDialogue)
		}
	}
	texts := allTexts(t, inst, "/data?customerId=cust-1&limit=100")
	if slices.Sort(texts); len(slices.Compact(texts)) != (len(ids)+1)*perDialogue {
		t.Fatalf("reads after the restart: %d distinct texts, want %d", len(texts), (len(ids)+1)*perDialogue)
	}
	inst.stop()
	if err := <-inst.done; err != nil {
		t.Fatalf("run returned %v", err)
	}
}

// storedPerDialogue counts the stored messages of each dialogue, read
// straight from the database.
func storedPerDialogue(t *testing.T, dsn string) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT dialogue_id, count(*) FROM sealed_messages GROUP BY dialogue_id")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// tcpProxy forwards connections to a server. It can hold what they carry,
// and cut them all and refuse new ones, as a server that restarts does.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	resume chan struct{} // closed when traffic flows; open while held
	held   int           // chunks waiting while held
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}, resume: make(chan struct{})}
	close(p.resume)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.forward(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.cut(true)
		wg.Wait()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

// forward pipes c to the target until either side closes.
func (p *tcpProxy) forward(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down { // cut while dialing
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				resume := p.resume
				p.held++
				p.mu.Unlock()
				<-resume
				p.mu.Lock()
				p.held--
				p.mu.Unlock()
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	wg.Go(func() { pipe(s, c) })
	wg.Go(func() { pipe(c, s) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// pause holds what the connections carry until cut.
func (p *tcpProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resume = make(chan struct{})
}

// waitHeld waits until some traffic is held.
func (p *tcpProxy) waitHeld(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no traffic reached the proxy")
		}
		time.Sleep(10 * time.Millisecond) // polling for requests to reach the database
	}
}

// cut closes every connection, lets held traffic go (to closed
// connections), and, while down, refuses new connections.
func (p *tcpProxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	for c := range p.conns {
		c.Close()
	}
	select {
	case <-p.resume:
	default:
		close(p.resume)
	}
}
