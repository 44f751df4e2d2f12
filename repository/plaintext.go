package repository

import (
	"context"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
)

// plaintextTable is the table of messages of a database written before
// encryption, its texts in plaintext.
const plaintextTable = "messages"

// plaintextBatch is the most plaintext messages one transaction encrypts.
const plaintextBatch = 2000

// progressEvery is how often a long job (encrypting a plaintext database,
// rotating keys) logs its progress.
const progressEvery = 5 * time.Second

// plaintextRow is a message of plaintextTable.
type plaintextRow struct {
	ID         int64
	CustomerID string
	DialogueID string
	Language   string
	Text       string
	CreatedAt  int64
	MsgKey     *string
}

// encryptPlaintext moves the messages of a database written before
// encryption into sealed_messages, sealed under their dialogue's key (new,
// or the one an earlier batch made), plaintextBatch of them per
// transaction, the oldest ids first, keeping their ids, so that cursors and
// the order of ties stay as they were. Each transaction inserts its batch
// sealed and deletes it from plaintextTable, so a crash at any point leaves
// every message in exactly one of the two tables, and the next Open takes
// up where this one stopped. The emptied table is then dropped and the
// files scrubbed of the deleted plaintext (on SQLite, zeroed in place by
// secure_delete and checkpointed out of the write-ahead log).
//
// It logs its progress every progressEvery. A process of the version
// before encryption that still writes into plaintextTable meanwhile (a
// rolling upgrade on PostgreSQL) has its messages encrypted too, until the
// table is dropped; after that its writes fail.
func (db *DB) encryptPlaintext(ctx context.Context, d dialect) error {
	m := db.writer.WithContext(ctx).Migrator()
	if !m.HasTable(plaintextTable) {
		return nil
	}
	hasKeys := m.HasColumn(plaintextTable, "msg_key")
	var total int
	if err := db.writer.WithContext(ctx).Raw("SELECT COUNT(*) FROM " + plaintextTable).Scan(&total).Error; err != nil {
		return err
	}
	db.log.InfoContext(ctx, "encrypting the plaintext messages of a database written before encryption", "messages", total, "batch", plaintextBatch)
	start, lastLog := time.Now(), time.Now()
	done := 0
	for {
		n, err := db.encryptPlaintextBatch(ctx, d, hasKeys)
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", done, total, err)
		}
		done += n
		if n == 0 {
			break
		}
		if time.Since(lastLog) >= progressEvery {
			db.log.InfoContext(ctx, "encrypting plaintext messages", "done", done, "left", max(total-done, 0))
			lastLog = time.Now()
		}
	}
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if d.migrateLock != "" {
			if err := tx.Exec(d.migrateLock).Error; err != nil {
				return err
			}
		}
		var left int
		if err := tx.Raw("SELECT COUNT(*) FROM " + plaintextTable).Scan(&left).Error; err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d plaintext messages arrived while encrypting; start again", left)
		}
		return tx.Exec("DROP TABLE " + plaintextTable).Error
	})
	if err != nil {
		return err
	}
	if err := db.scrub(context.WithoutCancel(ctx), db.writer); err != nil {
		return fmt.Errorf("the messages are encrypted but the database files are not yet scrubbed of the plaintext: %w", err)
	}
	db.log.InfoContext(ctx, "encrypted every plaintext message", "messages", done, "duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// encryptPlaintextBatch moves the plaintextBatch oldest plaintext messages
// into sealed_messages in one transaction, and returns how many it moved.
func (db *DB) encryptPlaintextBatch(ctx context.Context, d dialect, hasKeys bool) (int, error) {
	key := "NULL"
	if hasKeys {
		key = "msg_key"
	}
	var n int
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if d.migrateLock != "" {
			if err := tx.Exec(d.migrateLock).Error; err != nil {
				return err
			}
		}
		var plain []plaintextRow
		if err := tx.Raw("SELECT id, customer_id, dialogue_id, language, text, created_at, "+key+" AS msg_key FROM "+plaintextTable+
			" ORDER BY id LIMIT ?", plaintextBatch).Scan(&plain).Error; err != nil {
			return err
		}
		if n = len(plain); n == 0 {
			return nil
		}
		owners := make(map[string]string)
		for _, p := range plain {
			owners[p.DialogueID] = p.CustomerID
		}
		keys, keyRows, err := db.newKeys(owners)
		if err != nil {
			return err
		}
		if _, err := db.storeKeys(ctx, tx, keys, keyRows); err != nil {
			return err
		}
		rows := make([]sealedMessageRow, n)
		var ad []byte
		for i, p := range plain {
			ad = messageAD(ad[:0], p.DialogueID, p.CustomerID, p.Language, p.CreatedAt)
			sealed, err := keys[p.DialogueID].Seal(nil, []byte(p.Text), ad)
			if err != nil {
				return err
			}
			rows[i] = sealedMessageRow{ID: p.ID, CustomerID: p.CustomerID, DialogueID: p.DialogueID, Language: p.Language, Sealed: sealed, CreatedAt: p.CreatedAt, Key: p.MsgKey}
		}
		if err := tx.CreateInBatches(rows, insertBatch).Error; err != nil {
			return err
		}
		if d.syncSequence != "" {
			if err := tx.Exec(d.syncSequence).Error; err != nil {
				return err
			}
		}
		ids := make([]int64, n)
		for i, p := range plain {
			ids[i] = p.ID
		}
		for chunk := range slices.Chunk(ids, insertBatch) {
			if err := tx.Exec("DELETE FROM "+plaintextTable+" WHERE id IN ?", chunk).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
