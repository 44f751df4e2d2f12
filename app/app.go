// Package app builds Data API from its configuration, in one place for
// every caller (the entry point, its tests, the API's tests and the load
// tool's): the database, the pending store, the service, the metrics and
// the HTTP handler. It serves them until told to stop, and stops them in
// reverse order.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/data-api/data-api/api"
	"github.com/data-api/data-api/config"
	"github.com/data-api/data-api/pending"
	"github.com/data-api/data-api/repository"
	"github.com/data-api/data-api/service"
)

// Options are what the application takes beside its configuration.
type Options struct {
	// Log receives the JSON log lines, at log.level; nil discards them. A
	// Write is a whole line.
	Log   io.Writer
	Clock func() time.Time // nil: time.Now
}

// App is the whole service, built from one configuration.
type App struct {
	Pending pending.Store
	Service *service.Dialogues
	Handler *api.Handler
	Metrics *api.Metrics
	DB      *repository.DB
	Logger  *slog.Logger // writes to Options.Log

	cfg            config.Config
	log            *slog.Logger
	handlerOptions api.Options
	closeRedis     func() error // nil with the memory store
	sharedStore    bool         // pending dialogues outlive the process
}

// New opens what cfg, which must be valid, names and builds the service on
// it. The caller must Close the App.
func New(ctx context.Context, cfg config.Config, o Options) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	log := newLogger(cfg, o.Log)
	log.Info("starting", "config", cfg) // logs cfg.Redacted()
	a := &App{cfg: cfg, log: log, Logger: log}
	switch {
	case cfg.Auth.Credentials():
	case cfg.Auth.Open:
		log.Warn("auth.open: no API keys configured, nor auth.oidc.issuer, and every interface of server.addr is served: "+
			"anyone who can reach the service can read and erase every message; set auth.keys", "addr", cfg.Server.Addr)
	default:
		log.Warn("no API keys configured, nor auth.oidc.issuer: serving loopback only, open to every local process; "+
			"set auth.keys or auth.oidc.issuer to serve server.addr, or auth.open: true to serve it without authentication",
			"addr", cfg.ListenAddr(), "server.addr", cfg.Server.Addr)
	}
	if cfg.Cursor.Secret == "" {
		log.Info("cursor.secret not set: pagination cursors are valid for this process only")
	}
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		log.Info("memory limit", "bytes", limit)
	} else {
		log.Info("no memory limit: set GOMEMLIMIT (see README, Memory)")
	}

	db, err := repository.Open(ctx, dbOptions(cfg, log, o.Clock))
	if err != nil {
		return nil, err
	}
	a.DB = db
	if a.Pending, err = a.openPending(ctx, o.Clock); err != nil {
		return nil, errors.Join(err, a.Close())
	}

	// A retention purge cut short is finished in the background as the
	// service serves (see repository.DB.RetentionOwed).
	owed, err := db.RetentionOwed(ctx)
	if err != nil {
		return nil, errors.Join(err, a.Close())
	}
	a.Metrics = api.NewMetrics()
	a.Metrics.SetPendingLimits(cfg.Dialogues.MaxPending, cfg.Dialogues.MaxBytes)
	a.Metrics.SetRetention(cfg.Retention.MaxAge)
	var freeMemory func()
	if !a.sharedStore {
		// Pending dialogues live in this heap: hand back what a flood
		// that expired held, rather than keep it until the runtime's
		// next forced collection.
		freeMemory = debug.FreeOSMemory
	}
	a.Service, err = service.New(db, a.Pending, service.Options{
		Clock:             o.Clock,
		Logger:            log,
		MaxTextBytes:      cfg.Limits.MaxTextBytes,
		SweepInterval:     cfg.Dialogues.SweepInterval,
		CommitBatch:       cfg.Database.CommitBatch,
		RetentionMaxAge:   cfg.Retention.MaxAge,
		RetentionInterval: cfg.Retention.Interval,
		RetentionBatch:    cfg.Retention.BatchSize,
		RetentionOwed:     owed,
		CursorSecret:      []byte(cfg.Cursor.Secret),
		FreeMemory:        freeMemory,
		ObserveWrite:      a.Metrics.ObserveWrite,

		MaxDialogueMessages: cfg.Dialogues.MaxMessages,
	})
	if err != nil {
		return nil, errors.Join(err, a.Close())
	}
	a.Metrics.Watch(a.Service)
	keys := make([]api.Key, len(cfg.Auth.Keys))
	for i, k := range cfg.Auth.Keys {
		keys[i] = api.Key{Name: k.Name, SHA256: k.Digest(), Roles: k.Roles}
	}
	oidc := cfg.Auth.OIDC
	a.handlerOptions = api.Options{
		Logger:       log,
		RequestLog:   o.Log,
		MaxBodyBytes: int64(cfg.Limits.MaxBodyBytes),
		Keys:         keys,
		OIDC: api.OIDC{
			Issuer:          oidc.Issuer,
			Audience:        oidc.Audience,
			RolesClaim:      oidc.RolesClaim,
			Roles:           map[string][]string{"ingest": oidc.Roles.Ingest, "analyst": oidc.Roles.Analyst, "admin": oidc.Roles.Admin},
			Leeway:          oidc.Leeway,
			RefreshInterval: oidc.RefreshInterval,
			FetchTimeout:    oidc.FetchTimeout,
		},
		Clock:       o.Clock,
		MetricsOpen: cfg.Auth.MetricsOpen,
		Metrics:     a.Metrics,

		AllowedOrigins: cfg.Server.AllowedOrigins,

		ExportStallTimeout: cfg.Server.ExportStallTimeout,
	}
	a.Handler = a.HandlerFor(a.Service)
	return a, nil
}

// dbOptions are the options of the database cfg names, with its key ring
// and its deletion journal.
func dbOptions(cfg config.Config, log *slog.Logger, clock func() time.Time) repository.Options {
	enc := cfg.Encryption
	keys := make([]repository.MasterKey, len(enc.Keys))
	for i, k := range enc.Keys {
		keys[i] = repository.MasterKey{ID: k.ID, Key: k.Bytes(), File: k.File}
	}
	return repository.Options{
		Driver:      cfg.Database.Driver,
		DSN:         cfg.Database.DSN,
		MaxReaders:  cfg.Database.MaxReaders,
		MaxExports:  cfg.Database.MaxExports,
		Logger:      log,
		MasterKeys:  keys,
		ActiveKey:   enc.Active,
		KeyFile:     enc.KeyFile,
		JournalDir:  cfg.JournalDir(),
		JournalKeep: cfg.Journal.Keep,
		Clock:       clock,
	}
}

// startCommand validates cfg and returns the logger of a command other
// than serving, having logged its start.
func startCommand(cfg config.Config, o Options, command string) (*slog.Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	log := newLogger(cfg, o.Log)
	log.Info("starting", "command", command, "config", cfg) // logs cfg.Redacted()
	return log, nil
}

// newLogger returns the logger of cfg, writing JSON lines to w.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // Validate checked it
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// RotateKeys rewraps every dialogue key of the database cfg names under
// the active master key of its key ring (see repository.DB.RotateKeys) and
// returns how many it rewrapped.
func RotateKeys(ctx context.Context, cfg config.Config, o Options) (int, error) {
	log, err := startCommand(cfg, o, "rotate-key")
	if err != nil {
		return 0, err
	}
	db, err := repository.Open(ctx, dbOptions(cfg, log, o.Clock))
	if err != nil {
		return 0, err
	}
	n, err := db.RotateKeys(ctx)
	return n, errors.Join(err, db.Close())
}

// Backup writes a backup of the SQLite database cfg names to a new file at
// path, while the service serves it (see repository.DB.Backup), and logs
// what it holds.
func Backup(ctx context.Context, cfg config.Config, o Options, path string) (repository.BackupInfo, error) {
	log, err := startCommand(cfg, o, "backup")
	if err != nil {
		return repository.BackupInfo{}, err
	}
	db, err := repository.Open(ctx, dbOptions(cfg, log, o.Clock))
	if err != nil {
		return repository.BackupInfo{}, err
	}
	info, err := db.Backup(ctx, path)
	if err = errors.Join(err, db.Close()); err != nil {
		return info, err
	}
	log.Info("backed up: the file holds texts sealed and keys wrapped; it needs the key ring, which is backed up apart",
		"file", path, "backup", info.ID, "taken_at", info.TakenAt, "last_consent_id", info.LastConsentID,
		"last_decided_at", info.LastDecidedAt, "last_erasure_id", info.LastErasureID, "messages", info.Messages, "bytes", info.Bytes)
	return info, nil
}

// RestoreOptions says what Restore restores (see repository.RestoreOptions).
type RestoreOptions struct {
	From                string // a backup file of the SQLite database; empty: the database is restored in place
	AcceptLostDeletions bool
}

// Restore restores the database cfg names from a backup and re-applies
// every deletion its deletion journal recorded since, and the retention
// purge (see repository.Restore). The service must not run meanwhile.
func Restore(ctx context.Context, cfg config.Config, o Options, r RestoreOptions) (repository.Restored, error) {
	log, err := startCommand(cfg, o, "restore")
	if err != nil {
		return repository.Restored{}, err
	}
	return repository.Restore(ctx, dbOptions(cfg, log, o.Clock), repository.RestoreOptions{
		From:                r.From,
		AcceptLostDeletions: r.AcceptLostDeletions,
		RetentionMaxAge:     cfg.Retention.MaxAge,
	})
}

// HandlerFor returns a handler configured as a.Handler that serves svc, so
// that a test can put a double between the handler and the service.
func (a *App) HandlerFor(svc api.Dialogues) *api.Handler {
	return api.NewHandler(svc, a.handlerOptions)
}

// openPending opens the store of pending dialogues that the configuration
// names: this process's memory, or Redis.
func (a *App) openPending(ctx context.Context, clock func() time.Time) (pending.Store, error) {
	d := a.cfg.Dialogues
	limits := pending.Limits{TTL: d.TTL, MaxDialogues: d.MaxPending, MaxMessages: d.MaxMessages, MaxBytes: d.MaxBytes}
	if d.Store == "memory" {
		return pending.NewMemory(pending.MemoryOptions{Limits: limits, Shards: d.Shards, Clock: clock})
	}
	rc := a.cfg.Redis
	r, err := pending.OpenRedis(ctx, pending.RedisOptions{
		Limits: limits,
		URL:    rc.URL,
		Sentinel: pending.Sentinel{
			Master:        rc.Sentinel.Master,
			Addrs:         rc.Sentinel.Addrs,
			Password:      rc.Sentinel.Password,
			RedisPassword: rc.Sentinel.RedisPassword,
			DB:            rc.Sentinel.DB,
		},
		Prefix:      rc.Prefix,
		TakeTimeout: rc.TakeTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("open redis: %w", err)
	}
	a.closeRedis, a.sharedStore = r.Close, true
	return r, nil
}

// Listen opens the listener the service serves: server.addr, or loopback
// only when nothing guards the service (config.Config.ListenAddr).
func (a *App) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", a.cfg.ListenAddr())
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Run runs the background jobs (reclaiming expired dialogues, the retention
// purge) until ctx ends.
func (a *App) Run(ctx context.Context) { a.Service.Run(ctx) }

// Serve serves the API on ln, and runs the background jobs, until ctx ends or
// the server fails. Then it shuts down: not ready, but still serving, for
// server.drain_delay, so that load balancers stop sending traffic; then no
// new connections, and up to server.shutdown_grace for the requests in
// flight; then the background jobs stop.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	s := a.cfg.Server
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	jobs, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { a.Run(jobs) })
	defer func() {
		stopJobs()
		bg.Wait()
	}()

	a.log.Info("listening", "addr", ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	a.Handler.Drain()
	if d := s.DrainDelay; d > 0 {
		a.log.Info("shutting down: not ready, still serving", "drain_delay", d.String())
		select {
		case <-time.After(d):
		case err := <-serveErr:
			return fmt.Errorf("serve: %w", err)
		}
	}
	a.log.Info("shutting down: finishing requests in flight", "grace", s.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("grace period over: closing remaining connections", "err", err)
		_ = srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if a.sharedStore {
		a.log.Info("stopped; pending dialogues stay in redis")
	} else {
		a.log.Info("stopped; pending dialogues, which hold no consent, are dropped")
	}
	return nil
}

// Close closes the pending store and the database.
func (a *App) Close() error {
	var err error
	if a.closeRedis != nil {
		err = a.closeRedis()
	}
	if a.DB != nil {
		err = errors.Join(err, a.DB.Close())
	}
	return err
}
