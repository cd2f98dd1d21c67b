package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/runnel-ci/runnel/internal/artifact"
	"github.com/runnel-ci/runnel/internal/envflag"
	"github.com/runnel-ci/runnel/internal/gitdef/configext"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/server"
	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
	"github.com/runnel-ci/runnel/internal/wsgateway"
)

// serverConfig is `runnel server`'s configuration, from flags and RUNNEL_*
// env, read here once: the application (package server) reads no
// environment.
type serverConfig = server.Config

// serverFlags defines the flags of `runnel server` on fs, their defaults
// from the RUNNEL_* environment.
func serverFlags(c *serverConfig, fs *flag.FlagSet) {
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
	fs.IntVar(&c.WSMaxConnections, "ws-max-connections", envInt("RUNNEL_WS_MAX_CONNECTIONS", wsgateway.DefaultMaxConnections), "WebSocket connections (live logs and statuses) served at once; past it a new one is closed with code 1013; 0: no limit (RUNNEL_WS_MAX_CONNECTIONS)")
	fs.IntVar(&c.WSMaxPerToken, "ws-max-per-token", envInt("RUNNEL_WS_MAX_PER_TOKEN", wsgateway.DefaultMaxPerToken), "WebSocket connections one API token may hold at once; 0: no limit (RUNNEL_WS_MAX_PER_TOKEN)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", envDuration("RUNNEL_SESSION_TTL", signin.DefaultSessionTTL), "how `long` a browser session (sign-in to the web UI) lasts (RUNNEL_SESSION_TTL)")
	addProvider := func(v string) error {
		in, err := signin.ParseProviderFlag(v)
		if err != nil {
			return err
		}
		if sec, ok := os.LookupEnv(signin.SecretEnv(in.Name)); ok {
			in.ClientSecret = &sec
		}
		c.SSOProviders = append(c.SSOProviders, in)
		return nil
	}
	fs.Func("sso-provider", "a sign-in provider, written at start: `\"name=gitea kind=gitea url=https://git.example.com client-id=ID [allowed-orgs=a,b] [allowed-domains=example.com] [scopes=…] [display-name=Our+Gitea]\"`; repeat for several; its client secret from RUNNEL_SSO_<NAME>_CLIENT_SECRET (RUNNEL_SSO_PROVIDERS: providers separated by ;)", addProvider)
	fs.DurationVar(&c.AuditRetention, "audit-retention", envDuration("RUNNEL_AUDIT_RETENTION", 365*24*time.Hour), "how `long` audit log entries (changes made through the API) are kept; 0 keeps them (RUNNEL_AUDIT_RETENTION)")
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
	// Secrets come from the environment only, never from a flag (a flag
	// shows in the process list).
	c.SecretKey = os.Getenv("RUNNEL_SECRET_KEY")
	c.SecretOldKeys = os.Getenv("RUNNEL_SECRET_OLD_KEYS")
	c.Version = version
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

// ssoFromEnv reads RUNNEL_SSO_PROVIDERS when no --sso-provider was given.
func ssoFromEnv(c *serverConfig) error {
	if len(c.SSOProviders) > 0 {
		return nil
	}
	for _, v := range strings.Split(os.Getenv("RUNNEL_SSO_PROVIDERS"), ";") {
		if strings.TrimSpace(v) == "" {
			continue
		}
		in, err := signin.ParseProviderFlag(v)
		if err != nil {
			return fmt.Errorf("RUNNEL_SSO_PROVIDERS: %w", err)
		}
		if sec, ok := os.LookupEnv(signin.SecretEnv(in.Name)); ok {
			in.ClientSecret = &sec
		}
		c.SSOProviders = append(c.SSOProviders, in)
	}
	return nil
}

func envOr(k, def string) string                            { return envflag.Or(k, def) }
func envInt(k string, def int) int                          { return envflag.Int(k, def) }
func envBool(k string, def bool) bool                       { return envflag.Bool(k, def) }
func envDuration(k string, def time.Duration) time.Duration { return envflag.Duration(k, def) }

func cmdServer(args []string, stdout, stderr io.Writer) int {
	var cfg serverConfig
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serverFlags(&cfg, fs)
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
	if err := ssoFromEnv(&cfg); err != nil {
		fmt.Fprintln(stderr, "runnel server:", err)
		return exitInvalid
	}
	if err := cfg.Validate(); err != nil {
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

// runningServer is a started control plane; tests start it on port 0.
type runningServer struct {
	Addr     string // the address it listens on
	GRPCAddr string // the gRPC address ("" when off)
	srv      *server.Server
	stop     context.CancelFunc
	done     chan error
}

// Wait waits for the server to stop (its context ended, or a part failed)
// and releases it.
func (s *runningServer) Wait() error {
	err := <-s.done
	s.done <- err
	return err
}

// Stop stops the server and waits for it.
func (s *runningServer) Stop() error {
	s.stop()
	return s.Wait()
}

// startServer builds the server and runs it until parent ends or Stop.
func startServer(parent context.Context, cfg serverConfig, stdout, stderr io.Writer) (*runningServer, error) {
	ctx, cancel := context.WithCancel(parent)
	srv, err := server.New(ctx, cfg, stdout, stderr)
	if err != nil {
		cancel()
		return nil, err
	}
	rs := &runningServer{Addr: srv.Addr(), GRPCAddr: srv.GRPCAddr(), srv: srv, stop: cancel, done: make(chan error, 1)}
	go func() {
		err := srv.Run(ctx)
		cancel()
		srv.Close()
		rs.done <- err
	}()
	return rs, nil
}
