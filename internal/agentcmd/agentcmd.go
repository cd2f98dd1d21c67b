// Package agentcmd is the agent command: `runnel agent` in the all-in-one
// binary and the lean `runnel-agent` binary built for agent hosts (which
// links none of the server's packages: a third of the size, and half the
// memory at rest). It also builds the backends every agent uses, the
// server's embedded one included.
package agentcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	dockerclient "github.com/moby/moby/client"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agent"
	"github.com/runnel-ci/runnel/internal/agentpb"
	"github.com/runnel-ci/runnel/internal/agentrpc"
	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/backend/auto"
	"github.com/runnel-ci/runnel/internal/backend/docker"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/envflag"
	"github.com/runnel-ci/runnel/internal/worker"
)

// Exit codes, as the other commands'.
const (
	exitOK      = 0
	exitFailed  = 1
	exitInvalid = 2
)

// agentConfig is `runnel agent`'s configuration, from flags and RUNNEL_AGENT_* env.
type agentConfig struct {
	Server      string
	Token       string
	Name        string
	Labels      string
	Capacity    int
	WorkDir     string
	Backend     string
	TLS         bool
	TLSCA       string
	GracePeriod time.Duration
	LogLevel    string
}

func (c *agentConfig) flags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&c.Server, "server", envflag.Or("RUNNEL_AGENT_SERVER", "127.0.0.1:9090"), "the server's gRPC `address` host:port; several, comma-separated, for failover between replicas (RUNNEL_AGENT_SERVER)")
	fs.StringVar(&c.Token, "token", os.Getenv("RUNNEL_AGENT_TOKEN"), "registration `token` (POST /api/v1/registration-tokens), used when the work dir holds no identity yet (RUNNEL_AGENT_TOKEN)")
	fs.StringVar(&c.Name, "name", envflag.Or("RUNNEL_AGENT_NAME", host), "the agent's `name` in the agent list (RUNNEL_AGENT_NAME)")
	fs.StringVar(&c.Labels, "labels", os.Getenv("RUNNEL_AGENT_LABELS"), "labels jobs select the agent by, `k=v,…` (RUNNEL_AGENT_LABELS); os and arch are added")
	fs.IntVar(&c.Capacity, "capacity", envflag.Int("RUNNEL_AGENT_CAPACITY", runtime.NumCPU()), "jobs run at once (RUNNEL_AGENT_CAPACITY)")
	fs.StringVar(&c.WorkDir, "workdir", envflag.Or("RUNNEL_AGENT_WORKDIR", "./runnel-agent"), "`directory` for the agent's identity and job workspaces (RUNNEL_AGENT_WORKDIR)")
	fs.StringVar(&c.Backend, "backend", envflag.Or("RUNNEL_AGENT_BACKEND", "auto"), "where steps run: local (processes on this machine), docker (containers; DOCKER_HOST selects the daemon) or auto (docker for jobs with an image, services or docker:// steps, local for the others) (RUNNEL_AGENT_BACKEND)")
	fs.BoolVar(&c.TLS, "tls", os.Getenv("RUNNEL_AGENT_TLS") == "true", "connect with TLS, verifying the server with the system's roots (RUNNEL_AGENT_TLS=true)")
	fs.StringVar(&c.TLSCA, "tls-ca", os.Getenv("RUNNEL_AGENT_TLS_CA"), "connect with TLS, verifying the server with this PEM CA `file` (RUNNEL_AGENT_TLS_CA)")
	fs.DurationVar(&c.GracePeriod, "grace-period", envflag.Duration("RUNNEL_AGENT_GRACE_PERIOD", 10*time.Second), "time between SIGTERM and SIGKILL when a step is stopped (RUNNEL_AGENT_GRACE_PERIOD)")
	fs.StringVar(&c.LogLevel, "log-level", envflag.Or("RUNNEL_LOG_LEVEL", "info"), "debug, info, warn or error (RUNNEL_LOG_LEVEL)")
}

func (c *agentConfig) servers() []string {
	var out []string
	for s := range strings.SplitSeq(c.Server, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *agentConfig) validate() error {
	if len(c.servers()) == 0 {
		return errors.New("--server: give the server's gRPC address, e.g. 127.0.0.1:9090")
	}
	for _, s := range c.servers() {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("--server %q: %v (want host:port)", s, err)
		}
	}
	if _, err := worker.ParseLabels(c.Labels); err != nil {
		return fmt.Errorf("--labels: %v", err)
	}
	if c.Capacity < 1 || c.Capacity > 1024 {
		return fmt.Errorf("--capacity %d: want 1 to 1024", c.Capacity)
	}
	if c.WorkDir == "" {
		return errors.New("--workdir must not be empty")
	}
	if err := CheckBackendKind(c.Backend); err != nil {
		return fmt.Errorf("--backend %v", err)
	}
	if c.GracePeriod < 0 {
		return errors.New("--grace-period must not be negative")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// Main runs the agent command with args (after the command name); prog is
// how the user called it ("runnel agent", "runnel-agent") and version the
// binary's, reported to the server. It returns the exit status.
func Main(prog string, args []string, stdout, stderr io.Writer, version string) int {
	var cfg agentConfig
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s --server HOST:PORT --token TOKEN [flags]\n\nRuns jobs for a Runnel server. The first start registers with the token and keeps\nthe agent's identity in --workdir; later starts reuse it.\n\nFlags:\n", prog)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", prog, fs.Arg(0))
		return exitInvalid
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return exitInvalid
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runAgent(ctx, cfg, stderr, version); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return exitFailed
	}
	return exitOK
}

func runAgent(ctx context.Context, cfg agentConfig, stderr io.Writer, version string) error {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	var tlsCfg *tls.Config
	if cfg.TLS || cfg.TLSCA != "" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pem, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--tls-ca %s: no PEM certificate found", cfg.TLSCA)
			}
			tlsCfg.RootCAs = pool
		}
	}
	labels, _ := worker.ParseLabels(cfg.Labels)
	labels = WithPlatformLabels(labels)
	host, _ := os.Hostname()
	be, err := NewBackend(cfg.Backend, filepath.Join(cfg.WorkDir, "workspaces"), cfg.GracePeriod, log)
	if err != nil {
		return err
	}
	// Processes and workspaces of jobs a previous process of this agent left
	// behind (it was killed) are stopped and removed before new work; the
	// server hands those jobs back when the session opens.
	if err := be.CleanupStale(ctx); err != nil {
		log.Warn("cleaning up after the previous agent process", "err", err)
	}
	client, err := agentrpc.Dial(agentrpc.ClientOptions{
		Servers: cfg.servers(), TLS: tlsCfg, RegistrationToken: cfg.Token,
		IdentityFile: filepath.Join(cfg.WorkDir, "agent.json"), Logger: log,
		Info: &agentpb.AgentInfo{Name: cfg.Name, Labels: labels, Capacity: int32(cfg.Capacity), Version: version,
			Hostname: host, Platform: runtime.GOOS + "/" + runtime.GOARCH},
	})
	if err != nil {
		return err
	}
	defer client.Close()
	log.Info("runnel agent starting", "server", cfg.Server, "labels", worker.FormatLabels(labels), "capacity", cfg.Capacity, "workdir", cfg.WorkDir)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := client.Start(sctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	catalog := action.Builtins()
	ag := &agent.Agent{ID: client.AgentID(), Capacity: cfg.Capacity, Source: client, Logger: log,
		Executor: &engine.Executor{Backend: be, Actions: catalog, Docker: DockerEngine()}}
	err = ag.Run(ctx)
	log.Info("runnel agent stopped")
	return err
}

// BackendConfig is what a backend is built from.
type BackendConfig struct {
	// Root keeps the backend's files (workspaces, job directories).
	Root        string
	GracePeriod time.Duration
	Logger      *slog.Logger
}

// backends builds each kind of --backend and --embedded-agent-backend, in
// the order messages list them: adding a backend is a package implementing
// backend.Stale and one entry here. Docker is not contacted when a backend is
// built: auto works without it for jobs that need no containers.
var backends = []struct {
	kind string
	new  func(BackendConfig) (backend.Stale, error)
}{
	{"local", func(c BackendConfig) (backend.Stale, error) { return newLocal(c) }},
	{"docker", func(c BackendConfig) (backend.Stale, error) { return newDocker(c) }},
	{"auto", func(c BackendConfig) (backend.Stale, error) {
		lb, err := newLocal(c)
		if err != nil {
			return nil, err
		}
		db, err := newDocker(c)
		if err != nil {
			return nil, err
		}
		return auto.New(lb, db, c.Logger), nil
	}},
}

func newLocal(c BackendConfig) (*local.Backend, error) {
	return local.New(local.Options{Root: c.Root, GracePeriod: c.GracePeriod, Logger: c.Logger})
}

func newDocker(c BackendConfig) (*docker.Backend, error) {
	return docker.New(docker.Options{Root: c.Root, GracePeriod: c.GracePeriod, Logger: c.Logger})
}

// CheckBackendKind checks a --backend value.
func CheckBackendKind(kind string) error {
	kinds := make([]string, len(backends))
	for i, b := range backends {
		if kind == b.kind {
			return nil
		}
		kinds[i] = b.kind
	}
	return fmt.Errorf("%q: want %s or %s", kind, strings.Join(kinds[:len(kinds)-1], ", "), kinds[len(kinds)-1])
}

// NewBackend builds the backend of kind ("" is auto) keeping its files
// under root.
func NewBackend(kind, root string, grace time.Duration, log *slog.Logger) (backend.Stale, error) {
	if kind == "" {
		kind = "auto"
	}
	for _, b := range backends {
		if b.kind == kind {
			return b.new(BackendConfig{Root: root, GracePeriod: grace, Logger: log})
		}
	}
	return nil, CheckBackendKind(kind)
}

// DockerEngine returns a function opening (once) a client of the Docker
// engine named by the DOCKER_* environment, for native actions that build
// images. The engine is contacted only when such a step runs.
func DockerEngine() func() (*dockerclient.Client, error) {
	return sync.OnceValues(func() (*dockerclient.Client, error) {
		return dockerclient.New(dockerclient.FromEnv)
	})
}

// WithPlatformLabels adds os and arch (GOOS, GOARCH) unless given.
func WithPlatformLabels(labels map[string]string) map[string]string {
	if labels == nil {
		labels = map[string]string{}
	}
	if _, ok := labels["os"]; !ok {
		labels["os"] = runtime.GOOS
	}
	if _, ok := labels["arch"]; !ok {
		labels["arch"] = runtime.GOARCH
	}
	return labels
}
