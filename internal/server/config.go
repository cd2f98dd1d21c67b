package server

import (
	"errors"
	"fmt"
	"github.com/runnel-ci/runnel/internal/signin"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/agentcmd"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Config is the server's whole configuration. The command fills it from its
// flags and the RUNNEL_* environment, read once there; nothing below reads
// the environment.
type Config struct {
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
	// WSMaxConnections and WSMaxPerToken bound the WebSocket connections
	// the server serves at once, in all and per API token (0: no limit).
	WSMaxConnections int
	WSMaxPerToken    int
	// AuditRetention is how long audit entries are kept (0: forever).
	AuditRetention time.Duration
	// SessionTTL is how long a browser session lasts (0: the default).
	SessionTTL time.Duration
	// SSOProviders are sign-in providers written at start (created, or
	// their configuration replaced).
	SSOProviders []signin.ProviderInput
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
	// SecretKey seals secrets (RUNNEL_SECRET_KEY; every replica needs the
	// same); "": a key file generated in the data dir. SecretOldKeys are
	// earlier keys still opened, re-encrypted under SecretKey at start.
	SecretKey, SecretOldKeys string
	// Version is reported by the embedded agent.
	Version string
}

// Validate checks the configuration; messages name the flags.
func (c *Config) Validate() error {
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
	if c.WSMaxConnections < 0 || c.WSMaxPerToken < 0 {
		return errors.New("--ws-max-connections and --ws-max-per-token must be 0 (no limit) or more")
	}
	if c.SessionTTL < 0 {
		return errors.New("--session-ttl must be 0 (the default) or more")
	}
	if c.AuditRetention < 0 {
		return errors.New("--audit-retention must be 0 (keep) or more")
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
