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
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"gocloud.dev/blob"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agent"
	"github.com/runnel-ci/runnel/internal/agentcmd"
	"github.com/runnel-ci/runnel/internal/agentserver"
	"github.com/runnel-ci/runnel/internal/api"
	"github.com/runnel-ci/runnel/internal/artifact"
	"github.com/runnel-ci/runnel/internal/bus"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/envflag"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/event/cdevent"
	"github.com/runnel-ci/runnel/internal/event/notify"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/gitdef/configext"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
	"github.com/runnel-ci/runnel/internal/streamrpc"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
	"github.com/runnel-ci/runnel/internal/web"
	"github.com/runnel-ci/runnel/internal/worker"
)

// serverConfig is `runnel server`'s configuration, from flags and RUNNEL_* env.
type serverConfig struct {
	Addr          string
	GRPCAddr      string
	GRPCTLSCert   string
	GRPCTLSKey    string
	AgentLabels   string
	OfflineAfter  time.Duration
	DataDir       string
	Database      string
	AdminToken    string
	AgentCapacity int
	AgentBackend  string
	LeaseDuration time.Duration
	LogCapBytes   int64
	LogLevel      string
	// ExternalURL is the server's URL as forges reach it, for the webhook
	// URLs the API shows ("": from each request's Host).
	ExternalURL string
	// BlobURL is where artifacts and caches are kept ("": file://<data dir>/blobs).
	BlobURL           string
	ArtifactRetention time.Duration
	CacheRetention    time.Duration
	MaxArtifactSize   int64
	MaxCacheSize      int64
	// CronMinInterval is the smallest gap allowed between two ticks of a
	// cron schedule; CronCatchUp runs one missed tick after downtime.
	CronMinInterval time.Duration
	CronCatchUp     bool
	// ConfigExtension* configure the Drone-compatible configuration
	// extension asked for each run's definition ("" endpoint: none).
	ConfigExtensionEndpoint string
	ConfigExtensionSecret   string
	ConfigExtensionTimeout  time.Duration
	// WebhookDeliveryRetention: how long delivery ids are remembered for
	// de-duplication (0: forever).
	WebhookDeliveryRetention time.Duration
	// EventSinks receive every run's CDEvents (CloudEvents over HTTP).
	EventSinks []string
	// EventSource is the CDEvents source of this installation.
	EventSource string
	// EventMaxAge: how long an undeliverable event is retried.
	EventMaxAge time.Duration
	// SMTP server for email notifications ("" addr: email is not sent).
	SMTPAddr, SMTPFrom, SMTPUsername, SMTPPassword, SMTPTLS string
	// NotifyAttempts bounds the attempts of a failing notification channel.
	NotifyAttempts int
	// Registry is where image builds push (host[:port]; "": image builds
	// are refused); RegistryCredential the credential they log in with.
	Registry           string
	RegistryCredential string
	// PprofAddr serves Go's profiler (net/http/pprof) on its own listener
	// ("": off).
	PprofAddr string
}

func (c *serverConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", envOr("RUNNEL_ADDR", "127.0.0.1:8080"), "HTTP listen `address` (RUNNEL_ADDR)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", envOr("RUNNEL_GRPC_ADDR", "127.0.0.1:9090"), "gRPC listen `address` for remote agents (RUNNEL_GRPC_ADDR); \"off\" disables it")
	fs.StringVar(&c.GRPCTLSCert, "grpc-tls-cert", os.Getenv("RUNNEL_GRPC_TLS_CERT"), "PEM certificate `file` for the gRPC port (RUNNEL_GRPC_TLS_CERT); without it gRPC is plaintext")
	fs.StringVar(&c.GRPCTLSKey, "grpc-tls-key", os.Getenv("RUNNEL_GRPC_TLS_KEY"), "PEM private key `file` for --grpc-tls-cert (RUNNEL_GRPC_TLS_KEY)")
	fs.StringVar(&c.AgentLabels, "embedded-agent-labels", os.Getenv("RUNNEL_EMBEDDED_AGENT_LABELS"), "labels of the in-process agent, `k=v,…` (RUNNEL_EMBEDDED_AGENT_LABELS); os and arch are added")
	fs.DurationVar(&c.OfflineAfter, "agent-offline-after", envDuration("RUNNEL_AGENT_OFFLINE_AFTER", 30*time.Second), "an agent not heard from for this `long` is offline (RUNNEL_AGENT_OFFLINE_AFTER)")
	fs.StringVar(&c.DataDir, "data-dir", envOr("RUNNEL_DATA_DIR", "./runnel-data"), "`directory` for the SQLite database, workspaces and state (RUNNEL_DATA_DIR)")
	fs.StringVar(&c.Database, "database", envOr("RUNNEL_DATABASE", ""), "database: empty for SQLite in the data dir, or a postgres:// `URL` (RUNNEL_DATABASE)")
	fs.StringVar(&c.AdminToken, "admin-token", os.Getenv("RUNNEL_ADMIN_TOKEN"), "ensure an admin API token with this `value` (RUNNEL_ADMIN_TOKEN); without it the first start generates one and prints it once")
	fs.IntVar(&c.AgentCapacity, "embedded-agent-capacity", envInt("RUNNEL_EMBEDDED_AGENT_CAPACITY", runtime.NumCPU()), "jobs the in-process agent runs at once; 0 disables it (RUNNEL_EMBEDDED_AGENT_CAPACITY)")
	fs.StringVar(&c.AgentBackend, "embedded-agent-backend", envOr("RUNNEL_EMBEDDED_AGENT_BACKEND", "auto"), "where the in-process agent runs steps: local, docker or auto, as `runnel agent --backend` (RUNNEL_EMBEDDED_AGENT_BACKEND)")
	fs.DurationVar(&c.LeaseDuration, "lease-duration", envDuration("RUNNEL_LEASE_DURATION", scheduler.DefaultLeaseDuration), "how long an agent's claim on a job lasts without renewal (RUNNEL_LEASE_DURATION)")
	fs.Int64Var(&c.LogCapBytes, "log-cap-bytes", int64(envInt("RUNNEL_LOG_CAP_BYTES", scheduler.DefaultLogCap)), "largest stored log per step; older lines are dropped past it (RUNNEL_LOG_CAP_BYTES)")
	fs.StringVar(&c.LogLevel, "log-level", envOr("RUNNEL_LOG_LEVEL", "info"), "debug, info, warn or error (RUNNEL_LOG_LEVEL)")
	fs.StringVar(&c.ExternalURL, "external-url", os.Getenv("RUNNEL_EXTERNAL_URL"), "the server's base `URL` as forges reach it, e.g. https://ci.example.com, for webhook URLs (RUNNEL_EXTERNAL_URL); default: from each request's Host and X-Forwarded-Proto")
	fs.StringVar(&c.BlobURL, "blob-url", os.Getenv("RUNNEL_BLOB_URL"), "`URL` of the store for artifacts and caches: file:///abs/dir, or s3://bucket?region=…&endpoint=…&use_path_style=true (RUNNEL_BLOB_URL); default file://<data dir>/blobs")
	fs.DurationVar(&c.ArtifactRetention, "artifact-retention", envDuration("RUNNEL_ARTIFACT_RETENTION", 720*time.Hour), "how `long` artifacts are kept after their upload; 0 keeps them until their run is deleted (RUNNEL_ARTIFACT_RETENTION)")
	fs.DurationVar(&c.CacheRetention, "cache-retention", envDuration("RUNNEL_CACHE_RETENTION", 168*time.Hour), "a cache not saved or restored for this `long` is deleted; 0 keeps caches until their pipeline is deleted (RUNNEL_CACHE_RETENTION)")
	fs.Int64Var(&c.MaxArtifactSize, "max-artifact-size", int64(envInt("RUNNEL_MAX_ARTIFACT_SIZE", artifact.DefaultMaxArtifactBytes)), "largest artifact in `bytes` (RUNNEL_MAX_ARTIFACT_SIZE)")
	fs.Int64Var(&c.MaxCacheSize, "max-cache-size", int64(envInt("RUNNEL_MAX_CACHE_SIZE", artifact.DefaultMaxCacheBytes)), "largest cache entry in `bytes` (RUNNEL_MAX_CACHE_SIZE)")
	fs.DurationVar(&c.CronMinInterval, "cron-min-interval", envDuration("RUNNEL_CRON_MIN_INTERVAL", cron.DefaultMinInterval), "smallest `interval` allowed between two ticks of a cron schedule; shorter schedules are refused when saved and not run (RUNNEL_CRON_MIN_INTERVAL)")
	fs.StringVar(&c.ConfigExtensionEndpoint, "config-extension-endpoint", os.Getenv("RUNNEL_CONFIG_EXTENSION_ENDPOINT"), "`URL` of a configuration extension (Drone's protocol) asked for each run's definition before the repository file or stored spec (RUNNEL_CONFIG_EXTENSION_ENDPOINT)")
	fs.StringVar(&c.ConfigExtensionSecret, "config-extension-secret", os.Getenv("RUNNEL_CONFIG_EXTENSION_SECRET"), "shared `secret` the requests to the configuration extension are signed with (RUNNEL_CONFIG_EXTENSION_SECRET)")
	fs.DurationVar(&c.ConfigExtensionTimeout, "config-extension-timeout", envDuration("RUNNEL_CONFIG_EXTENSION_TIMEOUT", configext.DefaultTimeout), "how `long` to wait for the configuration extension; a run whose extension does not answer in time fails (RUNNEL_CONFIG_EXTENSION_TIMEOUT)")
	fs.DurationVar(&c.WebhookDeliveryRetention, "webhook-delivery-retention", envDuration("RUNNEL_WEBHOOK_DELIVERY_RETENTION", 720*time.Hour), "how `long` webhook deliveries are remembered, so that a redelivery is answered as a replay instead of starting runs again; 0 keeps them (RUNNEL_WEBHOOK_DELIVERY_RETENTION)")
	fs.Func("events-sinks", "comma-separated http(s) `URLs` that receive every run's CDEvents as CloudEvents (RUNNEL_EVENTS_SINKS)", func(v string) error {
		c.EventSinks = splitList(v)
		return nil
	})
	c.EventSinks = splitList(os.Getenv("RUNNEL_EVENTS_SINKS"))
	fs.StringVar(&c.EventSource, "events-source", os.Getenv("RUNNEL_EVENTS_SOURCE"), "the CDEvents `source` (a URI) naming this installation (RUNNEL_EVENTS_SOURCE); default: --external-url, else /runnel/<host name>")
	fs.DurationVar(&c.EventMaxAge, "events-max-age", envDuration("RUNNEL_EVENTS_MAX_AGE", 72*time.Hour), "how `long` an event that a sink refuses is retried before it is dropped (RUNNEL_EVENTS_MAX_AGE)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", os.Getenv("RUNNEL_SMTP_ADDR"), "SMTP server `host:port` for email notifications (RUNNEL_SMTP_ADDR); without it email channels fail (recorded on the run)")
	fs.StringVar(&c.SMTPFrom, "smtp-from", envOr("RUNNEL_SMTP_FROM", "runnel@localhost"), "sender `address` of email notifications (RUNNEL_SMTP_FROM)")
	fs.StringVar(&c.SMTPUsername, "smtp-username", os.Getenv("RUNNEL_SMTP_USERNAME"), "SMTP `user` (AUTH PLAIN, over TLS or to localhost only) (RUNNEL_SMTP_USERNAME)")
	c.SMTPPassword = os.Getenv("RUNNEL_SMTP_PASSWORD")
	fs.StringVar(&c.SMTPTLS, "smtp-tls", envOr("RUNNEL_SMTP_TLS", ""), "SMTP transport `security`: empty (STARTTLS when offered), starttls (required), tls (implicit, port 465) or none (RUNNEL_SMTP_TLS)")
	fs.IntVar(&c.NotifyAttempts, "notify-attempts", envInt("RUNNEL_NOTIFY_ATTEMPTS", 5), "attempts of a failing notification channel (1s apart, doubling) before its failure is recorded on the run (RUNNEL_NOTIFY_ATTEMPTS)")
	fs.StringVar(&c.Registry, "registry", os.Getenv("RUNNEL_REGISTRY"), "container registry `host[:port]` that image builds (/v1/repositories, /v1/builds) push to (RUNNEL_REGISTRY); without it builds are refused")
	fs.StringVar(&c.RegistryCredential, "registry-credential", os.Getenv("RUNNEL_REGISTRY_CREDENTIAL"), "`id or name` of a credential (/api/v1/credentials: kind basic or a token kind, not limited to a project) image builds log in to --registry with (RUNNEL_REGISTRY_CREDENTIAL); looked up when a build starts; default: push anonymously")
	fs.StringVar(&c.PprofAddr, "pprof-addr", os.Getenv("RUNNEL_PPROF_ADDR"), "serve Go's profiler (/debug/pprof/) on this `address`, e.g. 127.0.0.1:6060, for diagnosing CPU and memory use (RUNNEL_PPROF_ADDR); unauthenticated: bind it to loopback; default off")
	fs.BoolVar(&c.CronCatchUp, "cron-catch-up", envBool("RUNNEL_CRON_CATCH_UP", true), "after downtime that missed ticks of a cron schedule, run once for the latest missed tick; false skips to the next tick (RUNNEL_CRON_CATCH_UP)")
}

func (c *serverConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--addr %q: %v (want host:port, e.g. 127.0.0.1:8080)", c.Addr, err)
	}
	if c.GRPCAddr != "off" {
		if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			return fmt.Errorf("--grpc-addr %q: %v (want host:port, e.g. 127.0.0.1:9090, or off)", c.GRPCAddr, err)
		}
	}
	if (c.GRPCTLSCert == "") != (c.GRPCTLSKey == "") {
		return errors.New("--grpc-tls-cert and --grpc-tls-key go together")
	}
	if _, err := worker.ParseLabels(c.AgentLabels); err != nil {
		return fmt.Errorf("--embedded-agent-labels: %v", err)
	}
	if c.OfflineAfter < time.Second {
		return errors.New("--agent-offline-after must be at least 1s")
	}
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		return fmt.Errorf("--database %q: give a postgres:// URL, or leave it empty for SQLite in the data dir", c.Database)
	}
	if c.AgentCapacity < 0 {
		return errors.New("--embedded-agent-capacity must be 0 or more")
	}
	if err := agentcmd.CheckBackendKind(c.AgentBackend); err != nil {
		return fmt.Errorf("--embedded-agent-backend %v", err)
	}
	if c.LeaseDuration < time.Second {
		return errors.New("--lease-duration must be at least 1s")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return errors.New("--admin-token must be at least 16 characters")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.BlobURL != "" {
		u, err := url.Parse(c.BlobURL)
		if err != nil || (u.Scheme != "file" && u.Scheme != "s3") {
			return fmt.Errorf("--blob-url %q: want file:///abs/dir or s3://bucket?region=…", c.BlobURL)
		}
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("--external-url %q: want an http(s) URL without query, e.g. https://ci.example.com", c.ExternalURL)
		}
	}
	if c.ArtifactRetention < 0 || c.CacheRetention < 0 {
		return errors.New("--artifact-retention and --cache-retention must be 0 (keep) or more")
	}
	if c.MaxArtifactSize <= 0 || c.MaxCacheSize <= 0 {
		return errors.New("--max-artifact-size and --max-cache-size must be positive (bytes)")
	}
	if c.ConfigExtensionEndpoint != "" {
		u, err := url.Parse(c.ConfigExtensionEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--config-extension-endpoint %q: want an http(s) URL", c.ConfigExtensionEndpoint)
		}
		if c.ConfigExtensionSecret == "" {
			return errors.New("--config-extension-endpoint needs --config-extension-secret (RUNNEL_CONFIG_EXTENSION_SECRET): requests are signed with it")
		}
	}
	if c.WebhookDeliveryRetention < 0 {
		return errors.New("--webhook-delivery-retention must be 0 (keep) or more")
	}
	if c.ConfigExtensionTimeout <= 0 {
		return errors.New("--config-extension-timeout must be positive")
	}
	for _, sink := range c.EventSinks {
		u, err := url.Parse(sink)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--events-sinks: %q is not an http(s) URL", safeurl.Redact(sink))
		}
	}
	switch c.SMTPTLS {
	case "", "starttls", "tls", "none":
	default:
		return fmt.Errorf("--smtp-tls %q: want starttls, tls, none or empty", c.SMTPTLS)
	}
	if c.SMTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.SMTPAddr); err != nil {
			return fmt.Errorf("--smtp-addr %q: %v (want host:port, e.g. smtp.example.com:587)", c.SMTPAddr, err)
		}
	}
	if c.NotifyAttempts < 1 {
		return errors.New("--notify-attempts must be at least 1")
	}
	if c.Registry != "" {
		if err := imagebuild.CheckRegistry(c.Registry); err != nil {
			return fmt.Errorf("--registry: %w", err)
		}
	}
	if c.RegistryCredential != "" {
		if c.Registry == "" {
			return errors.New("--registry-credential: give --registry too: the credential logs in to it")
		}
		if strings.ContainsFunc(c.RegistryCredential, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("--registry-credential: must be a credential's id (cred_…) or name, got %q", c.RegistryCredential)
		}
	}
	if c.EventMaxAge <= 0 {
		return errors.New("--events-max-age must be positive")
	}
	if c.CronMinInterval < time.Second {
		return fmt.Errorf("--cron-min-interval %s: must be at least 1s (cron ticks are whole seconds)", c.CronMinInterval)
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// sweepDeliveries forgets webhook deliveries older than the retention, at
// start and hourly. Every replica sweeps; the deletes are idempotent.
func sweepDeliveries(ctx context.Context, st store.Store, retention time.Duration, log *slog.Logger) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := st.DeleteDeliveriesBefore(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("webhook delivery retention sweep failed", "err", err)
		case n > 0:
			log.Info("forgot old webhook deliveries", "count", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pipelineCredential opens the credential a pipeline names for its
// repository, if the pipeline's project may use it.
func pipelineCredential(r secret.Resolver, haveKeys bool) gitdef.CredentialOpener {
	return func(ctx context.Context, pipelineID, id string) (*runnel.Credential, error) {
		if !haveKeys {
			return nil, fmt.Errorf("credential %s: this server has no secrets key to open it with (see docs/security.md)", id)
		}
		m, err := r.Credentials(ctx, pipelineID, []string{id})
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", id, err)
		}
		c, ok := m[id]
		if !ok {
			return nil, fmt.Errorf("credential %s is not usable by pipeline %s (unknown, deleted, or limited to another project)", id, pipelineID)
		}
		return &c, nil
	}
}

func envOr(k, def string) string                            { return envflag.Or(k, def) }
func envInt(k string, def int) int                          { return envflag.Int(k, def) }
func envBool(k string, def bool) bool                       { return envflag.Bool(k, def) }
func envDuration(k string, def time.Duration) time.Duration { return envflag.Duration(k, def) }

func cmdServer(args []string, stdout, stderr io.Writer) int {
	var cfg serverConfig
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: runnel server [flags]\n\nRuns the control plane: the HTTP API, the scheduler and an in-process agent.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "runnel server:", err)
		return exitInvalid
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := startServer(ctx, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "runnel server:", err)
		return exitFailed
	}
	if err := srv.Wait(); err != nil {
		fmt.Fprintln(stderr, "runnel server:", err)
		return exitFailed
	}
	return exitOK
}

// server is a running control plane; tests start it on port 0.
type server struct {
	Addr     string // the address it listens on
	GRPCAddr string // the gRPC address ("" when off)
	st       store.Store
	bucket   *blob.Bucket
	group    *errgroup.Group
	stop     context.CancelFunc
}

func (s *server) Wait() error {
	err := s.group.Wait()
	s.bucket.Close()
	s.st.Close()
	return err
}

func (s *server) Stop() error {
	s.stop()
	return s.Wait()
}

func startServer(parent context.Context, cfg serverConfig, stdout, stderr io.Writer) (*server, error) {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	dsn := cfg.Database
	if dsn == "" {
		dsn = filepath.Join(cfg.DataDir, "runnel.db")
	}
	ctx, cancel := context.WithCancel(parent)
	st0, err := sqlstore.Open(ctx, dsn, sqlstore.Options{Logger: log, EventSinks: cfg.EventSinks})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open database: %w", err)
	}
	var st store.Store = st0
	var bucket *blob.Bucket
	fail := func(err error) (*server, error) {
		cancel()
		if bucket != nil {
			bucket.Close()
		}
		st.Close()
		return nil, err
	}
	if err := ensureAdminToken(ctx, st, cfg.AdminToken, stdout); err != nil {
		return fail(err)
	}
	// Secrets are sealed with the server's key: RUNNEL_SECRET_KEY (every
	// replica needs the same one), else a key file generated in the data dir.
	keyring, err := secret.Load(cfg.DataDir, os.Getenv("RUNNEL_SECRET_KEY"), os.Getenv("RUNNEL_SECRET_OLD_KEYS"))
	if err != nil {
		return fail(fmt.Errorf("secret key: %w", err))
	}
	if n, err := keyring.Reencrypt(ctx, st); err != nil {
		return fail(fmt.Errorf("re-encrypt secrets under the current key: %w", err))
	} else if n > 0 {
		log.Info("secrets re-encrypted under the current key", "count", n, "key_id", keyring.KeyID())
	}
	// Artifacts and caches: bytes in the blob store, records in the database.
	blobURL := cfg.BlobURL
	if blobURL == "" {
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "blobs"))
		if err != nil {
			return fail(fmt.Errorf("blob directory: %w", err))
		}
		blobURL = (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}).String()
		if strings.HasPrefix(dsn, "postgres") {
			log.Warn("artifacts and caches are kept in this replica's data dir; replicas sharing a database need a shared --blob-url (S3 or a shared directory)", "blob_url", blobURL)
		}
	}
	bucket, err = artifact.OpenBucket(ctx, blobURL)
	if err != nil {
		return fail(fmt.Errorf("--blob-url: %w", err))
	}
	artifacts := artifact.New(artifact.Options{Store: st, Bucket: bucket, ArtifactRetention: cfg.ArtifactRetention,
		CacheRetention: cfg.CacheRetention, MaxArtifactBytes: cfg.MaxArtifactSize, MaxCacheBytes: cfg.MaxCacheSize, Logger: log})
	catalog := action.Builtins()
	// The bus carries wake-ups and cancellations: between the replicas of
	// one PostgreSQL database through LISTEN/NOTIFY, in process on SQLite
	// (one server per SQLite file).
	var b bus.Bus
	if strings.HasPrefix(dsn, "postgres") {
		pb, err := bus.NewPostgres(ctx, dsn, log)
		if err != nil {
			return fail(fmt.Errorf("listen for other replicas: %w", err))
		}
		b = pb
	} else {
		b = bus.NewLocal()
	}
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	// Writes that record events or log lines wake the live streams, on
	// every replica.
	hub := event.NewHub(event.HubOptions{Store: st0, Bus: b, Logger: log})
	st = event.Hinting{Store: st0, Hub: hub}
	resolver := secret.Resolver{Store: st, Keyring: keyring}
	defs := &gitdef.Source{Credentials: pipelineCredential(resolver, keyring != nil)}
	if cfg.ConfigExtensionEndpoint != "" {
		defs.Extension = &configext.Client{Endpoint: cfg.ConfigExtensionEndpoint, Secret: cfg.ConfigExtensionSecret,
			Timeout: cfg.ConfigExtensionTimeout}
	}
	if cfg.ExternalURL != "" {
		base := strings.TrimRight(cfg.ExternalURL, "/")
		defs.RunLink = func(pipelineID string) string { return base + "/api/v1/pipelines/" + pipelineID + "/runs" }
	}
	var runLink func(string) string
	if cfg.ExternalURL != "" {
		base := strings.TrimRight(cfg.ExternalURL, "/")
		runLink = func(runID string) string { return base + "/api/v1/pipelines/runs/" + runID }
	}
	sched := scheduler.New(scheduler.Options{Store: st, Catalog: catalog, Logger: log, LeaseDuration: cfg.LeaseDuration,
		LogCapBytes: cfg.LogCapBytes, Bus: b, OfflineAfter: cfg.OfflineAfter,
		Secrets: resolver, Storage: artifacts, Definitions: imagebuild.SkipManaged(defs)})
	images := imagebuild.New(imagebuild.Options{Store: st, Runs: sched, Catalog: catalog, Registry: cfg.Registry,
		RegistryCredential: cfg.RegistryCredential, Credentials: pipelineCredential(resolver, keyring != nil)})
	agentID, err := embeddedAgentID(cfg.DataDir)
	if err != nil {
		return fail(err)
	}
	if err := sched.Recover(ctx, agentID); err != nil {
		return fail(err)
	}
	if cfg.AgentCapacity > 0 {
		labels, _ := worker.ParseLabels(cfg.AgentLabels)
		labels = agentcmd.WithPlatformLabels(labels)
		host, _ := os.Hostname()
		if err := sched.RegisterLocalAgent(ctx, &store.Agent{ID: agentID, Name: "embedded@" + host, Kind: "embedded",
			ReportedLabels: labels, Capacity: cfg.AgentCapacity, Version: version, Hostname: host,
			Platform: runtime.GOOS + "/" + runtime.GOARCH}); err != nil {
			return fail(fmt.Errorf("register the embedded agent: %w", err))
		}
	}
	var grpcLn net.Listener
	var grpcSrv *grpc.Server
	if cfg.GRPCAddr != "" && cfg.GRPCAddr != "off" {
		as := agentserver.NewServer(agentserver.ServerOptions{Store: st, Scheduler: sched, Logger: log})
		opts := as.GRPCOptions()
		if cfg.GRPCTLSCert != "" {
			creds, err := credentials.NewServerTLSFromFile(cfg.GRPCTLSCert, cfg.GRPCTLSKey)
			if err != nil {
				return fail(fmt.Errorf("--grpc-tls-cert/--grpc-tls-key: %w", err))
			}
			opts = append(opts, grpc.Creds(creds))
		}
		grpcSrv = grpc.NewServer(opts...)
		as.Attach(grpcSrv)
		streamrpc.NewServer(streamrpc.Options{Source: hub, Tokens: st, Logger: log}).Attach(grpcSrv)
		grpcLn, err = net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return fail(fmt.Errorf("listen (gRPC): %w", err))
		}
	}
	handler := api.New(api.Config{Store: st, Runs: runControl{s: sched, cronMin: cfg.CronMinInterval}, Agents: sched, Secrets: keyring, Artifacts: artifacts, Catalog: catalog, Logger: log, LogCapBytes: cfg.LogCapBytes, ExternalURL: cfg.ExternalURL, Git: defs, Events: hub, Approvals: sched, Images: images, UI: web.New()}).Handler()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		if grpcLn != nil {
			grpcLn.Close()
		}
		return fail(fmt.Errorf("listen: %w", err))
	}
	httpSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sched.Run(gctx) })
	crons := cron.NewService(cron.Options{Store: st, MinInterval: cfg.CronMinInterval,
		CatchUp: cfg.CronCatchUp, Logger: log, Trigger: sched.Trigger})
	g.Go(func() error { return crons.Run(gctx) })
	g.Go(func() error { return artifacts.Run(gctx) })
	g.Go(func() error { return hub.Run(gctx) })
	source := cfg.EventSource
	if source == "" {
		source = cfg.ExternalURL
	}
	if source == "" {
		host, _ := os.Hostname()
		source = "/runnel/" + host
	}
	var mailer *notify.Mailer
	if cfg.SMTPAddr != "" {
		mailer = &notify.Mailer{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUsername,
			Password: cfg.SMTPPassword, TLS: cfg.SMTPTLS}
	}
	notifier := event.NewNotifier(event.NotifierOptions{Store: st, Plans: sched, Secrets: resolver, RunLink: runLink, Mailer: mailer, MaxAttempts: cfg.NotifyAttempts, Logger: log})
	deliverer := event.NewDeliverer(event.DelivererOptions{Store: st0, Logger: log, MaxAge: cfg.EventMaxAge, Notifier: notifier, Images: images,
		CDEvents: cdevent.Config{Source: source, APIBase: strings.TrimRight(cfg.ExternalURL, "/")}})
	g.Go(func() error { return deliverer.Run(gctx) })
	if cfg.WebhookDeliveryRetention > 0 {
		g.Go(func() error { return sweepDeliveries(gctx, st, cfg.WebhookDeliveryRetention, log) })
	}
	if cfg.AgentCapacity > 0 {
		be, err := agentcmd.NewBackend(cfg.AgentBackend, filepath.Join(cfg.DataDir, "workspaces"), 0, log)
		if err != nil {
			ln.Close()
			if grpcLn != nil {
				grpcLn.Close()
			}
			return fail(err)
		}
		// Processes and workspaces of jobs that died with a previous process
		// of this server (kill -9) are stopped and removed before new work.
		if err := be.CleanupStale(ctx); err != nil {
			log.Warn("cleaning up after the previous server process", "err", err)
		}
		ag := &agent.Agent{ID: agentID, Capacity: cfg.AgentCapacity, Logger: log,
			Source:   scheduler.LocalSource{S: sched, AgentID: agentID},
			Executor: &engine.Executor{Backend: be, Actions: catalog, Docker: agentcmd.DockerEngine()}}
		g.Go(func() error { return ag.Run(gctx) })
	}
	g.Go(func() error {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		return httpSrv.Shutdown(sctx)
	})
	if cfg.PprofAddr != "" {
		pln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			cancel()
			_ = g.Wait()
			return fail(fmt.Errorf("--pprof-addr: %w", err))
		}
		psrv := &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := psrv.Serve(pln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return psrv.Close()
		})
		log.Info("profiler listening", "addr", "http://"+pln.Addr().String()+"/debug/pprof/")
	}
	grpcAddr := ""
	if grpcSrv != nil {
		grpcAddr = grpcLn.Addr().String()
		g.Go(func() error { return grpcSrv.Serve(grpcLn) })
		g.Go(func() error {
			<-gctx.Done()
			// Long polls and sessions would hold GracefulStop: give them a
			// moment, then cut them (agents reconnect to another replica).
			t := time.AfterFunc(3*time.Second, grpcSrv.Stop)
			defer t.Stop()
			grpcSrv.GracefulStop()
			return nil
		})
	}
	bb := b
	b = nil // closed when the group ends, not on return
	g.Go(func() error {
		<-gctx.Done()
		return bb.Close()
	})
	// Start-up leaves garbage behind (parsing the migrations alone allocates
	// over 10 MB): hand it back to the system now rather than minutes later,
	// so a server at rest holds what it uses.
	debug.FreeOSMemory()
	addr := ln.Addr().String()
	log.Info("runnel server ready", "addr", "http://"+addr, "grpc_addr", grpcAddr, "data_dir", cfg.DataDir, "database", dbKind(dsn), "blob_url", safeurl.Redact(blobURL), "embedded_agent_capacity", cfg.AgentCapacity)
	return &server{Addr: addr, GRPCAddr: grpcAddr, st: st, bucket: bucket, group: g, stop: cancel}, nil
}

// The artifact service is the storage the scheduler binds claimed jobs to.
var _ scheduler.StorageBinder = (*artifact.Service)(nil)

func dbKind(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "postgres"
	}
	return "sqlite " + dsn
}

// ensureAdminToken makes sure an admin token exists: the given value, or on
// the very first start a generated one, printed once. Only hashes are stored.
func ensureAdminToken(ctx context.Context, st store.Store, value string, stdout io.Writer) error {
	if value != "" {
		sum := sha256.Sum256([]byte(value))
		if _, err := st.TokenByHash(ctx, sum[:]); err == nil {
			return nil
		} else if !errors.Is(err, runnel.ErrNotFound) {
			return fmt.Errorf("look up admin token: %w", err)
		}
		err := st.CreateToken(ctx, &store.APIToken{ID: runnel.NewID("tok"), Name: "admin (--admin-token)", Subject: "admin", Role: "admin", Hash: sum[:], CreatedAt: time.Now().UTC()})
		if errors.Is(err, runnel.ErrConflict) {
			// Another replica starting at the same moment stored it first.
			if _, gerr := st.TokenByHash(ctx, sum[:]); gerr == nil {
				return nil
			}
		}
		return err
	}
	tokens, err := st.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	for _, t := range tokens {
		if t.Role == "admin" {
			return nil
		}
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tok := "rnl_" + hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(tok))
	if err := st.CreateToken(ctx, &store.APIToken{ID: runnel.NewID("tok"), Name: "admin (generated)", Subject: "admin", Role: "admin", Hash: sum[:], CreatedAt: time.Now().UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Generated an admin API token (shown only this once; only its hash is stored):\n\n    %s\n\nUse it as: curl -H 'Authorization: Bearer %s' …\n\n", tok, tok)
	return nil
}

// embeddedAgentID is stable for a data dir, so after a crash the new process
// knows which running jobs were its own and died with it.
func embeddedAgentID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "embedded-agent-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := runnel.NewID("agent")
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("embedded agent id: %w", err)
	}
	return id, nil
}

// runControl adapts the scheduler to the API's RunControl, and tells the API
// the cron minimum interval the cron service applies.
type runControl struct {
	s       *scheduler.Scheduler
	cronMin time.Duration
}

// CronMinInterval is --cron-min-interval, which the API enforces when cron
// schedules are saved.
func (r runControl) CronMinInterval() time.Duration { return r.cronMin }

// JobNeeds lets the run detail show which jobs each job waits for.
func (r runControl) JobNeeds(ctx context.Context, run *store.Run) (map[string][]string, error) {
	return r.s.JobNeeds(ctx, run)
}

func (r runControl) Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error) {
	return r.s.Trigger(ctx, pipelineID, req)
}

func (r runControl) Stop(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return r.s.Stop(ctx, runID, operator, reason)
}

func (r runControl) Pause(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return r.s.Pause(ctx, runID, operator, reason)
}

func (r runControl) Resume(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return r.s.Resume(ctx, runID, operator, reason)
}
