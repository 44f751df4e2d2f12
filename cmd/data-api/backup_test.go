package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // reads the backup around the service

	"github.com/data-api/data-api/internal/canary"
	"github.com/data-api/data-api/internal/fake"
)

// TestBackupAndRestore walks the operator's procedure through the binary's
// entry point: consented canaries; a backup taken while the service serves
// and consents keep arriving, which holds every consent answered before it
// began, each whole; after it, a withdrawal and an erasure; the live
// database destroyed; the restore, refused while its key file or its
// journal is missing; then the service on the restored database serves
// every message consented before the backup but what was withdrawn or
// erased after it, which no file holds in any form.
func TestBackupAndRestore(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dsn := filepath.Join(data, "data-api.db")
	journalDir := filepath.Join(dir, "other-storage", "journal")
	backupPath := filepath.Join(dir, "backups", "data-api.db")
	if err := os.MkdirAll(filepath.Dir(backupPath), 0o700); err != nil {
		t.Fatal(err)
	}
	environ := []string{"DATA_API_DATABASE_DSN=" + dsn, "DATA_API_JOURNAL_DIR=" + journalDir}
	inst := start(t, environ)

	tag := strings.ToLower(rand.Text()[:10])
	texts := map[string][]string{} // dialogue → its texts
	var mu sync.Mutex
	consentDialogue := func(customer, dialogue string, n int) bool {
		var ts []string
		for i := range n {
			ts = append(ts, fmt.Sprintf("CANARY-%s-%s-%d", dialogue, tag, i))
			if callStatus(t, inst, "POST", "/data/"+customer+"/"+dialogue, fmt.Sprintf(`{"text": %q, "language": "en"}`, ts[i])) != 202 {
				return false
			}
		}
		mu.Lock()
		texts[dialogue] = ts
		mu.Unlock()
		return callStatus(t, inst, "POST", "/consents/"+dialogue, "true") == 200
	}
	for i := range 20 {
		if !consentDialogue(fmt.Sprintf("cust-%d", i%5), fmt.Sprintf("dlg-%d", i), 3) {
			t.Fatalf("consent of dlg-%d failed", i)
		}
	}

	// Consents keep arriving while the backup is taken.
	load, stopLoad := context.WithCancel(t.Context())
	var (
		wg         sync.WaitGroup
		answeredAt sync.Map // dialogue → when its consent answered 200
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; load.Err() == nil; i++ {
				d := fmt.Sprintf("load-%d-%d", w, i)
				if consentDialogue(fmt.Sprintf("load-%d", w), d, 1+i%4) {
					answeredAt.Store(d, time.Now())
				}
			}
		})
	}
	for n := 0; n < 20; {
		n = 0
		answeredAt.Range(func(any, any) bool { n++; return true })
		time.Sleep(5 * time.Millisecond) // until the load is under way
	}
	began := time.Now()
	logs := &fake.Log{}
	if err := run(t.Context(), []string{"backup", "--to", backupPath}, environ, logs); err != nil {
		t.Fatalf("backup: %v", err)
	}
	// Consents go on after the backup, and are lost with it.
	ended := time.Now()
	for after := false; !after; {
		answeredAt.Range(func(_, at any) bool { after = at.(time.Time).After(ended); return !after })
		time.Sleep(5 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	if st, err := os.Stat(backupPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the backup: %v, %v; want a file of mode 0600", st, err)
	}
	for _, want := range []string{`"command":"backup"`, "backed up", `"last_consent_id"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the backup's log lacks %s: %s", want, logs)
		}
	}

	// The backup: every ledger entry with all its messages, every message
	// with its entry, and every consent answered before it began.
	inBackup := backupDialogues(t, backupPath)
	answeredAt.Range(func(d, at any) bool {
		if at.(time.Time).Before(began) && inBackup[d.(string)] != len(texts[d.(string)]) {
			t.Errorf("%s, consented before the backup began, has %d of its %d messages in it", d, inBackup[d.(string)], len(texts[d.(string)]))
		}
		return true
	})
	deleted := sealedOf(t, backupPath, "dlg-3", "cust-1")

	// After the backup: a withdrawal and an erasure.
	call(t, inst, "POST", "/consents/dlg-3", "false", 200)
	call(t, inst, "DELETE", "/customers/cust-1/data", "", 200)
	inst.stop()
	if err := <-inst.done; err != nil {
		t.Fatalf("run: %v", err)
	}

	// The disk of the database is lost; its key file was kept apart.
	keyFile := dsn + ".key"
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	restore := []string{"restore", "--from", backupPath}
	if err := run(t.Context(), restore, environ, &fake.Log{}); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("restore without the key file: got %v, want an error naming it", err)
	}
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	aside := journalDir + ".aside"
	if err := os.Rename(journalDir, aside); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), restore, environ, &fake.Log{}); err == nil || !strings.Contains(err.Error(), "the deletion journal is missing") || !strings.Contains(err.Error(), "--accept-lost-deletions") {
		t.Fatalf("restore without the journal: got %v, want a refusal", err)
	}
	if _, err := os.Stat(dsn); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused restore left a database: %v", err)
	}
	if err := os.Rename(aside, journalDir); err != nil {
		t.Fatal(err)
	}
	logs = &fake.Log{}
	if err := run(t.Context(), restore, environ, logs); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, want := range []string{`"command":"restore"`, `"withdrawals":1`, `"erasures":1`, "restored: every deletion"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the restore's log lacks %s: %s", want, logs)
		}
	}

	// The service on the restored database.
	inst = start(t, environ)
	var want []string
	for d, n := range inBackup {
		if d != "dlg-3" && !slices.Contains([]string{"dlg-1", "dlg-6", "dlg-11", "dlg-16"}, d) { // cust-1's
			want = append(want, texts[d][:n]...)
		}
	}
	got := allTexts(t, inst, "/data?limit=1000")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("restored: %d messages served, want %d (every message of the backup but those withdrawn or erased after it)", len(got), len(want))
	}
	if got := call(t, inst, "GET", "/consents/dlg-3", "", 200); got["consent"] != false {
		t.Errorf("the withdrawal's decision after the restore: %v", got)
	}
	if access := customerData(t, inst, "cust-1"); strings.Contains(access, `"kind":"message"`) || !strings.Contains(access, `"kind":"erasure"`) {
		t.Errorf("cust-1's data after the restore: %s", access)
	}
	inst.stop()
	<-inst.done

	// Nowhere: not the texts, nor the sealed texts and wrapped keys that
	// yielded them, in any file of the database, the journal, or the logs.
	gone := map[string][]byte{}
	for _, d := range []string{"dlg-3", "dlg-1", "dlg-6", "dlg-11", "dlg-16"} {
		for i, s := range texts[d] {
			gone[fmt.Sprintf("%s text %d", d, i)] = []byte(s)
		}
	}
	if found := findIn(t, dir, gone); len(found) > 0 {
		t.Errorf("withdrawn or erased texts in the files: %q", found)
	}
	for _, name := range slices.Sorted(maps.Keys(gone)) {
		if strings.Contains(logs.String(), string(gone[name])) {
			t.Errorf("the restore's log holds %s", name)
		}
	}
	if found := findIn(t, data, deleted); len(found) > 0 {
		t.Errorf("sealed texts or wrapped keys of the withdrawn and erased dialogues in the restored files: %q", found)
	}
	if found := findIn(t, filepath.Dir(backupPath), deleted); len(found) != len(deleted) {
		t.Errorf("the backup holds %d of the %d sealed texts and keys: the search reads nothing", len(found), len(deleted))
	}
}

// backupDialogues opens the backup at path around the service and returns
// how many messages each consented dialogue holds, failing when a ledger
// entry lacks messages or a message its entry.
func backupDialogues(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var torn, orphans int
	if err := db.QueryRow("SELECT COUNT(*) FROM consents c WHERE c.consent AND c.messages <> (SELECT COUNT(*) FROM sealed_messages m WHERE m.dialogue_id = c.dialogue_id)").Scan(&torn); err != nil {
		t.Fatalf("read the backup: %v", err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM sealed_messages m WHERE NOT EXISTS (SELECT 1 FROM consents c WHERE c.dialogue_id = m.dialogue_id)").Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if torn != 0 || orphans != 0 {
		t.Errorf("the backup holds %d ledger entries without all their messages and %d messages without their entry", torn, orphans)
	}
	rows, err := db.Query("SELECT dialogue_id, COUNT(*) FROM sealed_messages GROUP BY dialogue_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var d string
		var n int
		if err := rows.Scan(&d, &n); err != nil {
			t.Fatal(err)
		}
		out[d] = n
	}
	return out
}

// sealedOf returns the sealed texts and wrapped keys that the backup at
// path holds of a dialogue and of a customer.
func sealedOf(t *testing.T, path, dialogue, customer string) map[string][]byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]byte{}
	for _, q := range []string{
		"SELECT 'text ' || id, sealed FROM sealed_messages WHERE dialogue_id = ? OR customer_id = ?",
		"SELECT 'key ' || dialogue_id, wrapped FROM dialogue_keys WHERE dialogue_id = ? OR customer_id = ?",
	} {
		rows, err := db.Query(q, dialogue, customer)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			var b []byte
			if err := rows.Scan(&name, &b); err != nil {
				t.Fatal(err)
			}
			out[name] = b
		}
		rows.Close()
	}
	if len(out) < 10 {
		t.Fatalf("the backup holds %d sealed texts and keys of %s and %s, want 10 or more", len(out), dialogue, customer)
	}
	return out
}

// findIn returns "file: needle" for each needle in a file under dir.
func findIn(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	found, err := canary.Find(dir, needles)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// customerData returns the right of access of a customer, as served.
func customerData(t *testing.T, inst *instance, customer string) string {
	t.Helper()
	resp, err := http.Get(inst.base + "/customers/" + customer + "/data")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("right of access: %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestBackupAndRestoreOptions: each option belongs to its command, and a
// backup needs its file.
func TestBackupAndRestoreOptions(t *testing.T) {
	environ := []string{"DATA_API_DATABASE_DSN=" + filepath.Join(t.TempDir(), "data-api.db")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backup"}, "backup needs --to FILE"},
		{[]string{"backup", "--from", "x.db"}, "-from is not an option of backup"},
		{[]string{"restore", "--to", "x.db"}, "-to is not an option of restore"},
		{[]string{"rotate-key", "--accept-lost-deletions"}, "-accept-lost-deletions is not an option of rotate-key"},
		{[]string{"--to", "x.db"}, "-to is not an option of serve"},
		{[]string{"backups"}, `unknown command "backups": the commands are backup, restore, rotate-key`},
	} {
		if err := run(t.Context(), tc.args, environ, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: got %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
