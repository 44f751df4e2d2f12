package repository

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// sealedMessageRow is a consented message, its text sealed under the key of
// its dialogue (see keys.go): the table holds no plaintext. CreatedAt is in
// UTC Unix nanoseconds, so that the order is exact whatever the time zone.
// Each index but sealed_messages_msg_key serves filters in newest-first
// keyset order, a range of created_at included: one combination of
// language and customer each, and sealed_messages_dialogue_created_id every
// filter that names a dialogue (see selectMessages); sealed_messages_msg_key
// makes a keyed message storable once only.
//
// The table is not named messages: that name is the plaintext table of
// databases written before encryption, which Open encrypts into this one
// (see plaintext.go).
type sealedMessageRow struct {
	ID         int64  `gorm:"primaryKey;autoIncrement;index:sealed_messages_created_id,priority:2;index:sealed_messages_language_created_id,priority:3;index:sealed_messages_customer_created_id,priority:3;index:sealed_messages_customer_language_created_id,priority:4;index:sealed_messages_dialogue_created_id,priority:3"`
	CustomerID string `gorm:"not null;check:customer_id <> '';index:sealed_messages_customer_created_id,priority:1;index:sealed_messages_customer_language_created_id,priority:1"`
	DialogueID string `gorm:"not null;check:dialogue_id <> '';index:sealed_messages_dialogue_created_id,priority:1"`
	Language   string `gorm:"not null;index:sealed_messages_language_created_id,priority:1;index:sealed_messages_customer_language_created_id,priority:2"`
	// Sealed is the text sealed under the dialogue's key, bound to the
	// row's identity (see messageAD): longer than keyring.Overhead, the
	// seal of an empty text.
	Sealed    []byte `gorm:"not null;check:length(sealed) > 28"`
	CreatedAt int64  `gorm:"not null;autoCreateTime:false;index:sealed_messages_created_id,priority:1;index:sealed_messages_language_created_id,priority:2;index:sealed_messages_customer_created_id,priority:2;index:sealed_messages_customer_language_created_id,priority:3;index:sealed_messages_dialogue_created_id,priority:2"`
	// Key is the message's idempotency key, NULL when it has none. The
	// unique index is partial, so that unkeyed messages (the memory store's)
	// cost no index entry.
	Key *string `gorm:"column:msg_key;uniqueIndex:sealed_messages_msg_key,where:msg_key IS NOT NULL"`
}

func (sealedMessageRow) TableName() string { return "sealed_messages" }

// newSealedRow is a sealedMessageRow to insert, without the ID the database
// assigns: GORM then inserts it without RETURNING the IDs, which nothing
// reads and which cost a fifth of an insert's time.
type newSealedRow struct {
	CustomerID string
	DialogueID string
	Language   string
	Sealed     []byte
	CreatedAt  int64   `gorm:"autoCreateTime:false"`
	Key        *string `gorm:"column:msg_key"`
}

func (newSealedRow) TableName() string { return "sealed_messages" }

// dialogueKeyRow is the key of one dialogue's texts, wrapped (encrypted) by
// the master key MasterKey and bound to the dialogue and its customer (see
// keyAD). Deleting the row destroys the key: the texts it sealed can never
// be read again, from any copy, once no master key that wrapped it is left.
//
// Two B-trees only, as every commit of a consent writes a page of each: the
// primary key (on SQLite the table itself, WITHOUT ROWID; see
// keyTableOptions), which reads and withdrawals look keys up by, and the
// customer's index, for erasure. MasterKey has none: the check at Open and
// a rotation read the whole table anyway.
type dialogueKeyRow struct {
	DialogueID string `gorm:"primaryKey;check:dialogue_id <> ''"`
	CustomerID string `gorm:"not null;index:dialogue_keys_customer"`
	MasterKey  string `gorm:"not null"`
	Wrapped    []byte `gorm:"not null"`
}

func (dialogueKeyRow) TableName() string { return "dialogue_keys" }

// consentRow is an entry of the append-only consent ledger; the newest entry
// of a dialogue has the highest ID.
//
// It has no index by customer: the right of access, rare, scans the ledger
// rather than have every consent write a page of one more B-tree.
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

// backupRow is a backup of the database. In the live database it is the
// mark written, and journaled, just before the backup was taken; in the
// backup itself Backup completes it with what the copy holds, its
// high-water mark: the newest ledger entry and erasure record (ids and
// times) and the number of messages, as of the moment it was taken.
type backupRow struct {
	ID            string `gorm:"primaryKey"`
	MarkedAt      int64  `gorm:"not null"`
	TakenAt       int64  `gorm:"not null;default:0"`
	LastConsentID int64  `gorm:"not null;default:0"`
	LastDecidedAt int64  `gorm:"not null;default:0"`
	LastErasureID int64  `gorm:"not null;default:0"`
	LastErasedAt  int64  `gorm:"not null;default:0"`
	Messages      int64  `gorm:"not null;default:0"`
}

func (backupRow) TableName() string { return "backups" }

// journalStateRow is the one row (ID 1) that names the deletion journal the
// database records its deletions in, and flags a restore under way.
type journalStateRow struct {
	ID        int    `gorm:"primaryKey;autoIncrement:false"`
	JournalID string `gorm:"not null;default:''"`
	// Restoring names the restore under way ("backup <id>", or "in
	// place"); empty when none is.
	Restoring string `gorm:"not null;default:''"`
}

func (journalStateRow) TableName() string { return "journal_state" }

// migrate creates or updates the tables and their indexes. When the
// dialect has a migrateLock, the migration is one transaction that takes it
// first, so that processes that start together on an empty database take
// turns rather than race to create the same tables.
func migrate(ctx context.Context, writer *gorm.DB, d dialect) error {
	run := func(tx *gorm.DB) error {
		if err := tx.AutoMigrate(&sealedMessageRow{}, &consentRow{}, &erasureRow{}, &probeRow{}, &backupRow{}, &journalStateRow{}); err != nil {
			return err
		}
		return tx.Set("gorm:table_options", d.keyTableOptions).AutoMigrate(&dialogueKeyRow{})
	}
	if d.migrateLock == "" {
		return run(writer.WithContext(ctx))
	}
	return writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(d.migrateLock).Error; err != nil {
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
