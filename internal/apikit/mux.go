package apikit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// HandlerFunc is a route's handler: it writes a success response itself and
// returns errors, which the mux turns into its dialect's error body.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Route is one documented endpoint. Path uses OpenAPI's template syntax, which
// is also ServeMux's wildcard syntax.
type Route struct {
	Method string
	Path   string
	// Public routes need no token.
	Public bool
	// Scope is what the caller's token must allow (see Allows); every route
	// that is not Public names one.
	Scope string
	// Access is who may call it beyond the scope, in package access's rule
	// language (public, signed-in, admin, body, or ROLE:PARAM such as
	// viewer:pipelineId); every route declares one and Mux.Authorize
	// applies it.
	Access string
	// MaxBody bounds the body instead of Mux.MaxBody when set.
	MaxBody int64
	// Query lists the query parameters a route other than GET accepts (its
	// handler parses them); none by default.
	Query []string
	// NoAudit keeps a change out of the audit log because it is recorded
	// elsewhere (a run's trigger and controls are on the run: who, when,
	// why).
	NoAudit bool
	H       HandlerFunc
}

// Mux serves a route table.
type Mux struct {
	Routes []Route
	// Authenticate checks the caller of every route that is not Public.
	Authenticate func(*http.Request) (Principal, error)
	// Authorize applies a route's Access rule to the authenticated caller
	// (in r's context) before its handler runs; nil: none.
	Authorize func(r *http.Request, rt Route) error
	// Fail writes an error in the dialect of the request's path (and logs
	// what the client is not told).
	Fail func(w http.ResponseWriter, r *http.Request, err error)
	// MaxBody bounds request bodies.
	MaxBody int64
	Log     *slog.Logger
	// Fallback serves the paths no route matches for which FallbackFor is
	// true (the web UI); nil: none.
	Fallback    http.Handler
	FallbackFor func(path string) bool
	// Audit records a change: it is called after every authenticated route
	// other than GET (and not NoAudit) that succeeded, with the caller, the
	// status and the Location the handler set (the created resource).
	Audit func(r *http.Request, rt Route, p Principal, status int, location string)
}

// Handler wires the routes into a ServeMux behind the outer middleware.
//
// ServeMux refuses two patterns when neither is more specific than the other,
// and the seed's API has such pairs: GET /api/v1/pipelines/{pipelineId}/spec
// and GET /api/v1/pipelines/runs/{runId} both match /api/v1/pipelines/runs/spec.
// Such routes share one mux pattern (the differing segments as wildcards) and
// are told apart by dispatch, literal segments first: "runs/…" is always a
// run, never a pipeline called "runs" (pipeline ids start with pl_).
func (m *Mux) Handler() http.Handler {
	mux := http.NewServeMux()
	groups := GroupRoutes(m.Routes)
	for _, g := range groups {
		mux.Handle(g.Pattern, m.dispatch(g.Members))
	}
	return m.outer(mux)
}

// RouteGroup is routes sharing one mux pattern.
type RouteGroup struct {
	Pattern string
	Members []Route
}

// GroupRoutes puts routes that ServeMux would reject as conflicting into
// groups; a route without conflicts is a group of one with its own pattern.
func GroupRoutes(routes []Route) []RouteGroup {
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
	byRoot := map[int]*RouteGroup{}
	var out []*RouteGroup
	for i, rt := range routes {
		root := find(i)
		g, ok := byRoot[root]
		if !ok {
			g = &RouteGroup{}
			byRoot[root] = g
			out = append(out, g)
		}
		g.Members = append(g.Members, rt)
	}
	result := make([]RouteGroup, 0, len(out))
	for _, g := range out {
		g.Pattern = g.Members[0].Method + " " + mergedPath(g.Members)
		// Literal segments first, so a request that two templates match goes to
		// the one naming more of it literally, earlier.
		slices.SortStableFunc(g.Members, func(a, b Route) int {
			sa, sb := segments(a.Path), segments(b.Path)
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
func conflicts(a, b Route) bool {
	if a.Method != b.Method {
		return false
	}
	sa, sb := segments(a.Path), segments(b.Path)
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
func mergedPath(members []Route) string {
	segs := segments(members[0].Path)
	out := slices.Clone(segs)
	for k := range segs {
		for _, m := range members[1:] {
			if segments(m.Path)[k] != segs[k] {
				out[k] = fmt.Sprintf("{seg%d}", k)
				break
			}
		}
	}
	return "/" + strings.Join(out, "/")
}

// dispatch serves a group: the first member whose template matches the path,
// with its wildcards set as path values.
func (m *Mux) dispatch(members []Route) http.Handler {
	handlers := make([]http.Handler, len(members))
	for i, member := range members {
		handlers[i] = m.wrap(member)
	}
	if len(members) == 1 {
		return handlers[0]
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Split the escaped path, as ServeMux does, so that an encoded "/"
		// stays inside its segment (and is refused by the id check).
		got := segments(r.URL.EscapedPath())
		for i, m := range members {
			tmpl := segments(m.Path)
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
		m.Fail(w, r, Errorf(http.StatusNotFound, "no route for %s %s; the API is described at /api/v1/openapi.json", r.Method, r.URL.Path))
	})
}

// wrap applies a route's own middleware: authentication, the body limit, and
// turning the handler's error into an envelope.
func (m *Mux) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rt.Public {
			p, err := m.Authenticate(r)
			if err != nil {
				m.Fail(w, r, err)
				return
			}
			if !Allows(p.Scopes, rt.Scope) {
				m.Fail(w, r, Errorf(http.StatusForbidden, "header Authorization: the token's scopes (%s) do not include %s, which %s %s needs",
					strings.Join(p.Scopes, ", "), rt.Scope, rt.Method, rt.Path))
				return
			}
			r = r.WithContext(WithPrincipal(r.Context(), p))
			if m.Authorize != nil {
				if err := m.Authorize(r, rt); err != nil {
					m.Fail(w, r, err)
					return
				}
			}
		}
		if rt.Method != http.MethodGet {
			// Only GET routes take query parameters; a parameter anywhere else
			// is a client mistake worth a clear 400, not silence.
			if _, err := ParseQuery(r.URL.RawQuery, rt.Query...); err != nil {
				m.Fail(w, r, err)
				return
			}
		}
		limit := m.MaxBody
		if rt.MaxBody > 0 {
			limit = rt.MaxBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if m.Audit != nil && !rt.Public && !rt.NoAudit && rt.Method != http.MethodGet {
			sw := &statusWriter{ResponseWriter: w}
			w = sw
			defer func() {
				if sw.status > 0 && sw.status < 400 {
					m.Audit(r, rt, PrincipalFrom(r.Context()), sw.status, sw.Header().Get("Location"))
				}
			}()
		}
		if err := rt.H(w, r); err != nil {
			m.Fail(w, r, err)
		}
	})
}

// outer is the middleware around the mux: request id, access log, panic
// recovery, path checks, and envelopes for unmatched routes.
func (m *Mux) outer(mux *http.ServeMux) http.Handler {
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
				m.Log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("request_id", reqID), slog.String("method", r.Method),
					slog.String("path", r.URL.Path), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				if !rec.wrote {
					m.Fail(rec, r, &Error{Status: http.StatusInternalServerError, Msg: "internal error", Cause: fmt.Errorf("panic: %v", v)})
				}
			}
			m.Log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
				slog.String("request_id", reqID), slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", rec.statusCode()), slog.Int64("duration_ms", time.Since(start).Milliseconds()))
		}()
		if err := CheckPath(r.URL.Path); err != nil {
			m.Fail(rec, r, err)
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			if m.Fallback != nil && m.FallbackFor(r.URL.Path) {
				m.Fallback.ServeHTTP(rec, r)
				return
			}
			m.unmatched(rec, r, mux)
			return
		}
		mux.ServeHTTP(rec, r)
	})
}

// unmatched answers a request no route matches with an envelope, keeping
// ServeMux's decision between 404 and 405 (and its Allow header).
func (m *Mux) unmatched(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	h, _ := mux.Handler(r)
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		m.Fail(w, r, &Error{
			Status: http.StatusMethodNotAllowed,
			Msg:    fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, probe.header.Get("Allow")),
			Header: http.Header{"Allow": probe.header.Values("Allow")},
		})
		return
	}
	m.Fail(w, r, Errorf(http.StatusNotFound, "no route for %s %s; the API is described at /api/v1/openapi.json", r.Method, r.URL.Path))
}

// CheckPath refuses paths that are not canonical. ServeMux would answer them
// with a redirect to the cleaned path; a client sending "..", "//" or a NUL is
// probing or broken, and a clear 400 serves both better.
func CheckPath(p string) error {
	if strings.ContainsRune(p, 0) {
		return Errorf(http.StatusBadRequest, "path: contains a NUL byte")
	}
	if !strings.HasPrefix(p, "/") {
		return Errorf(http.StatusBadRequest, "path: must start with /")
	}
	for i, seg := range strings.Split(p[1:], "/") {
		last := i == strings.Count(p, "/")-1
		switch {
		case seg == "." || seg == "..":
			return Errorf(http.StatusBadRequest, "path: %q segments are not allowed", seg)
		case seg == "" && !last:
			return Errorf(http.StatusBadRequest, "path: empty segment (\"//\") is not allowed")
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

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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

// RequestID is the id of the request being served (in the logs and in 500
// messages).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
