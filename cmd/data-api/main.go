// Command data-api serves the Data API: it holds chatbot messages in memory
// until the customer's consent decision and stores consented dialogues for
// analysts.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Environ(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "data-api:", err)
		os.Exit(1)
	}
}

// run starts the service and blocks until ctx ends, SIGINT or SIGTERM
// arrives, or the server fails; then it shuts down in reverse order.
func run(ctx context.Context, args, environ []string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet("data-api", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "path of the YAML configuration file (default config/data-api.yaml if present)")
	probe := flags.String("probe", "", "only check that `URL` answers 200, for container health checks")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *probe != "" {
		return probeURL(ctx, *probe)
	}
	cfg, err := config.Load(*configPath, environ)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	logOut := newLogWriter(stderr)
	defer logOut.Close()
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: logLevel(cfg.Log.Level)}))
	log.Info("starting", "config", cfg.Redacted())
	keys, err := apiKeys(cfg.Auth.Keys)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if len(keys) == 0 && cfg.Auth.OIDC.Issuer == "" {
		log.Warn("no API keys configured, nor auth.oidc.issuer: every endpoint is open to anyone who can reach the service; set auth.keys")
	}
	secret := []byte(cfg.Cursor.Secret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
		log.Info("cursor.secret not set: pagination cursors are valid for this process only")
	}

	db, err := repository.Open(ctx, repository.Options{
		Driver:     cfg.Database.Driver,
		DSN:        cfg.Database.DSN,
		MaxReaders: cfg.Database.MaxReaders,
		Logger:     log,
	})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			log.Error("close database", "err", err)
		}
	}()

	var pending service.PendingStore // nil: this process's memory
	if cfg.Dialogues.Store == "redis" {
		rp, err := repository.OpenRedis(ctx, repository.RedisOptions{
			URL:         cfg.Redis.URL,
			Prefix:      cfg.Redis.Prefix,
			TTL:         cfg.Dialogues.TTL,
			MaxPending:  cfg.Dialogues.MaxPending,
			MaxMessages: cfg.Dialogues.MaxMessages,
			MaxBytes:    cfg.Dialogues.MaxBytes,
			TakeTimeout: cfg.Redis.TakeTimeout,
		})
		if err != nil {
			return fmt.Errorf("open redis: %w", err)
		}
		defer rp.Close()
		pending = rp
	}

	metrics := api.NewMetrics()
	svc := service.New(db, service.Options{
		Pending:           pending,
		TTL:               cfg.Dialogues.TTL,
		SweepInterval:     cfg.Dialogues.SweepInterval,
		MaxPending:        cfg.Dialogues.MaxPending,
		MaxMessages:       cfg.Dialogues.MaxMessages,
		MaxBytes:          cfg.Dialogues.MaxBytes,
		Shards:            cfg.Dialogues.Shards,
		MaxTextBytes:      cfg.Limits.MaxTextBytes,
		RetentionMaxAge:   cfg.Retention.MaxAge,
		RetentionInterval: cfg.Retention.Interval,
		RetentionBatch:    cfg.Retention.BatchSize,
		CommitBatch:       cfg.Database.CommitBatch,
		Logger:            log,
		ObserveWrite:      metrics.ObserveWrite,
	})
	svcCtx, stopSvc := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { svc.Run(svcCtx) })
	defer func() {
		stopSvc()
		bg.Wait()
	}()

	handler := api.NewHandler(svc, api.Options{
		Logger:       log,
		MaxBodyBytes: int64(cfg.Limits.MaxBodyBytes),
		CursorSecret: secret,
		Keys:         keys,
		OIDC:         oidcOptions(cfg.Auth.OIDC),
		MetricsOpen:  cfg.Auth.MetricsOpen,
		Metrics:      metrics,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("listening", "addr", ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal now stops the process at once
	// Not ready from now on, but still serving for the drain delay, so that
	// load balancers stop sending traffic before connections are refused.
	handler.Drain()
	if d := cfg.Server.DrainDelay; d > 0 {
		log.Info("shutting down: not ready, still serving", "drain_delay", d.String())
		select {
		case <-time.After(d):
		case err := <-serveErr:
			return fmt.Errorf("serve: %w", err)
		}
	}
	log.Info("shutting down: finishing requests in flight", "grace", cfg.Server.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("grace period over: closing remaining connections", "err", err)
		_ = srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if pending == nil {
		log.Info("stopped; pending dialogues, which hold no consent, are dropped")
	} else {
		log.Info("stopped; pending dialogues stay in redis")
	}
	return nil
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

func logLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s)) // config.Validate has checked it
	return l
}

// apiKeys turns configured keys into the handler's, hashing plain secrets.
func apiKeys(in []config.Key) ([]api.Key, error) {
	out := make([]api.Key, 0, len(in))
	for _, k := range in {
		ak := api.Key{Name: k.Name, Roles: k.Roles}
		if k.Key != "" {
			ak.SHA256 = sha256.Sum256([]byte(k.Key))
		} else if _, err := hex.Decode(ak.SHA256[:], []byte(k.SHA256)); err != nil {
			return nil, fmt.Errorf("auth.keys: key %q: sha256: %w", k.Name, err)
		}
		out = append(out, ak)
	}
	return out, nil
}

// oidcOptions turns the configured OpenID Connect issuer into the handler's.
func oidcOptions(o config.OIDC) api.OIDC {
	return api.OIDC{
		Issuer:          o.Issuer,
		Audience:        o.Audience,
		RolesClaim:      o.RolesClaim,
		Roles:           map[string][]string{"ingest": o.Roles.Ingest, "analyst": o.Roles.Analyst, "admin": o.Roles.Admin},
		Leeway:          o.Leeway,
		RefreshInterval: o.RefreshInterval,
		FetchTimeout:    o.FetchTimeout,
	}
}
