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
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/spec"
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
	// plain-text log download never sends more than this (default 16 MiB).
	LogCapBytes int64
	// ExternalURL is the server's base URL as forges reach it
	// (https://ci.example.com), for the webhook URLs a secret rotation
	// shows; empty: taken from the request (Host, X-Forwarded-Proto).
	ExternalURL string
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
	// images is Config.Images (nil: image routes answer 503).
	images ImageService
	// ui is Config.UI (nil: no web UI, every other path is a 404 envelope).
	ui http.Handler
	// pipelines owns the pipeline and definition rules.
	pipelines *pipeline.Service
	// webhooks handles forge deliveries.
	webhooks *webhook.Service
	// gateway serves GET /api/v1/ws (nil without Config.Events).
	gateway *wsgateway.Gateway
	// secrets owns the secret and credential rules.
	secrets *secret.Service

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
	s.pipelines = cfg.Pipelines
	if s.pipelines == nil {
		o := pipeline.Options{Store: s.st, Catalog: s.catalog, Git: s.git, Clock: s.now, Logger: s.log}
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
		s.gateway = wsgateway.New(cfg.Events, cfg.StreamSlowAfter, s.log)
	}
	s.secrets = cfg.SecretService
	if s.secrets == nil {
		o := secret.Options{Store: s.st, Clock: s.now, Logger: s.log}
		if s.seal != nil {
			o.Sealer = s.seal
		}
		s.secrets = secret.NewService(o)
	}
	s.handler = s.buildHandler()
	return s
}

// Handler returns the http.Handler serving every route.
func (s *Server) Handler() http.Handler { return s.handler }

// handlerFunc is a route's handler: it writes a success response itself and
// returns errors, which the route wrapper turns into an error envelope.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one documented endpoint. Path uses OpenAPI's template syntax, which
// is also ServeMux's wildcard syntax.
type route struct {
	method string
	path   string
	// public routes need no token.
	public bool
	// maxBody bounds the body instead of Config.MaxBodyBytes when set.
	maxBody int64
	h       handlerFunc
}

// routes lists every endpoint; the OpenAPI test checks the document against
// this list and against the live handler.
func (s *Server) routes() []route {
	return []route{
		{method: "GET", path: "/healthz", public: true, h: s.healthz},
		{method: "GET", path: "/readyz", public: true, h: s.readyz},
		{method: "GET", path: "/api/v1/openapi.json", public: true, h: s.openAPI},
		// Authenticates itself: browsers send the token as a subprotocol.
		{method: "GET", path: "/api/v1/ws", public: true, h: s.websocketHandler},

		{method: "GET", path: "/api/v1/me", h: s.me},

		{method: "POST", path: "/api/v1/pipelines", h: s.createPipeline},
		{method: "GET", path: "/api/v1/pipelines", h: s.listPipelines},
		{method: "GET", path: "/api/v1/pipelines/{pipelineId}", h: s.getPipeline},
		{method: "PUT", path: "/api/v1/pipelines/{pipelineId}", h: s.updatePipeline},
		{method: "DELETE", path: "/api/v1/pipelines/{pipelineId}", h: s.deletePipeline},

		{method: "GET", path: "/api/v1/pipelines/{pipelineId}/spec", h: s.getSpec},
		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/spec/validate", h: s.validateSpec},
		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/spec/save", h: s.saveSpec},

		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/trigger", h: s.trigger},
		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/webhook/rotate", h: s.rotateWebhookSecret},
		// The signature made with the pipeline's webhook secret is the
		// authentication of a delivery.
		{method: "POST", path: "/api/v1/webhooks/{provider}/{pipelineId}", public: true, maxBody: maxWebhookBody, h: s.receiveWebhook},
		{method: "GET", path: "/api/v1/pipelines/{pipelineId}/runs", h: s.listRuns},
		{method: "GET", path: "/api/v1/pipelines/runs/{runId}", h: s.getRun},
		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/runs/{runId}/stop", h: s.control("stop")},
		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/runs/{runId}/pause", h: s.control("pause")},
		{method: "POST", path: "/api/v1/pipelines/{pipelineId}/runs/{runId}/resume", h: s.control("resume")},
		{method: "GET", path: "/api/v1/pipelines/runs/{runId}/steps/{stepRunId}/logs", h: s.stepLogs},
		{method: "GET", path: "/api/v1/pipelines/runs/{runId}/approvals", h: s.listApprovals},
		{method: "POST", path: "/api/v1/approvals/{approvalId}/approve", h: s.decide(true)},
		{method: "POST", path: "/api/v1/approvals/{approvalId}/reject", h: s.decide(false)},
		{method: "GET", path: "/api/v1/pipelines/runs/{runId}/artifacts", h: s.listArtifacts},
		{method: "GET", path: "/api/v1/pipelines/runs/{runId}/artifacts/{artifactId}", h: s.downloadArtifact},

		{method: "GET", path: "/api/v1/agents", h: s.listAgents},
		{method: "GET", path: "/api/v1/agents/{agentId}", h: s.getAgent},
		{method: "PUT", path: "/api/v1/agents/{agentId}", h: s.updateAgent},
		{method: "DELETE", path: "/api/v1/agents/{agentId}", h: s.deleteAgent},
		{method: "POST", path: "/api/v1/registration-tokens", h: s.createRegistrationToken},
		{method: "GET", path: "/api/v1/registration-tokens", h: s.listRegistrationTokens},
		{method: "DELETE", path: "/api/v1/registration-tokens/{tokenId}", h: s.deleteRegistrationToken},

		{method: "POST", path: "/api/v1/secrets", h: s.createSecret},
		{method: "GET", path: "/api/v1/secrets", h: s.listSecrets},
		{method: "GET", path: "/api/v1/secrets/{secretId}", h: s.getSecret},
		{method: "PUT", path: "/api/v1/secrets/{secretId}", h: s.updateSecret},
		{method: "DELETE", path: "/api/v1/secrets/{secretId}", h: s.deleteSecret},

		{method: "POST", path: "/api/v1/credentials", h: s.createCredential},
		{method: "GET", path: "/api/v1/credentials", h: s.listCredentials},
		{method: "GET", path: "/api/v1/credentials/{credentialId}", h: s.getCredential},
		{method: "PUT", path: "/api/v1/credentials/{credentialId}", h: s.updateCredential},
		{method: "DELETE", path: "/api/v1/credentials/{credentialId}", h: s.deleteCredential},

		// The image build service in the seed's own API (snake_case, no
		// envelope, errors as {"errors":[…]}: see fail).
		{method: "POST", path: "/v1/repositories/{namespace}", h: s.seedCreateRepository},
		{method: "GET", path: "/v1/repositories/{namespace}/{repo_name}", h: s.seedGetRepository},
		{method: "DELETE", path: "/v1/repositories/{namespace}/{repo_name}", h: s.seedDeleteRepository},
		{method: "PUT", path: "/v1/repositories/{namespace}/{repo_name}/build-config", h: s.seedUpdateBuildConfig},
		{method: "GET", path: "/v1/builds", h: s.seedListBuilds},
		{method: "POST", path: "/v1/builds", h: s.seedTriggerBuild},
		{method: "GET", path: "/v1/builds/{build_id}", h: s.seedGetBuild},
		{method: "GET", path: "/v1/builds/{build_id}/logs", h: s.seedBuildLogs},

		// The same service in Runnel's API (camelCase, envelope).
		{method: "POST", path: "/api/v1/image-repositories", h: s.createImageRepository},
		{method: "GET", path: "/api/v1/image-repositories", h: s.listImageRepositories},
		{method: "GET", path: "/api/v1/image-repositories/{namespace}/{repoName}", h: s.getImageRepository},
		{method: "DELETE", path: "/api/v1/image-repositories/{namespace}/{repoName}", h: s.deleteImageRepository},
		{method: "PUT", path: "/api/v1/image-repositories/{namespace}/{repoName}/build-config", h: s.updateImageBuildConfig},
		{method: "GET", path: "/api/v1/image-builds", h: s.listImageBuilds},
		{method: "POST", path: "/api/v1/image-builds", h: s.triggerImageBuild},
		{method: "GET", path: "/api/v1/image-builds/{buildId}", h: s.getImageBuild},
		{method: "GET", path: "/api/v1/image-builds/{buildId}/logs", h: s.imageBuildLogs},
	}
}

// buildHandler wires the routes into a ServeMux behind the outer middleware.
//
// ServeMux refuses two patterns when neither is more specific than the other,
// and the seed's API has such pairs: GET /api/v1/pipelines/{pipelineId}/spec
// and GET /api/v1/pipelines/runs/{runId} both match /api/v1/pipelines/runs/spec.
// Such routes share one mux pattern (the differing segments as wildcards) and
// are told apart by dispatch, literal segments first: "runs/…" is always a
// run, never a pipeline called "runs" (pipeline ids start with pl_).
func (s *Server) buildHandler() http.Handler {
	mux := http.NewServeMux()
	groups := groupRoutes(s.routes())
	for _, g := range groups {
		mux.Handle(g.pattern, s.dispatch(g.members))
	}
	return s.outer(mux)
}

// routeGroup is routes sharing one mux pattern.
type routeGroup struct {
	pattern string
	members []route
}

// groupRoutes puts routes that ServeMux would reject as conflicting into
// groups; a route without conflicts is a group of one with its own pattern.
func groupRoutes(routes []route) []routeGroup {
	n := len(routes)
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			i = parent[i]
		}
		return i
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			if conflicts(routes[i], routes[j]) {
				parent[find(i)] = find(j)
			}
		}
	}
	byRoot := map[int]*routeGroup{}
	var out []*routeGroup
	for i, rt := range routes {
		root := find(i)
		g, ok := byRoot[root]
		if !ok {
			g = &routeGroup{}
			byRoot[root] = g
			out = append(out, g)
		}
		g.members = append(g.members, rt)
	}
	result := make([]routeGroup, 0, len(out))
	for _, g := range out {
		g.pattern = g.members[0].method + " " + mergedPath(g.members)
		// Literal segments first, so a request that two templates match goes to
		// the one naming more of it literally, earlier.
		slices.SortStableFunc(g.members, func(a, b route) int {
			sa, sb := segments(a.path), segments(b.path)
			for k := range sa {
				la, lb := !isWildcard(sa[k]), !isWildcard(sb[k])
				if la != lb {
					if la {
						return -1
					}
					return 1
				}
			}
			return 0
		})
		result = append(result, *g)
	}
	return result
}

func segments(p string) []string { return strings.Split(strings.TrimPrefix(p, "/"), "/") }

func isWildcard(seg string) bool { return strings.HasPrefix(seg, "{") }

// conflicts reports whether ServeMux would refuse a and b together: same
// method and length, each matches some path the other does, and neither is
// more specific (each has a literal where the other has a wildcard).
func conflicts(a, b route) bool {
	if a.method != b.method {
		return false
	}
	sa, sb := segments(a.path), segments(b.path)
	if len(sa) != len(sb) {
		return false
	}
	aLit, bLit := false, false
	for k := range sa {
		wa, wb := isWildcard(sa[k]), isWildcard(sb[k])
		switch {
		case !wa && !wb && sa[k] != sb[k]:
			return false
		case !wa && wb:
			aLit = true
		case wa && !wb:
			bLit = true
		}
	}
	return aLit && bLit
}

// mergedPath is the members' common template with every segment where they
// differ replaced by a wildcard.
func mergedPath(members []route) string {
	segs := segments(members[0].path)
	out := slices.Clone(segs)
	for k := range segs {
		for _, m := range members[1:] {
			if segments(m.path)[k] != segs[k] {
				out[k] = fmt.Sprintf("{seg%d}", k)
				break
			}
		}
	}
	return "/" + strings.Join(out, "/")
}

// dispatch serves a group: the first member whose template matches the path,
// with its wildcards set as path values.
func (s *Server) dispatch(members []route) http.Handler {
	handlers := make([]http.Handler, len(members))
	for i, m := range members {
		handlers[i] = s.wrap(m)
	}
	if len(members) == 1 {
		return handlers[0]
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Split the escaped path, as ServeMux does, so that an encoded "/"
		// stays inside its segment (and is refused by the id check).
		got := segments(r.URL.EscapedPath())
		for i, m := range members {
			tmpl := segments(m.path)
			if len(tmpl) != len(got) {
				continue
			}
			vals := map[string]string{}
			match := true
			for k, seg := range tmpl {
				if isWildcard(seg) {
					v, err := url.PathUnescape(got[k])
					if err != nil {
						v = got[k]
					}
					vals[strings.Trim(seg, "{}")] = v
				} else if seg != got[k] {
					match = false
					break
				}
			}
			if match {
				for k, v := range vals {
					r.SetPathValue(k, v)
				}
				handlers[i].ServeHTTP(w, r)
				return
			}
		}
		s.fail(w, r, errorf(http.StatusNotFound, "no route for %s %s; the API is described at /api/v1/openapi.json", r.Method, r.URL.Path))
	})
}

// wrap applies a route's own middleware: authentication, the body limit, and
// turning the handler's error into an envelope.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rt.public {
			p, err := s.authenticate(r)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		}
		if rt.method != http.MethodGet {
			// Only GET routes take query parameters; a parameter anywhere else
			// is a client mistake worth a clear 400, not silence.
			if _, err := parseQuery(r.URL.RawQuery); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		limit := s.maxBody
		if rt.maxBody > 0 {
			limit = rt.maxBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if err := rt.h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// outer is the middleware around the mux: request id, access log, panic
// recovery, path checks, and envelopes for unmatched routes.
func (s *Server) outer(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := newRequestID()
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, reqID))
		rec := &recorder{ResponseWriter: w}
		rec.Header().Set("X-Request-Id", reqID)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// Last resort: a handler bug must cost one request, not the
				// process, and the client still gets an envelope.
				s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("request_id", reqID), slog.String("method", r.Method),
					slog.String("path", r.URL.Path), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				if !rec.wrote {
					s.fail(rec, r, &apiError{status: http.StatusInternalServerError, msg: "internal error", cause: fmt.Errorf("panic: %v", v)})
				}
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
				slog.String("request_id", reqID), slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", rec.statusCode()), slog.Int64("duration_ms", time.Since(start).Milliseconds()))
		}()
		if err := checkPath(r.URL.Path); err != nil {
			s.fail(rec, r, err)
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			if s.ui != nil && isUIPath(r.URL.Path) {
				s.ui.ServeHTTP(rec, r)
				return
			}
			s.unmatched(rec, r, mux)
			return
		}
		mux.ServeHTTP(rec, r)
	})
}

// unmatched answers a request no route matches with an envelope, keeping
// ServeMux's decision between 404 and 405 (and its Allow header).
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	h, _ := mux.Handler(r)
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		s.fail(w, r, &apiError{
			status: http.StatusMethodNotAllowed,
			msg:    fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, probe.header.Get("Allow")),
			header: http.Header{"Allow": probe.header.Values("Allow")},
		})
		return
	}
	s.fail(w, r, errorf(http.StatusNotFound, "no route for %s %s; the API is described at /api/v1/openapi.json", r.Method, r.URL.Path))
}

// checkPath refuses paths that are not canonical. ServeMux would answer them
// with a redirect to the cleaned path; a client sending "..", "//" or a NUL is
// probing or broken, and a clear 400 serves both better.
func checkPath(p string) error {
	if strings.ContainsRune(p, 0) {
		return errorf(http.StatusBadRequest, "path: contains a NUL byte")
	}
	if !strings.HasPrefix(p, "/") {
		return errorf(http.StatusBadRequest, "path: must start with /")
	}
	for i, seg := range strings.Split(p[1:], "/") {
		last := i == strings.Count(p, "/")-1
		switch {
		case seg == "." || seg == "..":
			return errorf(http.StatusBadRequest, "path: %q segments are not allowed", seg)
		case seg == "" && !last:
			return errorf(http.StatusBadRequest, "path: empty segment (\"//\") is not allowed")
		}
	}
	return nil
}

// recorder remembers the status for the access log and whether anything was
// written, so the panic handler does not write a second response.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushing).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusCode() int {
	if !r.wrote {
		return http.StatusOK
	}
	return r.status
}

// probeWriter captures what ServeMux's own 404/405 handler would send.
type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header { return p.header }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}

type requestIDKey struct{}

// newRequestID returns 16 hex characters identifying a request in the logs
// and in 500 messages.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// healthz says the process serves; it touches nothing else.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	s.ok(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// me describes the caller: the web UI shows who is signed in and offers
// admin-only controls to admins.
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	s.ok(w, http.StatusOK, map[string]string{"subject": p.Subject, "role": p.Role, "tokenId": p.TokenID})
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
		return &apiError{status: http.StatusServiceUnavailable, msg: "not ready: the database is unreachable", cause: err}
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
