// Command data-api serves the Data API: it holds chatbot messages in memory
// until the customer's consent decision and stores consented dialogues for
// analysts.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
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
const commands = "rotate-key"

// run starts the service and blocks until ctx ends, SIGINT or SIGTERM
// arrives, or the server fails; then it shuts down in reverse order. With
// the subcommand rotate-key first in args it rewraps every dialogue key of
// the database under the active master key instead, and returns.
func run(ctx context.Context, args, environ []string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	command := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
		if command != "rotate-key" {
			return fmt.Errorf("unknown command %q: the commands are %s (or none, to serve)", command, commands)
		}
	}
	flags := flag.NewFlagSet("data-api", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "path of the YAML configuration file (default config/data-api.yaml if present)")
	probe := flags.String("probe", "", "only check that `URL` answers 200, for container health checks")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if *probe != "" {
		if command != "serve" {
			return fmt.Errorf("-probe is not an option of %s", command)
		}
		return probeURL(ctx, *probe)
	}
	cfg, err := config.Load(*configPath, environ)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	logOut := newLogWriter(stderr)
	defer logOut.Close()
	if command == "rotate-key" {
		_, err := app.RotateKeys(ctx, cfg, app.Options{Log: logOut})
		return err
	}
	a, err := app.New(ctx, cfg, app.Options{Log: logOut})
	if err != nil {
		return err
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
