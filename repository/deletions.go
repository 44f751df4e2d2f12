package repository

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"gorm.io/gorm"

	"github.com/data-api/data-api/journal"
)

// The deletion journal (package journal) records every deletion of
// consented data outside the database: a withdrawal or an erasure appends
// its entry within its transaction, before it commits, so that no deletion
// commits unjournaled (one whose commit then fails stays journaled, and is
// re-applied: the deletion was asked for); the retention purge appends its
// cutoff with the first batch that deletes something. A withdrawal that
// deleted nothing stored (the refusal of a pending dialogue) is not
// journaled: a backup cannot hold what it would delete unless a journaled
// deletion removed it since.
//
// Re-applying an entry deletes what it deleted then and nothing since: a
// withdrawal the dialogue's messages created up to the newest it deleted
// (UpTo), an erasure the customer's; a dialogue's key goes once none of its
// messages is left, as a dialogue consented again after the deletion keeps
// its new messages and their key. It then records the decision or erasure
// in the ledger as it was recorded then. An entry whose ledger entry or
// erasure record the database holds is applied already. So re-applying is
// idempotent, and its order matters not.
//
// The rule every process follows: no database is used while the journal
// holds a withdrawal or an erasure that it lacks. Open re-applies them
// before it returns. A retention cutoff is different: the messages it
// deletes were served until the purge reached them anyway, and finishing a
// purge that a restart cut short can take as long as the purge itself
// (half an hour for 34M messages), so Open only reports the cutoff
// (RetentionOwed) for the service to purge in the background, as it purges
// by age; Restore purges it before it returns.

// reapplySlack is how far before the database's newest decision Open looks
// in the journal for deletions the database lacks: beyond the clock skew
// between instances and the time between a deletion's entry and its commit.
const reapplySlack = 10 * time.Minute

// reapplied is what a re-application of the journal did.
type reapplied struct {
	Withdrawals, Erasures int   // entries applied
	Deleted               int   // messages deleted by them
	RetentionBefore       int64 // the newest retention cutoff journaled, Unix ns; 0 if none
}

// restoring is how Restore opens the database it restores.
type restoring struct {
	// acceptLost: the operator accepts a journal that is missing or not
	// this database's, and a new one is started.
	acceptLost bool
}

// restoreUnfinished is the error of a database whose restore has not
// finished.
func restoreUnfinished(what string) error {
	return fmt.Errorf("a restore of this database (%s) has not finished: deletions made since the backup may not all be re-applied; run data-api restore again, as before, to finish it", what)
}

// readJournalState returns the database's journal_state row (the zero row
// if it has none).
func readJournalState(ctx context.Context, g *gorm.DB) (journalStateRow, error) {
	var rows []journalStateRow
	if err := g.WithContext(ctx).Raw("SELECT id, journal_id, restoring FROM journal_state WHERE id = 1").Scan(&rows).Error; err != nil {
		return journalStateRow{}, err
	}
	if len(rows) == 0 {
		return journalStateRow{}, nil
	}
	return rows[0], nil
}

// setJournalID records that the database follows the journal id.
func setJournalID(ctx context.Context, g *gorm.DB, id string) error {
	return g.WithContext(ctx).Exec("INSERT INTO journal_state (id, journal_id, restoring) VALUES (1, ?, '')"+
		" ON CONFLICT (id) DO UPDATE SET journal_id = excluded.journal_id", id).Error
}

// setRestoring flags the database as being restored (what), or clears the
// flag when what is empty.
func setRestoring(ctx context.Context, g *gorm.DB, what string) error {
	return g.WithContext(ctx).Exec("INSERT INTO journal_state (id, journal_id, restoring) VALUES (1, '', ?)"+
		" ON CONFLICT (id) DO UPDATE SET restoring = excluded.restoring", what).Error
}

// followJournal opens the deletion journal of o, checks that it is the one
// the database names (state), and re-applies what the database lacks. A
// database that names none adopts it, or a new one.
func (db *DB) followJournal(ctx context.Context, o Options, state journalStateRow, r *restoring) error {
	if o.JournalDir == "" {
		if state.JournalID != "" {
			return fmt.Errorf("this database records its deletions in deletion journal %s, but none is configured: set journal.dir to its directory", state.JournalID)
		}
		return nil
	}
	accept := r != nil && r.acceptLost
	jo := journal.Options{Dir: o.JournalDir, Ring: db.ring, Keep: o.JournalKeep, Clock: db.clock, Log: db.log}
	j, err := journal.Open(jo)
	if errors.Is(err, journal.ErrNotExist) {
		switch {
		case state.JournalID == "":
			db.log.InfoContext(ctx, "starting the deletion journal", "dir", o.JournalDir)
		case accept:
			db.log.ErrorContext(ctx, "the database's deletion journal is missing; starting a new one as told (--accept-lost-deletions)", "dir", o.JournalDir, "journal", state.JournalID)
		default:
			return fmt.Errorf("the deletion journal of this database (journal %s) is not in %s: if it moved, set journal.dir to its directory; "+
				"if it is lost, the deletions it recorded cannot be re-applied to a restored backup, and data-api restore --accept-lost-deletions starts a new one",
				state.JournalID, o.JournalDir)
		}
		j, err = journal.Create(jo)
		if errors.Is(err, fs.ErrExist) {
			j, err = journal.Open(jo) // another instance made it meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("open the deletion journal: %w", err)
	}
	if state.JournalID != "" && state.JournalID != j.ID() {
		if !accept {
			return errors.Join(fmt.Errorf("this database records its deletions in deletion journal %s, but %s holds journal %s: set journal.dir to the directory of journal %s",
				state.JournalID, o.JournalDir, j.ID(), state.JournalID), j.Close())
		}
		db.log.ErrorContext(ctx, "following another deletion journal than the database's, as told (--accept-lost-deletions)", "journal", j.ID(), "was", state.JournalID)
	}
	if state.JournalID != j.ID() {
		if err := setJournalID(ctx, db.writer, j.ID()); err != nil {
			return errors.Join(fmt.Errorf("record the deletion journal: %w", err), j.Close())
		}
	}
	db.journal = j
	return db.reapply(ctx, o.JournalDir)
}

// reapply re-applies every withdrawal and erasure of the journal in dir,
// made from reapplySlack before the database's newest decision on, that the
// database lacks, then scrubs the database files; and it notes the newest
// retention cutoff journaled since, which it leaves to the caller.
func (db *DB) reapply(ctx context.Context, dir string) error {
	newest, err := db.newestDecision(ctx)
	if err != nil {
		return fmt.Errorf("read the newest decision: %w", err)
	}
	if newest == 0 {
		return nil // an empty database holds nothing a deletion could remove
	}
	since := newest - reapplySlack.Nanoseconds()
	c, err := journal.Read(dir, db.ring, time.Unix(0, since))
	if err != nil {
		return fmt.Errorf("read the deletion journal: %w", err)
	}
	var rep reapplied
	for _, e := range c.Entries {
		switch e.Kind {
		case journal.Retention:
			rep.RetentionBefore = max(rep.RetentionBefore, e.Before)
		case journal.Withdrawal, journal.Erasure:
			if e.At < since {
				continue
			}
			applied, deleted, err := db.applyEntry(ctx, e)
			if err != nil {
				return fmt.Errorf("re-apply a %s of the deletion journal: %w", e.Kind, err)
			}
			if applied && e.Kind == journal.Withdrawal {
				rep.Withdrawals++
			} else if applied {
				rep.Erasures++
			}
			rep.Deleted += deleted
		}
	}
	db.reapplied = rep
	db.retentionJournaled.Store(rep.RetentionBefore) // journaled already
	if rep.Withdrawals+rep.Erasures == 0 {
		return nil
	}
	db.log.WarnContext(ctx, "re-applied deletions of the deletion journal that the database lacked: it was restored from a backup, or a deletion was journaled and then failed to commit",
		"withdrawals", rep.Withdrawals, "erasures", rep.Erasures, "messages_deleted", rep.Deleted)
	return db.scrubNow(ctx)
}

// RetentionOwed returns the newest retention cutoff of the deletion journal
// that Open found while re-applying it (see reapply) if the database still
// holds a message created before it, and the zero time otherwise: a purge
// cut short by a restart, or a database copied back from a backup by hand.
// The caller purges it (DeleteCreatedBefore), whatever its own retention
// age, as serving goes on.
func (db *DB) RetentionOwed(ctx context.Context) (time.Time, error) {
	before := db.reapplied.RetentionBefore
	if before == 0 {
		return time.Time{}, nil
	}
	var n int
	if err := db.writer.WithContext(ctx).Raw("SELECT COUNT(*) FROM (SELECT 1 FROM sealed_messages WHERE created_at < ? LIMIT 1) o", before).
		Scan(&n).Error; err != nil {
		return time.Time{}, unavailable(ctx, "look for messages past the journaled retention cutoff", err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, before).UTC(), nil
}

// scrubNow scrubs the database files of what was deleted, waiting for it.
func (db *DB) scrubNow(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	if err := db.scrubs.wait(ctx); err != nil {
		return err
	}
	if err := db.scrub(ctx, db.writer); err != nil {
		return fmt.Errorf("scrub the database files: %w", err)
	}
	return nil
}

// newestDecision returns the time of the newest ledger entry or erasure
// record (Unix ns), 0 when there is none.
func (db *DB) newestDecision(ctx context.Context) (int64, error) {
	var decided, erased int64
	err := db.writer.WithContext(ctx).Raw("SELECT COALESCE((SELECT decided_at FROM consents ORDER BY id DESC LIMIT 1), 0),"+
		" COALESCE((SELECT erased_at FROM erasures ORDER BY id DESC LIMIT 1), 0)").Row().Scan(&decided, &erased)
	return max(decided, erased), err
}

// applyEntry re-applies a withdrawal or erasure e unless the database
// records it, and reports whether it did and how many messages it deleted.
// On PostgreSQL re-applications take turns across processes.
func (db *DB) applyEntry(ctx context.Context, e journal.Entry) (applied bool, deleted int, err error) {
	if ok, err := recorded(db.writer.WithContext(ctx), e); ok || err != nil {
		return false, 0, err
	}
	err = db.writer.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if db.applyLock != "" {
			if err := tx.Exec(db.applyLock).Error; err != nil {
				return err
			}
		}
		// The deletions first: they wait for a deletion of the same rows
		// committing now, whose record the check below then sees.
		column, id := "dialogue_id", e.DialogueID
		if e.Kind == journal.Erasure {
			column, id = "customer_id", e.CustomerID
		}
		res := tx.Exec("DELETE FROM sealed_messages WHERE "+column+" = ? AND created_at <= ?", id, e.UpTo)
		if res.Error != nil {
			return res.Error
		}
		deleted = int(res.RowsAffected)
		res = tx.Exec("DELETE FROM dialogue_keys WHERE "+column+" = ? AND NOT EXISTS"+
			" (SELECT 1 FROM sealed_messages m WHERE m.dialogue_id = dialogue_keys.dialogue_id)", id)
		if res.Error != nil {
			return res.Error
		}
		keys := int(res.RowsAffected)
		ok, err := recorded(tx, e)
		if err != nil || ok {
			applied = deleted > 0 || keys > 0
			return err
		}
		applied = true
		if e.Kind == journal.Erasure {
			return tx.Create(&erasureRow{CustomerID: e.CustomerID, ErasedAt: e.At, Messages: e.Messages, KeyName: e.By}).Error
		}
		row := consentRow{DialogueID: e.DialogueID, CustomerID: e.CustomerID, DecidedAt: e.At, Messages: e.Messages, KeyName: e.By}
		return tx.Create(&row).Error
	})
	if err != nil {
		return false, 0, err
	}
	if e.Kind == journal.Erasure {
		db.keys.dropCustomer(e.CustomerID)
	} else {
		db.keys.drop(e.DialogueID)
	}
	return applied, deleted, nil
}

// recorded reports whether the database holds the ledger entry or erasure
// record of e.
func recorded(g *gorm.DB, e journal.Entry) (bool, error) {
	var n int
	var err error
	if e.Kind == journal.Erasure {
		err = g.Raw("SELECT COUNT(*) FROM erasures WHERE customer_id = ? AND erased_at = ?", e.CustomerID, e.At).Scan(&n).Error
	} else {
		err = g.Raw("SELECT COUNT(*) FROM consents WHERE dialogue_id = ? AND consent = ? AND decided_at = ?", e.DialogueID, false, e.At).Scan(&n).Error
	}
	return n > 0, err
}

// purgeBefore deletes every message created before t (Unix ns), in
// batches, and returns how many it deleted.
func (db *DB) purgeBefore(ctx context.Context, t int64) (int, error) {
	var total int
	for {
		n, err := db.DeleteCreatedBefore(ctx, time.Unix(0, t), insertBatch)
		total += n
		if err != nil || n < insertBatch {
			return total, err
		}
	}
}
