package model

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// MaxIDLength is the longest customer or dialogue identifier accepted.
const MaxIDLength = 128

// Message is one customer message of a dialogue.
type Message struct {
	CustomerID string
	DialogueID string
	Language   string // canonical BCP 47 tag
	Text       string
	CreatedAt  time.Time // the server's receive time, UTC
	// Key, when set, identifies the message for good: storing a message
	// whose key is already stored does nothing, so that a consent retried
	// after a crash never stores a message twice.
	Key string
}

// StoredMessage is a consented message as the database holds it. ID breaks
// ties between messages received at the same nanosecond.
type StoredMessage struct {
	ID int64
	Message
}

// Decision is one entry of the consent ledger: what was decided for a
// dialogue, when, by which API key, and how many messages it governed
// (stored for a consent, deleted for a refusal). It never holds text.
type Decision struct {
	DialogueID string
	CustomerID string // empty when a refusal names a dialogue never seen
	Consent    bool
	DecidedAt  time.Time
	Messages   int
	KeyName    string // who made the call: the API key's name, or "oidc:" and a token's subject; empty without auth
}

// Consent is a positive decision together with the messages it persists.
type Consent struct {
	Decision Decision
	Messages []Message
}

// Erasure records that a customer's data was erased on request.
type Erasure struct {
	CustomerID string
	ErasedAt   time.Time
	Messages   int
	KeyName    string
}

// CustomerRecord is one item of what is stored about a customer, for their
// right of access: exactly one of its fields is set.
type CustomerRecord struct {
	Message  *StoredMessage
	Decision *Decision
	Erasure  *Erasure
}

// Filter selects consented messages. Empty fields, and zero times, match
// everything.
type Filter struct {
	Language   string
	CustomerID string
	DialogueID string
	Since      time.Time // createdAt at or after Since
	Until      time.Time // createdAt before Until
}

// Position is a place in the newest-first order of consented messages.
type Position struct {
	CreatedAt time.Time
	ID        int64
}

// Page sizes of a query.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Dialogue is a consented dialogue as stored: its messages, oldest first,
// and its latest decision, a consent.
type Dialogue struct {
	Decision Decision
	Messages []StoredMessage
}

// Query asks for one page of consented messages, from the position Cursor
// names (from the newest when empty).
type Query struct {
	Filter
	Cursor string // nextCursor of the previous page, for the same Filter
	Limit  int
}

// Page is one page of consented messages, newest first; Next is the cursor
// of the next page, empty on the last one.
type Page struct {
	Messages []StoredMessage
	Next     string
}

// ValidateID reports whether s is a valid customer or dialogue identifier:
// 1 to 128 characters from A-Z a-z 0-9 . _ ~ : -, other than "." and "..".
func ValidateID(s string) error {
	if s == "" || len(s) > MaxIDLength {
		return fmt.Errorf("must be 1 to %d characters long", MaxIDLength)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("must not be %q", s)
	}
	for i := 0; i < len(s); i++ {
		if !idByte[s[i]] {
			return fmt.Errorf("may hold only A-Z a-z 0-9 . _ ~ : -")
		}
	}
	return nil
}

var idByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._~:-" {
		t[c] = true
	}
	return t
}()

// MaxLanguageLength is the longest language tag accepted, in bytes. RFC 5646
// §4.4.1 asks that at least 35 characters be accepted; the tags people use
// fit in far fewer, and a longer one is refused before it is parsed.
const MaxLanguageLength = 64

// CanonicalLanguage parses s as a BCP 47 tag, case-insensitively, and
// returns its canonical form ("EN" → "en", "zh-hant-tw" → "zh-Hant-TW").
func CanonicalLanguage(s string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("is required: a BCP 47 language tag such as \"en\" or \"pt-BR\"")
	case len(s) > MaxLanguageLength:
		return "", fmt.Errorf("is %d bytes long; a language tag may be at most %d bytes", len(s), MaxLanguageLength)
	}
	if c, ok := canonicalTags.get(s); ok {
		return c, nil
	}
	// x/text also takes "_" as a separator; BCP 47 does not.
	tag, err := language.Parse(s)
	if err != nil || strings.IndexByte(s, '_') >= 0 {
		return "", fmt.Errorf("is not a well-formed BCP 47 language tag, such as \"en\" or \"pt-BR\"")
	}
	c := tag.String()
	canonicalTags.put(s, c)
	return c, nil
}

// canonicalTags remembers the canonical form of tags recently seen, so that
// the few languages a deployment sees are parsed once (parsing costs about a
// quarter of an ingestion) and their canonical strings are shared by every
// message.
var canonicalTags = newTagCache()

// tagSlots is how many tags canonicalTags holds at most, a power of two.
const tagSlots = 256

// tagCache is a fixed array of slots, each picked by a hash of the tag as
// given; a tag takes over its slot from whatever tag was there. Only tags
// that parsed are put in, so whatever it is fed it holds at most tagSlots
// entries of at most 2 × MaxLanguageLength bytes: a flood of distinct tags
// costs parsing, never memory.
type tagCache struct {
	seed  maphash.Seed
	slots [tagSlots]atomic.Pointer[tagEntry]
}

type tagEntry struct{ tag, canonical string }

func newTagCache() *tagCache { return &tagCache{seed: maphash.MakeSeed()} }

func (c *tagCache) slot(tag string) *atomic.Pointer[tagEntry] {
	return &c.slots[maphash.String(c.seed, tag)&(tagSlots-1)]
}

func (c *tagCache) get(tag string) (string, bool) {
	if e := c.slot(tag).Load(); e != nil && e.tag == tag {
		return e.canonical, true
	}
	return "", false
}

// put remembers the canonical form of a tag that parsed. The tag is copied:
// it may share the memory of a whole request.
func (c *tagCache) put(tag, canonical string) {
	c.slot(tag).Store(&tagEntry{tag: strings.Clone(tag), canonical: canonical})
}

// ValidateText reports whether s is acceptable message text: valid UTF-8,
// no NUL byte, not blank, and at most maxBytes bytes.
func ValidateText(s string, maxBytes int) error {
	switch {
	case len(s) > maxBytes:
		return fmt.Errorf("is %d bytes long; the limit is %d bytes", len(s), maxBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("must not contain NUL characters")
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) }) < 0:
		return fmt.Errorf("must not be empty or only white space")
	}
	return nil
}

// Outcome is what a consent decision did.
type Outcome struct {
	CustomerID string // empty when a refusal names a dialogue never seen
	Stored     int    // messages persisted by a consent
	Dropped    int    // pending messages dropped by a refusal
	Deleted    int    // stored messages deleted by a refusal
}

// ErasureOutcome is what erasing a customer did.
type ErasureOutcome struct {
	Dropped int // pending messages dropped from memory
	Deleted int // stored messages deleted
}
