// Package server is the control plane as one application: New builds it in
// named phases — the store (with the Hinting decorator), the secrets, the
// services, the transports — binding its listeners; Run serves until its
// context ends; Close releases what New opened. `runnel server` fills the
// Config from flags and environment and calls these; end-to-end tests start
// it in process the same way.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"gocloud.dev/blob"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agent"
	"github.com/runnel-ci/runnel/internal/agentcmd"
	"github.com/runnel-ci/runnel/internal/agentserver"
	"github.com/runnel-ci/runnel/internal/api"
	"github.com/runnel-ci/runnel/internal/artifact"
	"github.com/runnel-ci/runnel/internal/bus"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/event/cdevent"
	"github.com/runnel-ci/runnel/internal/event/notify"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/gitdef/configext"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/project"
	"github.com/runnel-ci/runnel/internal/repos"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
	"github.com/runnel-ci/runnel/internal/streamrpc"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
	"github.com/runnel-ci/runnel/internal/web"
	"github.com/runnel-ci/runnel/internal/worker"
	"github.com/runnel-ci/runnel/internal/wsgateway"
)

// The artifact service is the storage the scheduler binds claimed jobs to.
var _ scheduler.StorageBinder = (*artifact.Service)(nil)

// Server is the control plane of one replica.
type Server struct {
	cfg    Config
	log    *slog.Logger
	stdout io.Writer

	// Store phase. st is the store every component that writes run events
	// or log lines uses: the Hinting decorator publishes a hint after each
	// commit so that live streams, on every replica, wake up. Only the hub
	// reads the bare store (the decorator needs the hub).
	dsn string
	st0 *sqlstore.Store
	st  store.Store
	bus bus.Bus
	hub *event.Hub

	// Secrets phase.
	keyring  *secret.Keyring
	resolver secret.Resolver

	// Services phase.
	catalog   *action.Registry
	blobURL   string
	bucket    *blob.Bucket
	artifacts *artifact.Service
	defs      *gitdef.Source
	sched     *scheduler.Scheduler
	images    *imagebuild.Service
	crons     *cron.Service
	deliverer *event.Deliverer
	// repos is the forge service (webhooks on forges, commit statuses).
	repos *repos.Service
	agent *agent.Agent // the embedded agent; nil when its capacity is 0

	// Transports phase.
	httpLn   net.Listener
	httpSrv  *http.Server
	grpcLn   net.Listener
	grpcSrv  *grpc.Server
	pprofLn  net.Listener
	pprofSrv *http.Server
}

// New builds the server and binds its listeners; nothing is served until
// Run. On error everything opened so far is released.
func New(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Server, error) {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	s := &Server{cfg: cfg, stdout: stdout, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	for _, phase := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"store", s.openStore},
		{"secrets", s.openSecrets},
		{"services", s.buildServices},
		{"transports", s.bindTransports},
	} {
		if err := phase.run(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	// Start-up leaves garbage behind (parsing the migrations alone allocates
	// over 10 MB): hand it back to the system now rather than minutes later,
	// so a server at rest holds what it uses.
	debug.FreeOSMemory()
	s.log.Info("runnel server ready", "addr", "http://"+s.Addr(), "grpc_addr", s.GRPCAddr(), "data_dir", cfg.DataDir,
		"database", dbKind(s.dsn), "blob_url", safeurl.Redact(s.blobURL), "embedded_agent_capacity", cfg.AgentCapacity)
	return s, nil
}

// Addr is the HTTP address the server listens on.
func (s *Server) Addr() string { return s.httpLn.Addr().String() }

// GRPCAddr is the gRPC address ("" when gRPC is off).
func (s *Server) GRPCAddr() string {
	if s.grpcLn == nil {
		return ""
	}
	return s.grpcLn.Addr().String()
}

// openStore opens the database, makes sure an admin token exists, and
// builds the bus, the hub and the Hinting store.
func (s *Server) openStore(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	s.dsn = s.cfg.Database
	if s.dsn == "" {
		s.dsn = filepath.Join(s.cfg.DataDir, "runnel.db")
	}
	st, err := sqlstore.Open(ctx, s.dsn, sqlstore.Options{Logger: s.log, EventSinks: s.cfg.EventSinks})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	s.st0, s.st = st, st
	if err := ensureAdminToken(ctx, st, s.cfg.AdminToken, s.stdout); err != nil {
		return err
	}
	// The bus carries wake-ups and cancellations: between the replicas of
	// one PostgreSQL database through LISTEN/NOTIFY, in process on SQLite
	// (one server per SQLite file).
	if strings.HasPrefix(s.dsn, "postgres") {
		pb, err := bus.NewPostgres(ctx, s.dsn, s.log)
		if err != nil {
			return fmt.Errorf("listen for other replicas: %w", err)
		}
		s.bus = pb
	} else {
		s.bus = bus.NewLocal()
	}
	s.hub = event.NewHub(event.HubOptions{Store: s.st0, Bus: s.bus, Logger: s.log})
	s.st = event.Hinting{Store: s.st0, Hub: s.hub}
	return nil
}

// openSecrets loads the key secrets are sealed with and re-encrypts what an
// earlier key sealed.
func (s *Server) openSecrets(ctx context.Context) error {
	keyring, err := secret.Load(s.cfg.DataDir, s.cfg.SecretKey, s.cfg.SecretOldKeys)
	if err != nil {
		return fmt.Errorf("secret key: %w", err)
	}
	if n, err := keyring.Reencrypt(ctx, s.st); err != nil {
		return fmt.Errorf("re-encrypt secrets under the current key: %w", err)
	} else if n > 0 {
		s.log.Info("secrets re-encrypted under the current key", "count", n, "key_id", keyring.KeyID())
	}
	s.keyring = keyring
	// Sign-in providers the flags describe are written before anyone can
	// sign in: the flags win over changes made through the API. The same
	// service renews connected accounts' tokens when jobs and definitions
	// need them.
	si := signin.New(signin.Options{Store: s.st, Keys: keyring, SSO: sso.New()})
	s.resolver = secret.Resolver{Store: s.st, Keyring: keyring, Tokens: si}
	for _, p := range s.cfg.SSOProviders {
		if _, err := si.Ensure(ctx, p); err != nil {
			return fmt.Errorf("--sso-provider %s: %w", p.Name, err)
		}
	}
	return nil
}

// buildServices builds storage, definitions, the scheduler (recovering what
// a previous process left running), image builds, cron, event delivery and
// the embedded agent.
func (s *Server) buildServices(ctx context.Context) error {
	cfg := s.cfg
	// Artifacts and caches: bytes in the blob store, records in the database.
	s.blobURL = cfg.BlobURL
	if s.blobURL == "" {
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "blobs"))
		if err != nil {
			return fmt.Errorf("blob directory: %w", err)
		}
		s.blobURL = (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}).String()
		if strings.HasPrefix(s.dsn, "postgres") {
			s.log.Warn("artifacts and caches are kept in this replica's data dir; replicas sharing a database need a shared --blob-url (S3 or a shared directory)", "blob_url", s.blobURL)
		}
	}
	bucket, err := artifact.OpenBucket(ctx, s.blobURL)
	if err != nil {
		return fmt.Errorf("--blob-url: %w", err)
	}
	s.bucket = bucket
	s.artifacts = artifact.New(artifact.Options{Store: s.st, Bucket: bucket, ArtifactRetention: cfg.ArtifactRetention,
		CacheRetention: cfg.CacheRetention, MaxArtifactBytes: cfg.MaxArtifactSize, MaxCacheBytes: cfg.MaxCacheSize, Logger: s.log})

	credential := pipelineCredential(s.resolver, s.keyring != nil)
	s.defs = &gitdef.Source{Credentials: credential}
	if cfg.ConfigExtensionEndpoint != "" {
		s.defs.Extension = &configext.Client{Endpoint: cfg.ConfigExtensionEndpoint, Secret: cfg.ConfigExtensionSecret,
			Timeout: cfg.ConfigExtensionTimeout}
	}
	var runLink func(string) string
	if cfg.ExternalURL != "" {
		base := strings.TrimRight(cfg.ExternalURL, "/")
		s.defs.RunLink = func(pipelineID string) string { return base + "/api/v1/pipelines/" + pipelineID + "/runs" }
		runLink = func(runID string) string { return base + "/api/v1/pipelines/runs/" + runID }
	}
	s.catalog = action.Builtins()
	catalog := s.catalog
	s.sched = scheduler.New(scheduler.Options{Store: s.st, Catalog: catalog, Logger: s.log, LeaseDuration: cfg.LeaseDuration,
		LogCapBytes: cfg.LogCapBytes, Bus: s.bus, OfflineAfter: cfg.OfflineAfter,
		Secrets: s.resolver, Storage: s.artifacts, Definitions: imagebuild.SkipManaged(s.defs)})
	policy := access.New(s.st)
	s.images = imagebuild.New(imagebuild.Options{Store: s.st, Runs: s.sched, Catalog: catalog, Registry: cfg.Registry,
		RegistryCredential: cfg.RegistryCredential, Credentials: credential,
		Access: policy, Projects: project.New(project.Options{Store: s.st, Access: policy})})
	s.crons = cron.NewService(cron.Options{Store: s.st, MinInterval: cfg.CronMinInterval,
		CatchUp: cfg.CronCatchUp, Logger: s.log, Trigger: s.sched.Trigger})

	source := cmp.Or(cfg.EventSource, cfg.ExternalURL)
	if source == "" {
		host, _ := os.Hostname()
		source = "/runnel/" + host
	}
	var mailer *notify.Mailer
	if cfg.SMTPAddr != "" {
		mailer = &notify.Mailer{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUsername,
			Password: cfg.SMTPPassword, TLS: cfg.SMTPTLS}
	}
	notifier := event.NewNotifier(event.NotifierOptions{Store: s.st, Plans: s.sched, Secrets: s.resolver, RunLink: runLink,
		Mailer: mailer, MaxAttempts: cfg.NotifyAttempts, Logger: s.log})
	s.deliverer = event.NewDeliverer(event.DelivererOptions{Store: s.st, Logger: s.log, MaxAge: cfg.EventMaxAge,
		Notifier: notifier, Images: s.images, CDEvents: cdevent.Config{Source: source, APIBase: strings.TrimRight(cfg.ExternalURL, "/")}})

	// Jobs leased to this server's embedded agent by a previous process died
	// with it: they are retried or failed before anything new starts.
	agentID, err := embeddedAgentID(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := s.sched.Recover(ctx, agentID); err != nil {
		return err
	}
	if cfg.AgentCapacity == 0 {
		return nil
	}
	labels, _ := worker.ParseLabels(cfg.AgentLabels)
	labels = agentcmd.WithPlatformLabels(labels)
	host, _ := os.Hostname()
	if err := s.sched.RegisterLocalAgent(ctx, &store.Agent{ID: agentID, Name: "embedded@" + host, Kind: "embedded",
		ReportedLabels: labels, Capacity: cfg.AgentCapacity, Version: cfg.Version, Hostname: host,
		Platform: runtime.GOOS + "/" + runtime.GOARCH}); err != nil {
		return fmt.Errorf("register the embedded agent: %w", err)
	}
	be, err := agentcmd.NewBackend(cfg.AgentBackend, filepath.Join(cfg.DataDir, "workspaces"), 0, s.log)
	if err != nil {
		return err
	}
	// Processes and workspaces of jobs that died with a previous process of
	// this server (kill -9) are stopped and removed before new work.
	if err := be.CleanupStale(ctx); err != nil {
		s.log.Warn("cleaning up after the previous server process", "err", err)
	}
	s.agent = &agent.Agent{ID: agentID, Capacity: cfg.AgentCapacity, Logger: s.log,
		Source:   scheduler.LocalSource{S: s.sched, AgentID: agentID},
		Executor: &engine.Executor{Backend: be, Actions: catalog, Docker: agentcmd.DockerEngine()}}
	return nil
}

// bindTransports builds the HTTP API (with the web UI), the gRPC services
// (agents, streams) and the profiler, and binds their listeners.
func (s *Server) bindTransports(context.Context) error {
	cfg := s.cfg
	if cfg.GRPCAddr != "" && cfg.GRPCAddr != "off" {
		as := agentserver.NewServer(agentserver.ServerOptions{Store: s.st, Scheduler: s.sched, Logger: s.log})
		opts := as.GRPCOptions()
		if cfg.GRPCTLSCert != "" {
			creds, err := credentials.NewServerTLSFromFile(cfg.GRPCTLSCert, cfg.GRPCTLSKey)
			if err != nil {
				return fmt.Errorf("--grpc-tls-cert/--grpc-tls-key: %w", err)
			}
			opts = append(opts, grpc.Creds(creds))
		}
		s.grpcSrv = grpc.NewServer(opts...)
		as.Attach(s.grpcSrv)
		streamrpc.NewServer(streamrpc.Options{Source: s.hub, Tokens: s.st, Users: s.st, Access: access.New(s.st), Logger: s.log}).Attach(s.grpcSrv)
		ln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return fmt.Errorf("listen (gRPC): %w", err)
		}
		s.grpcLn = ln
	}
	apiSrv := api.New(api.Config{Store: s.st, Runs: runControl{s: s.sched, cronMin: cfg.CronMinInterval}, Agents: s.sched,
		Secrets: s.keyring, Artifacts: s.artifacts, Catalog: s.catalog, Logger: s.log, LogCapBytes: cfg.LogCapBytes,
		ExternalURL: cfg.ExternalURL, Git: s.defs, Events: s.hub, Approvals: s.sched, Images: s.images, UI: web.New(),
		StreamLimits: wsgateway.Limits{Total: cfg.WSMaxConnections, PerToken: cfg.WSMaxPerToken}, SessionTTL: cfg.SessionTTL})
	// Commit statuses leave through the outbox, sent by the forge service
	// the routes use (set before Run starts the deliverer).
	s.deliverer.SetStatuses(apiSrv.Repos())
	s.repos = apiSrv.Repos()
	handler := apiSrv.Handler()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.httpLn = ln
	s.httpSrv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	if cfg.PprofAddr != "" {
		pln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			return fmt.Errorf("--pprof-addr: %w", err)
		}
		s.pprofLn = pln
		s.pprofSrv = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.log.Info("profiler listening", "addr", "http://"+pln.Addr().String()+"/debug/pprof/")
	}
	return nil
}

// Run serves until ctx ends (or a part fails), then shuts every part down:
// HTTP requests get 10s to finish, gRPC long polls 3s. Call Close after.
func (s *Server) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.sched.Run(gctx) })
	g.Go(func() error { return s.crons.Run(gctx) })
	g.Go(func() error { return s.artifacts.Run(gctx) })
	g.Go(func() error { return s.hub.Run(gctx) })
	g.Go(func() error { return s.deliverer.Run(gctx) })
	if r := s.cfg.WebhookDeliveryRetention; r > 0 {
		g.Go(func() error { return sweep(gctx, "webhook deliveries", r, s.st.DeleteDeliveriesBefore, s.log) })
	}
	if r := s.cfg.AuditRetention; r > 0 {
		g.Go(func() error { return sweep(gctx, "audit entries", r, s.st.DeleteAuditBefore, s.log) })
	}
	// Webhooks deleted at their forge by hand show as missing.
	g.Go(func() error { return checkHooks(gctx, s.repos, s.log) })
	// Sessions and sign-ins that expired: nothing to keep them for.
	g.Go(func() error {
		return sweep(gctx, "expired sessions", time.Nanosecond, s.st.DeleteExpiredSessions, s.log)
	})
	if s.agent != nil {
		g.Go(func() error { return s.agent.Run(gctx) })
	}
	serve(g, gctx, s.httpSrv, s.httpLn, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.httpSrv.Shutdown(sctx)
	})
	if s.pprofSrv != nil {
		serve(g, gctx, s.pprofSrv, s.pprofLn, s.pprofSrv.Close)
	}
	if s.grpcSrv != nil {
		g.Go(func() error {
			// Stopped before it started serving (a short life): not a failure.
			if err := s.grpcSrv.Serve(s.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			// Long polls and sessions would hold GracefulStop: give them a
			// moment, then cut them (agents reconnect to another replica).
			t := time.AfterFunc(3*time.Second, s.grpcSrv.Stop)
			defer t.Stop()
			s.grpcSrv.GracefulStop()
			return nil
		})
	}
	return g.Wait()
}

// serve runs srv on ln in g and stops it with stop once ctx ends.
func serve(g *errgroup.Group, ctx context.Context, srv *http.Server, ln net.Listener, stop func() error) {
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		return stop()
	})
}

// Close releases what New opened: listeners not served, the bus, the blob
// store and the database.
func (s *Server) Close() error {
	for _, ln := range []net.Listener{s.httpLn, s.grpcLn, s.pprofLn} {
		if ln != nil {
			ln.Close() // already closed when served
		}
	}
	var errs []error
	if s.bus != nil {
		errs = append(errs, s.bus.Close())
	}
	if s.bucket != nil {
		errs = append(errs, s.bucket.Close())
	}
	if s.st0 != nil {
		errs = append(errs, s.st0.Close())
	}
	return errors.Join(errs...)
}
