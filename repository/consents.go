package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"gorm.io/gorm"

	"github.com/data-api/data-api/journal"
	"github.com/data-api/data-api/keyring"
	"github.com/data-api/data-api/model"
)

// insertBatch is the most rows one INSERT writes: 1000 rows of 6 columns stay
// far below SQLite's 32766 and PostgreSQL's 65535 parameters per statement.
// (Measured: GORM's batched Create runs as fast as a hand-built multi-row
// INSERT; SQLite's own work dominates.)
const insertBatch = 1000

// SaveConsents writes the messages and the ledger entry of every consent in
// one transaction, all or nothing, committed durably before it returns. A
// message with a Key that is stored already is not stored again.
//
// Each text is sealed under the key of its dialogue, which the same
// transaction stores: a new one, or for a dialogue consented again the one
// it has.
func (db *DB) SaveConsents(ctx context.Context, cs []model.Consent) error {
	if len(cs) == 0 {
		return nil
	}
	var (
		msgs  []newSealedRow
		texts []string
		size  int
	)
	owners := make(map[string]string)
	ledger := make([]consentRow, len(cs))
	for i, c := range cs {
		for _, m := range c.Messages {
			msgs = append(msgs, newSealedRow{
				CustomerID: m.CustomerID,
				DialogueID: m.DialogueID,
				Language:   m.Language,
				CreatedAt:  m.CreatedAt.UnixNano(),
				Key:        nullable(m.Key),
			})
			texts = append(texts, m.Text)
			size += len(m.Text) + keyring.Overhead
			owners[m.DialogueID] = m.CustomerID
		}
		ledger[i] = toConsentRow(c.Decision)
	}
	// Sealed under new keys before the transaction, so that the one writer
	// does not wait for it; only the texts of a dialogue that has a key
	// already are sealed again, within it.
	keys, keyRows, err := db.newKeys(owners)
	if err != nil {
		return fmt.Errorf("save consents: %w", err)
	}
	if err := sealTexts(msgs, texts, keys, make([]byte, 0, size), nil); err != nil {
		return fmt.Errorf("save consents: %w", err)
	}
	var resealed []string
	err = db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if len(msgs) > 0 {
			var err error
			if resealed, err = db.storeKeys(ctx, tx, keys, keyRows); err != nil {
				return err
			}
			if len(resealed) > 0 {
				if err := sealTexts(msgs, texts, keys, nil, resealed); err != nil {
					return err
				}
			}
			if _, err := db.inserts.insert(ctx, tx, insertMessages, len(msgs), func(i int, dst []any) []any {
				m := &msgs[i]
				return append(dst, m.CustomerID, m.DialogueID, m.Language, m.Sealed, m.CreatedAt, m.Key)
			}); err != nil {
				return err
			}
		}
		_, err := db.inserts.insert(ctx, tx, insertLedger, len(ledger), func(i int, dst []any) []any {
			r := &ledger[i]
			return append(dst, r.DialogueID, r.CustomerID, r.Consent, r.DecidedAt, r.Messages, r.KeyName)
		})
		return err
	})
	if err != nil {
		return unavailable(ctx, "save consents", err)
	}
	db.cacheNewKeys(keys, keyRows, resealed)
	return nil
}

// sealTexts seals texts[i] into msgs[i].Sealed under the key of its
// dialogue, appending to buf, for every message or, when only is set, for
// the messages of the dialogues it lists.
func sealTexts(msgs []newSealedRow, texts []string, keys map[string]*keyring.Key, buf []byte, only []string) error {
	var ad []byte
	for i := range msgs {
		m := &msgs[i]
		if only != nil && !slices.Contains(only, m.DialogueID) {
			continue
		}
		ad = messageAD(ad[:0], m.DialogueID, m.CustomerID, m.Language, m.CreatedAt)
		n := len(buf)
		var err error
		if buf, err = keys[m.DialogueID].Seal(buf, []byte(texts[i]), ad); err != nil {
			return err
		}
		m.Sealed = buf[n:len(buf):len(buf)]
	}
	return nil
}

// Withdraw hard-deletes every stored message of d.DialogueID and its key,
// and appends d to the ledger in one transaction. The ledger entry's
// Messages is d.Messages plus the number deleted; Withdraw returns the
// number deleted. A withdrawal that deletes something is journaled within
// the transaction (see deletions.go), and fails if the journal does. On
// SQLite it then has the database files scrubbed in the background (see
// scrubber).
func (db *DB) Withdraw(ctx context.Context, d model.Decision) (int, error) {
	var deleted, keys int
	err := db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var upTo int64
		if db.journal != nil {
			if err := tx.Raw("SELECT COALESCE(MAX(created_at), 0) FROM sealed_messages WHERE dialogue_id = ?", d.DialogueID).Scan(&upTo).Error; err != nil {
				return err
			}
		}
		res := tx.Exec("DELETE FROM sealed_messages WHERE dialogue_id = ?", d.DialogueID)
		if res.Error != nil {
			return res.Error
		}
		deleted = int(res.RowsAffected)
		if res = tx.Exec("DELETE FROM dialogue_keys WHERE dialogue_id = ?", d.DialogueID); res.Error != nil {
			return res.Error
		}
		keys = int(res.RowsAffected)
		d.Messages += deleted
		if db.journal != nil && (deleted > 0 || keys > 0) {
			if err := db.journal.Append(journal.Entry{
				Kind: journal.Withdrawal, At: d.DecidedAt.UnixNano(), DialogueID: d.DialogueID, CustomerID: d.CustomerID,
				UpTo: upTo, Messages: d.Messages, By: d.KeyName,
			}); err != nil {
				return err
			}
		}
		row := toConsentRow(d)
		return tx.Create(&row).Error
	})
	if err != nil {
		return 0, unavailable(ctx, "withdraw consent", err)
	}
	db.keys.drop(d.DialogueID)
	if deleted > 0 || keys > 0 {
		db.scrubs.request()
	}
	return deleted, nil
}

// LatestDecision returns the newest ledger entry of a dialogue, or an error
// of kind model.ErrNotFound.
func (db *DB) LatestDecision(ctx context.Context, dialogueID string) (model.Decision, error) {
	var r consentRow
	res := db.reader.WithContext(ctx).Raw(
		"SELECT id, dialogue_id, customer_id, consent, decided_at, messages, key_name FROM consents"+
			" WHERE dialogue_id = ? ORDER BY id DESC LIMIT 1", dialogueID).Scan(&r)
	switch {
	case res.Error != nil:
		return model.Decision{}, unavailable(ctx, "read consent decision", res.Error)
	case res.RowsAffected == 0:
		return model.Decision{}, model.Errorf(model.ErrNotFound, "no consent decision is recorded for this dialogue")
	}
	return fromConsentRow(r), nil
}

// DialogueOwner returns the customer a decided dialogue belongs to; ok is
// false when no decision names a customer for it.
func (db *DB) DialogueOwner(ctx context.Context, dialogueID string) (customerID string, ok bool, err error) {
	err = db.owner.QueryRowContext(db.queryContext(ctx), dialogueID).Scan(&customerID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, unavailable(ctx, "read dialogue owner", err)
	}
	return customerID, true, nil
}

// ownerQuery finds the customer of a dialogue's newest decision that names
// one ($1 reads as the first argument on SQLite and PostgreSQL alike).
const ownerQuery = "SELECT customer_id FROM consents WHERE dialogue_id = $1 AND customer_id <> '' ORDER BY id DESC LIMIT 1"

func fromConsentRow(r consentRow) model.Decision {
	return model.Decision{
		DialogueID: r.DialogueID,
		CustomerID: r.CustomerID,
		Consent:    r.Consent,
		DecidedAt:  fromNanos(r.DecidedAt),
		Messages:   r.Messages,
		KeyName:    r.KeyName,
	}
}

func toConsentRow(d model.Decision) consentRow {
	return consentRow{
		DialogueID: d.DialogueID,
		CustomerID: d.CustomerID,
		Consent:    d.Consent,
		DecidedAt:  d.DecidedAt.UnixNano(),
		Messages:   d.Messages,
		KeyName:    d.KeyName,
	}
}
