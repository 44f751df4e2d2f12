package repository

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// messageRow is a consented message. CreatedAt is in UTC Unix nanoseconds,
// so that the order is exact whatever the time zone. Each index but
// messages_msg_key serves filters in newest-first keyset order, a range of
// created_at included: one combination of language and customer each, and
// messages_dialogue_created_id every filter that names a dialogue (see
// selectMessages); messages_msg_key makes a keyed message storable once only.
type messageRow struct {
	ID         int64  `gorm:"primaryKey;autoIncrement;index:messages_created_id,priority:2;index:messages_language_created_id,priority:3;index:messages_customer_created_id,priority:3;index:messages_customer_language_created_id,priority:4;index:messages_dialogue_created_id,priority:3"`
	CustomerID string `gorm:"not null;check:customer_id <> '';index:messages_customer_created_id,priority:1;index:messages_customer_language_created_id,priority:1"`
	DialogueID string `gorm:"not null;check:dialogue_id <> '';index:messages_dialogue_created_id,priority:1"`
	Language   string `gorm:"not null;index:messages_language_created_id,priority:1;index:messages_customer_language_created_id,priority:2"`
	Text       string `gorm:"not null;check:text <> ''"`
	CreatedAt  int64  `gorm:"not null;autoCreateTime:false;index:messages_created_id,priority:1;index:messages_language_created_id,priority:2;index:messages_customer_created_id,priority:2;index:messages_customer_language_created_id,priority:3;index:messages_dialogue_created_id,priority:2"`
	// Key is the message's idempotency key, NULL when it has none. The
	// unique index is partial, so that unkeyed messages (the memory store's)
	// cost no index entry.
	Key *string `gorm:"column:msg_key;uniqueIndex:messages_msg_key,where:msg_key IS NOT NULL"`
}

func (messageRow) TableName() string { return "messages" }

// newMessageRow is a messageRow to insert, without the ID the database
// assigns: GORM then inserts it without RETURNING the IDs, which nothing
// reads and which cost a fifth of an insert's time.
type newMessageRow struct {
	CustomerID string
	DialogueID string
	Language   string
	Text       string
	CreatedAt  int64   `gorm:"autoCreateTime:false"`
	Key        *string `gorm:"column:msg_key"`
}

func (newMessageRow) TableName() string { return "messages" }

// consentRow is an entry of the append-only consent ledger; the newest entry
// of a dialogue has the highest ID.
type consentRow struct {
	ID         int64  `gorm:"primaryKey;autoIncrement;index:consents_dialogue_id,priority:2"`
	DialogueID string `gorm:"not null;check:dialogue_id <> '';index:consents_dialogue_id,priority:1"`
	CustomerID string `gorm:"not null"`
	Consent    bool   `gorm:"not null"`
	DecidedAt  int64  `gorm:"not null"`
	Messages   int    `gorm:"not null"`
	KeyName    string `gorm:"not null"`
}

func (consentRow) TableName() string { return "consents" }

// erasureRow records a customer's erasure.
type erasureRow struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	CustomerID string `gorm:"not null"`
	ErasedAt   int64  `gorm:"not null"`
	Messages   int    `gorm:"not null"`
	KeyName    string `gorm:"not null"`
}

func (erasureRow) TableName() string { return "erasures" }

// probeRow is written and deleted by ProbeWrite, in one transaction: the
// table is always empty.
type probeRow struct {
	ID      int64  `gorm:"primaryKey;autoIncrement"`
	Payload []byte `gorm:"not null"`
}

func (probeRow) TableName() string { return "write_probes" }

// droppedIndexes are indexes of earlier schemas that a later index serves:
// messages_dialogue (dialogue_id) is a prefix of messages_dialogue_created_id.
var droppedIndexes = []string{"messages_dialogue"}

// migrate creates or updates the tables and their indexes, and drops the
// indexes of earlier schemas that no query needs. When lock is set, the
// migration is one transaction that runs lock first, so that processes that
// start together on an empty database take turns rather than race to create
// the same tables.
func migrate(ctx context.Context, writer *gorm.DB, lock string) error {
	run := func(tx *gorm.DB) error {
		if err := tx.AutoMigrate(&messageRow{}, &consentRow{}, &erasureRow{}, &probeRow{}); err != nil {
			return err
		}
		for _, name := range droppedIndexes {
			if err := tx.Exec("DROP INDEX IF EXISTS " + name).Error; err != nil {
				return err
			}
		}
		return nil
	}
	if lock == "" {
		return run(writer.WithContext(ctx))
	}
	return writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(lock).Error; err != nil {
			return err
		}
		return run(tx)
	})
}

// nullable returns nil for the empty string, which the database holds as
// NULL, and a pointer to s otherwise.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// fromNanos returns the UTC time of Unix nanoseconds ns, as the tables hold
// times.
func fromNanos(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}
