// Package api owns Runnel's HTTP API: routing, the response envelope, bearer
// token authentication, strict request decoding, and the mapping of domain
// errors to HTTP statuses (the only place where that happens). It persists
// through store.Store and drives runs through RunControl (deps.go); it knows
// no database and no scheduler.
//
// Every route under /api/v1 needs a bearer token, except the OpenAPI document
// (/api/v1/openapi.json): it describes the API and holds no data, and tools
// that render it should not need a token; and webhook deliveries
// (/api/v1/webhooks/…), which a forge signs with the pipeline's webhook
// secret instead. /healthz and /readyz are open too,
// for load balancers and orchestrators.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/accountapi"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/fleet"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/imageapi"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/project"
	"github.com/runnel-ci/runnel/internal/repos"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/webhook"
	"github.com/runnel-ci/runnel/internal/wsgateway"
)

// Config is what the API needs. Store and Runs are required.
type Config struct {
	Store store.Store
	Runs  RunControl
	// Agents tells agents' status and hands back the jobs of deleted ones.
	Agents AgentControl
	// Secrets seals secret values; nil: the secrets routes answer 503.
	Secrets Sealer
	// Artifacts lists and opens runs' artifacts; nil: the artifact routes
	// answer 503.
	Artifacts ArtifactSource
	// Catalog resolves `uses` when specs are validated; nil means the built-in
	// actions (action.Builtins()).
	Catalog spec.ActionCatalog
	// Logger receives one line per request and the detail of every 5xx; nil
	// discards.
	Logger *slog.Logger
	// Clock is time.Now unless a test fixes it.
	Clock func() time.Time
	// MaxBodyBytes bounds request bodies (413 beyond); default 1 MiB.
	MaxBodyBytes int64
	// LogCapBytes is the per-step log cap the log ingestion applies; a
	// plain-text log download sends at most this many bytes of messages,
	// the newest (default 16 MiB).
	LogCapBytes int64
	// ExternalURL is the server's base URL as forges reach it
	// (https://ci.example.com), for the webhook URLs a secret rotation
	// shows; empty: taken from the request (Host, X-Forwarded-Proto).
	ExternalURL string
	// SessionTTL is how long a browser session lasts (0: the default).
	SessionTTL time.Duration
	// HTTPClient makes the calls to sign-in providers (nil: a default).
	HTTPClient *http.Client
	// ForgeClient makes the calls to forges' APIs (repositories, webhooks,
	// commit statuses); nil: a client that follows no redirect.
	ForgeClient *http.Client
	// Git reads and writes the definitions of pipelines with a repoUrl:
	// GET …/spec reads the file at the default branch's head, spec/save
	// commits it (saveMode direct) or opens a pull request (pr). Nil: those
	// pipelines' specs are stored versions like any other's.
	Git *gitdef.Source
	// Events streams run events and logs over the WebSocket gateway; nil:
	// GET /api/v1/ws answers 503.
	Events event.Source
	// Approvals decides approval gates; nil: approve and reject answer 503.
	Approvals ApprovalControl
	// StreamSlowAfter is how long the WebSocket gateway waits on a client
	// that does not keep up before it disconnects it (default 10s).
	StreamSlowAfter time.Duration
	// StreamLimits bound the WebSocket connections (zero: none).
	StreamLimits wsgateway.Limits
	// Images is the image build service (seed 002: /v1/repositories,
	// /v1/builds and /api/v1/image-…); nil: those routes answer 503.
	Images ImageService
	// UI serves the web UI on every GET path outside the API (see
	// isUIPath); nil: none.
	UI http.Handler
	// Pipelines is the pipeline service; nil: one built from this Config
	// (Store, Catalog, Git, Secrets, Clock, Logger, and the cron minimum
	// interval of Runs when it tells one).
	Pipelines *pipeline.Service
	// Webhooks is the webhook service; nil: one built from this Config
	// (Store, Runs, Secrets as an Opener, Images, Git, Catalog).
	Webhooks *webhook.Service
	// SecretService is the secret and credential service; nil: one built
	// from this Config (Store, Secrets, Clock, Logger).
	SecretService *secret.Service
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultLogCapBytes  = 16 << 20
)

// Server serves the HTTP API. Build it with New; it is safe for concurrent
// use.
type Server struct {
	st      store.Store
	runs    RunControl
	agents  AgentControl
	seal    Sealer
	arts    ArtifactSource
	catalog spec.ActionCatalog
	log     *slog.Logger
	now     func() time.Time
	maxBody int64
	logCap  int64
	// externalURL is Config.ExternalURL.
	externalURL string
	// git reads and writes Git-backed pipelines' definitions (nil: their
	// specs are the stored versions, as for any pipeline).
	git       *gitdef.Source
	approvals ApprovalControl
	// images is Config.Images (nil: image routes answer 503); imageAPI
	// serves its routes.
	images   ImageService
	imageAPI *imageapi.API
	// ui is Config.UI (nil: no web UI, every other path is a 404 envelope).
	ui http.Handler
	// repos is the forge service: repositories, activation, webhooks on
	// forges, commit statuses.
	repos *repos.Service
	// pipelines owns the pipeline and definition rules.
	pipelines *pipeline.Service
	// webhooks handles forge deliveries.
	webhooks *webhook.Service
	// gateway serves GET /api/v1/ws (nil without Config.Events).
	gateway *wsgateway.Gateway
	// secrets owns the secret and credential rules.
	secrets *secret.Service
	// fleet owns the agent and registration token rules.
	fleet *fleet.Service
	// identity owns the user and token rules; accounts serves them (and
	// the audit log).
	identity *identity.Service
	accounts *accountapi.API
	// access decides who may see and change what (every route's Access
	// rule, the services' lists); projects owns projects, members, teams.
	access   *access.Policy
	projects *project.Service
	// signin owns single sign-on and browser sessions.
	signin *signin.Service

	// touched remembers when each token's last-used time was last written, so
	// an active client costs one write a minute instead of one per request.
	touchMu sync.Mutex
	touched map[string]time.Time

	handler http.Handler
}

// New returns a server for cfg. A nil Store or Runs is a wiring error in the
// caller and panics at start-up rather than failing every request.
func New(cfg Config) *Server {
	if cfg.Store == nil || cfg.Runs == nil {
		panic("api.New: Config.Store and Config.Runs are required")
	}
	s := &Server{
		st:      cfg.Store,
		runs:    cfg.Runs,
		agents:  cfg.Agents,
		seal:    cfg.Secrets,
		arts:    cfg.Artifacts,
		catalog: cfg.Catalog,
		log:     cfg.Logger,
		now:     cfg.Clock,
		maxBody: cfg.MaxBodyBytes,
		logCap:  cfg.LogCapBytes,
		touched: map[string]time.Time{},

		externalURL: cfg.ExternalURL,
		git:         cfg.Git,
		approvals:   cfg.Approvals,
		images:      cfg.Images,
		ui:          cfg.UI,
	}
	if s.catalog == nil {
		s.catalog = action.Builtins()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.logCap <= 0 {
		s.logCap = DefaultLogCapBytes
	}
	s.access = access.New(s.st)
	s.projects = project.New(project.Options{Store: s.st, Access: s.access, Clock: s.now})
	s.pipelines = cfg.Pipelines
	if s.pipelines == nil {
		o := pipeline.Options{Store: s.st, Catalog: s.catalog, Git: s.git, Clock: s.now, Logger: s.log,
			Access: s.access, Projects: s.projects}
		if s.seal != nil {
			o.Sealer = s.seal
		}
		if c, ok := s.runs.(cronPolicy); ok {
			o.CronMinInterval = c.CronMinInterval()
		}
		s.pipelines = pipeline.New(o)
	}
	s.webhooks = cfg.Webhooks
	if s.webhooks == nil {
		o := webhook.Options{Store: s.st, Runs: s.runs, Git: s.git, Catalog: s.catalog, Clock: s.now, Logger: s.log}
		if op, ok := s.seal.(webhook.Opener); ok {
			o.Opener = op
		}
		if s.images != nil {
			o.Images = s.images
		}
		s.webhooks = webhook.NewService(o)
	}
	if cfg.Events != nil {
		s.gateway = wsgateway.New(cfg.Events, cfg.StreamSlowAfter, cfg.StreamLimits, s.log)
		s.gateway.Check = func(ctx context.Context, p wsgateway.Params) (func(string) bool, error) {
			return s.access.Stream(ctx, p.ProjectID, p.PipelineID, p.RunID, p.StepRunID)
		}
	}
	s.secrets = cfg.SecretService
	if s.secrets == nil {
		o := secret.Options{Store: s.st, Clock: s.now, Logger: s.log, Access: s.access}
		if s.seal != nil {
			o.Sealer = s.seal
		}
		s.secrets = secret.NewService(o)
	}
	s.identity = identity.New(identity.Options{Store: s.st, Clock: s.now})
	s.fleet = fleet.New(fleet.Options{Store: s.st, Control: s.agents, Clock: s.now})
	so := signin.Options{Store: s.st, Identity: s.identity, SessionTTL: cfg.SessionTTL, Clock: s.now}
	if k, ok := s.seal.(signin.Keys); ok {
		so.Keys = k
	}
	if cfg.HTTPClient != nil {
		so.SSO = sso.New(sso.WithHTTPClient(cfg.HTTPClient))
	} else {
		so.SSO = sso.New()
	}
	s.signin = signin.New(so)
	ro := repos.Options{Store: s.st, Tokens: s.signin, Pipelines: s.pipelines, ExternalURL: s.externalURL,
		HC: cfg.ForgeClient, Clock: s.now, Logger: s.log}
	if op, ok := s.seal.(repos.Opener); ok {
		ro.Opener = op
	}
	s.repos = repos.New(ro)
	s.accounts = &accountapi.API{Identity: s.identity, Projects: s.projects, SignIn: s.signin, Tokens: s.st, ExternalURL: s.externalURL,
		Audit: s.st, MaxBody: s.maxBody, Now: s.now, Log: s.log}
	s.imageAPI = &imageapi.API{Images: s.images, MaxBody: s.maxBody, ExternalURL: s.externalURL, Now: s.now}
	if s.images != nil {
		s.imageAPI.Images = activatingImages{ImageService: s.images, s: s}
	}
	mux := &apikit.Mux{Routes: s.routes(), Authenticate: s.authenticate, Authorize: s.authorize, Fail: s.fail, MaxBody: s.maxBody, Log: s.log,
		Fallback: s.ui, FallbackFor: isUIPath, Audit: s.accounts.Record}
	s.handler = mux.Handler()
	return s
}

// Handler returns the http.Handler serving every route.
func (s *Server) Handler() http.Handler { return s.handler }

// routes lists every endpoint; the OpenAPI test checks the document against
// this list and against the live handler.
func (s *Server) routes() []apikit.Route {
	return append([]apikit.Route{
		{Method: "GET", Path: "/healthz", Access: "public", Public: true, H: s.healthz},
		{Method: "GET", Path: "/readyz", Access: "public", Public: true, H: s.readyz},
		{Method: "GET", Path: "/api/v1/openapi.json", Access: "public", Public: true, H: s.openAPI},
		// Authenticates itself: browsers send the token as a subprotocol.
		{Method: "GET", Path: "/api/v1/ws", Access: "public", Public: true, H: s.websocketHandler},

		{Method: "POST", Path: "/api/v1/pipelines", Access: "body", Scope: apikit.ScopeWrite, H: s.createPipeline},
		{Method: "GET", Path: "/api/v1/pipelines", Access: "signed-in", Scope: apikit.ScopeRead, H: s.listPipelines},
		{Method: "GET", Path: "/api/v1/pipelines/{pipelineId}", Access: "viewer:pipelineId", Scope: apikit.ScopeRead, H: s.getPipeline},
		{Method: "PUT", Path: "/api/v1/pipelines/{pipelineId}", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.updatePipeline},
		{Method: "DELETE", Path: "/api/v1/pipelines/{pipelineId}", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, Query: []string{"force"}, H: s.deletePipeline},

		{Method: "GET", Path: "/api/v1/pipelines/{pipelineId}/spec", Access: "viewer:pipelineId", Scope: apikit.ScopeRead, H: s.getSpec},
		{Method: "GET", Path: "/api/v1/pipelines/{pipelineId}/export", Access: "viewer:pipelineId", Scope: apikit.ScopeRead, H: s.exportSpec},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/spec/validate", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.validateSpec},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/spec/save", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.saveSpec},

		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/trigger", Access: "developer:pipelineId", Scope: apikit.ScopeRun, NoAudit: true, H: s.trigger},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/webhook/rotate", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.rotateWebhookSecret},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/webhook/repair", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.pipelineAction("repair")},
		{Method: "GET", Path: "/api/v1/pipelines/{pipelineId}/webhook", Access: "viewer:pipelineId", Scope: apikit.ScopeRead, H: s.pipelineAction("check")},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/activate", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.pipelineAction("activate")},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/deactivate", Access: "maintainer:pipelineId", Scope: apikit.ScopeWrite, H: s.pipelineAction("deactivate")},
		{Method: "POST", Path: "/api/v1/repositories/activate", Access: "body", Scope: apikit.ScopeWrite, H: s.activateRepository},
		// The signature made with the pipeline's webhook secret is the
		// authentication of a delivery.
		{Method: "POST", Path: "/api/v1/webhooks/{provider}/{pipelineId}", Access: "public", Public: true, MaxBody: maxWebhookBody, H: s.receiveWebhook},
		{Method: "GET", Path: "/api/v1/pipelines/{pipelineId}/runs", Access: "viewer:pipelineId", Scope: apikit.ScopeRead, H: s.listRuns},
		{Method: "GET", Path: "/api/v1/pipelines/runs/{runId}", Access: "viewer:runId", Scope: apikit.ScopeRead, H: s.getRun},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/runs/{runId}/stop", Access: "developer:runId", Scope: apikit.ScopeRun, NoAudit: true, H: s.control("stop")},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/runs/{runId}/pause", Access: "developer:runId", Scope: apikit.ScopeRun, NoAudit: true, H: s.control("pause")},
		{Method: "POST", Path: "/api/v1/pipelines/{pipelineId}/runs/{runId}/resume", Access: "developer:runId", Scope: apikit.ScopeRun, NoAudit: true, H: s.control("resume")},
		{Method: "GET", Path: "/api/v1/pipelines/runs/{runId}/steps/{stepRunId}/logs", Access: "viewer:runId", Scope: apikit.ScopeRead, H: s.stepLogs},
		{Method: "GET", Path: "/api/v1/pipelines/runs/{runId}/approvals", Access: "viewer:runId", Scope: apikit.ScopeRead, H: s.listApprovals},
		{Method: "POST", Path: "/api/v1/approvals/{approvalId}/approve", Access: "developer:approvalId", Scope: apikit.ScopeRun, H: s.decide(true)},
		{Method: "POST", Path: "/api/v1/approvals/{approvalId}/reject", Access: "developer:approvalId", Scope: apikit.ScopeRun, H: s.decide(false)},
		{Method: "GET", Path: "/api/v1/pipelines/runs/{runId}/artifacts", Access: "viewer:runId", Scope: apikit.ScopeRead, H: s.listArtifacts},
		{Method: "GET", Path: "/api/v1/pipelines/runs/{runId}/artifacts/{artifactId}", Access: "viewer:runId", Scope: apikit.ScopeRead, H: s.downloadArtifact},

		{Method: "GET", Path: "/api/v1/agents", Access: "signed-in", Scope: apikit.ScopeRead, H: s.listAgents},
		{Method: "GET", Path: "/api/v1/agents/{agentId}", Access: "signed-in", Scope: apikit.ScopeRead, H: s.getAgent},
		{Method: "PUT", Path: "/api/v1/agents/{agentId}", Access: "admin", Scope: apikit.ScopeAdmin, H: s.updateAgent},
		{Method: "DELETE", Path: "/api/v1/agents/{agentId}", Access: "admin", Scope: apikit.ScopeAdmin, H: s.deleteAgent},
		{Method: "POST", Path: "/api/v1/registration-tokens", Access: "admin", Scope: apikit.ScopeAdmin, H: s.createRegistrationToken},
		{Method: "GET", Path: "/api/v1/registration-tokens", Access: "admin", Scope: apikit.ScopeAdmin, H: s.listRegistrationTokens},
		{Method: "DELETE", Path: "/api/v1/registration-tokens/{tokenId}", Access: "admin", Scope: apikit.ScopeAdmin, H: s.deleteRegistrationToken},

		{Method: "POST", Path: "/api/v1/secrets", Access: "body", Scope: apikit.ScopeWrite, H: s.createSecret},
		{Method: "GET", Path: "/api/v1/secrets", Access: "signed-in", Scope: apikit.ScopeRead, H: s.listSecrets},
		{Method: "GET", Path: "/api/v1/secrets/{secretId}", Access: "viewer:secretId", Scope: apikit.ScopeRead, H: s.getSecret},
		{Method: "PUT", Path: "/api/v1/secrets/{secretId}", Access: "maintainer:secretId", Scope: apikit.ScopeWrite, H: s.updateSecret},
		{Method: "DELETE", Path: "/api/v1/secrets/{secretId}", Access: "maintainer:secretId", Scope: apikit.ScopeWrite, H: s.deleteSecret},

		{Method: "POST", Path: "/api/v1/credentials", Access: "body", Scope: apikit.ScopeWrite, H: s.createCredential},
		{Method: "GET", Path: "/api/v1/credentials", Access: "signed-in", Scope: apikit.ScopeRead, H: s.listCredentials},
		{Method: "GET", Path: "/api/v1/credentials/{credentialId}", Access: "viewer:credentialId", Scope: apikit.ScopeRead, H: s.getCredential},
		{Method: "PUT", Path: "/api/v1/credentials/{credentialId}", Access: "maintainer:credentialId", Scope: apikit.ScopeWrite, H: s.updateCredential},
		{Method: "DELETE", Path: "/api/v1/credentials/{credentialId}", Access: "maintainer:credentialId", Scope: apikit.ScopeWrite, H: s.deleteCredential},
		{Method: "GET", Path: "/api/v1/credentials/{credentialId}/repositories", Access: "viewer:credentialId", Scope: apikit.ScopeRead, H: s.listRepositories},
	}, append(s.accounts.Routes(), s.imageAPI.Routes()...)...)
}

// healthz says the process serves; it touches nothing else.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	s.ok(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz says whether the database answers, within a short deadline so that a
// hung database makes the probe fail instead of hang.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		if errors.Is(r.Context().Err(), context.Canceled) {
			return r.Context().Err()
		}
		return &apikit.Error{Status: http.StatusServiceUnavailable, Msg: "not ready: the database is unreachable", Cause: err}
	}
	s.ok(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// isUIPath says whether a path belongs to the UI rather than to the API: the
// API owns /api/, /v1/ and the health probes, and the UI everything else.
func isUIPath(p string) bool {
	for _, prefix := range []string{"/api/", "/v1/"} {
		if strings.HasPrefix(p, prefix) || p == strings.TrimSuffix(prefix, "/") {
			return false
		}
	}
	return p != "/healthz" && p != "/readyz"
}
