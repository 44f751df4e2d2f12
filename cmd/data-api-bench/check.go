package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
)

// checkWorkers is how many customers the check reads at once.
const checkWorkers = 4

// checkPageLimit is the page size the check asks for with -check-via pages,
// and maxCheckPages the most pages it follows for one customer.
const (
	checkPageLimit = 1000
	maxCheckPages  = 10_000
)

// checkReport is the outcome of the consistency check. It holds counts only.
type checkReport struct {
	Customers    int `json:"customers"`    // customers whose stored messages were read
	Dialogues    int `json:"dialogues"`    // decided dialogues checked
	ConsentTrue  int `json:"consentTrue"`  // of which decided true
	ConsentFalse int `json:"consentFalse"` // of which decided false
	Mismatches   int `json:"mismatches"`   // dialogues whose stored messages differ from what was acknowledged
	Missing      int `json:"missingMessages"`
	Duplicated   int `json:"duplicatedMessages"`
	Unexpected   int `json:"unexpectedMessages"` // stored though refused, decided false, or never sent
	WrongReplies int `json:"wrongReplies"`       // true decisions whose storedMessages is not the acknowledged count
	ReadErrors   int `json:"readErrors"`         // customers whose stored messages could not be read
}

// failed reports whether the check found a mismatch or could not be done.
func (c *checkReport) failed() bool { return c.Mismatches > 0 || c.ReadErrors > 0 }

func (c *checkReport) print(w io.Writer) {
	verdict := "OK"
	if c.failed() {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "consistency check %s: %d dialogues (%d true, %d false) of %d customers\n",
		verdict, c.Dialogues, c.ConsentTrue, c.ConsentFalse, c.Customers)
	fmt.Fprintf(w, "  mismatched dialogues %d: missing messages %d, duplicated %d, unexpected %d, wrong storedMessages %d; unreadable customers %d\n",
		c.Mismatches, c.Missing, c.Duplicated, c.Unexpected, c.WrongReplies, c.ReadErrors)
}

// check reads what the service stored for a sample of the customers of the
// decided dialogues (all of them with -check-all) and compares it, dialogue
// by dialogue, with what the service acknowledged: under a true decision,
// every message answered 202 stored exactly once, every refused one absent,
// one without an answer at most once; under a false decision, nothing.
func (l *loader) check(ctx context.Context, decided []dialogue) checkReport {
	byCustomer := map[int][]dialogue{}
	for _, d := range decided {
		byCustomer[d.customer] = append(byCustomer[d.customer], d)
	}
	customers := slices.Collect(maps.Keys(byCustomer))
	if !l.opts.checkAll && len(customers) > l.opts.checkSample {
		rand.Shuffle(len(customers), func(i, j int) { customers[i], customers[j] = customers[j], customers[i] })
		customers = customers[:l.opts.checkSample]
	}

	var (
		mu  sync.Mutex
		rep checkReport
		wg  sync.WaitGroup
	)
	work := make(chan int)
	for range checkWorkers {
		wg.Go(func() {
			for c := range work {
				stored, err := l.stored(ctx, c)
				mu.Lock()
				rep.Customers++
				if err != nil {
					rep.ReadErrors++
				} else {
					for _, d := range byCustomer[c] {
						rep.add(d, l.verify(d, stored[l.dialogueID(d.seq)]))
					}
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, c := range customers {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return rep
}

// verdict is what the check found wrong with one dialogue.
type verdict struct {
	missing, duplicated, unexpected int
	wrongReply                      bool
}

// add counts one checked dialogue.
func (c *checkReport) add(d dialogue, v verdict) {
	c.Dialogues++
	if d.consent {
		c.ConsentTrue++
	} else {
		c.ConsentFalse++
	}
	c.Missing += v.missing
	c.Duplicated += v.duplicated
	c.Unexpected += v.unexpected
	if v.wrongReply {
		c.WrongReplies++
	}
	if v != (verdict{}) {
		c.Mismatches++
	}
}

// verify compares what is stored of d, counted by text, with what the
// service acknowledged of it. It empties stored.
func (l *loader) verify(d dialogue, stored map[string]int) verdict {
	var (
		v          verdict
		acks       int
		hasUnknown bool
	)
	for i, o := range d.outcomes {
		text := l.text(d.seq, i)
		n := stored[text]
		delete(stored, text)
		switch {
		case !d.consent || o == refused:
			v.unexpected += n
		case n > 1:
			v.duplicated += n - 1
		case n == 0 && o == acked:
			v.missing++
		}
		if o == acked {
			acks++
		}
		hasUnknown = hasUnknown || o == unknown
	}
	for _, n := range stored {
		v.unexpected += n // texts this dialogue never sent
	}
	v.wrongReply = d.consent && !hasUnknown && d.stored != acks
	return v
}

// stored reads every message stored for customer c and counts them by
// dialogue id and text.
func (l *loader) stored(ctx context.Context, c int) (map[string]map[string]int, error) {
	got := map[string]map[string]int{}
	add := func(m storedMessage) {
		if got[m.DialogueID] == nil {
			got[m.DialogueID] = map[string]int{}
		}
		got[m.DialogueID][m.Text]++
	}
	base := l.opts.target.String()
	q := url.Values{"customerId": {l.customerID(c)}}

	if l.opts.checkVia == checkViaExport {
		err := l.read(ctx, withQuery(base+"/data/export", q), func(r io.Reader) error {
			dec := json.NewDecoder(r)
			for {
				var m storedMessage
				if err := dec.Decode(&m); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				add(m)
			}
		})
		if err != nil {
			return nil, err
		}
		return got, nil
	}
	q.Set("limit", strconv.Itoa(checkPageLimit))
	for range maxCheckPages {
		var page pageReply
		err := l.read(ctx, withQuery(base+"/data", q), func(r io.Reader) error {
			return json.NewDecoder(r).Decode(&page)
		})
		if err != nil {
			return nil, err
		}
		for _, m := range page.Data {
			add(m)
		}
		if page.NextCursor == "" {
			return got, nil
		}
		q.Set("cursor", page.NextCursor)
	}
	return nil, fmt.Errorf("more than %d pages", maxCheckPages)
}

// read sends a GET that must answer 200 and hands its body to decode.
func (l *loader) read(ctx context.Context, target string, decode func(io.Reader) error) error {
	resp, err := l.send(ctx, http.MethodGet, target, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return decode(resp.Body)
}
