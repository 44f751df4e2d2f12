// Command data-api serves the Data API: it holds chatbot messages in memory
// until the customer's consent decision and stores consented dialogues for
// analysts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/data-api/data-api/app"
	"github.com/data-api/data-api/config"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Environ(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "data-api:", err)
		os.Exit(1)
	}
}

// commands are the subcommands beside serving, which is the default.
var commands = []string{"backup", "restore", "rotate-key"}

// run starts the service and blocks until ctx ends, SIGINT or SIGTERM
// arrives, or the server fails; then it shuts down in reverse order. With a
// subcommand first in args it does that instead, with the same flags and
// configuration, and returns: rotate-key rewraps every dialogue key of the
// database under the active master key; backup --to FILE writes a backup of
// the SQLite database while the service serves it; restore [--from FILE]
// puts a backup in place and re-applies every deletion recorded in the
// deletion journal since.
func run(ctx context.Context, args, environ []string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	command := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
		if !slices.Contains(commands, command) {
			return fmt.Errorf("unknown command %q: the commands are %s (or none, to serve)", command, strings.Join(commands, ", "))
		}
	}
	flags := flag.NewFlagSet("data-api", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "path of the YAML configuration file (default config/data-api.yaml if present)")
	probe := flags.String("probe", "", "only check that `URL` answers 200, for container health checks")
	to := flags.String("to", "", "backup: the new `FILE` to write the backup of the SQLite database to")
	from := flags.String("from", "", "restore: the backup `FILE` to put in place of the SQLite database (which must not exist); "+
		"without it, the database is restored in place already (PostgreSQL) and the deletion journal is re-applied to it")
	accept := flags.Bool("accept-lost-deletions", false, "restore: restore even though the deletion journal cannot vouch for every deletion made since the backup "+
		"(missing, another database's, older than the backup): what was deleted since may come back; logged as an error")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	owners := map[string]string{"probe": "serve", "to": "backup", "from": "restore", "accept-lost-deletions": "restore"}
	var misplaced error
	flags.Visit(func(f *flag.Flag) {
		if owner, ok := owners[f.Name]; ok && owner != command && misplaced == nil {
			misplaced = fmt.Errorf("-%s is not an option of %s", f.Name, command)
		}
	})
	switch {
	case misplaced != nil:
		return misplaced
	case *probe != "":
		return probeURL(ctx, *probe)
	case command == "backup" && *to == "":
		return errors.New("backup needs --to FILE, the new file to write the backup to")
	}
	cfg, err := config.Load(*configPath, environ)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	logOut := newLogWriter(stderr)
	defer logOut.Close()
	switch command {
	case "rotate-key":
		_, err := app.RotateKeys(ctx, cfg, app.Options{Log: logOut})
		return err
	case "backup":
		_, err := app.Backup(ctx, cfg, app.Options{Log: logOut}, *to)
		return err
	case "restore":
		_, err := app.Restore(ctx, cfg, app.Options{Log: logOut}, app.RestoreOptions{From: *from, AcceptLostDeletions: *accept})
		return err
	}
	// An operator's GOGC is theirs to keep; otherwise the collector waits
	// for the heap to grow by heapFloor at least.
	gogc := slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, "GOGC=") })
	if !gogc {
		defer keepHeapFloor(heapFloor)()
	}
	a, err := app.New(ctx, cfg, app.Options{Log: logOut})
	if err != nil {
		return err
	}
	if gogc {
		a.Logger.Info("GOGC set: no heap floor")
	} else {
		a.Logger.Info("heap floor: the collector waits for the heap to grow by this much at least", "bytes", heapFloor)
	}
	defer func() {
		if err := a.Close(); err != nil {
			a.Logger.Error("close", "err", err)
		}
	}()
	ln, err := a.Listen()
	if err != nil {
		return err
	}
	// Once shutdown begins, a second signal stops the process at once.
	context.AfterFunc(ctx, stop)
	return a.Serve(ctx, ln)
}

// probeURL succeeds when url answers 200 within a few seconds.
func probeURL(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe: %s answered %s", url, resp.Status)
	}
	return nil
}
