package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/store"
)

// okEnvelope is the success envelope of every JSON response. Detail is left out
// when a call has nothing to return (DELETE), as the seed's API shows.
type okEnvelope struct {
	Code      int    `json:"code"`
	Msg       string `json:"msg"`
	Detail    any    `json:"detail,omitempty"`
	Timestamp int64  `json:"timestamp"`
}

// errEnvelope is the error envelope, sent with the HTTP status that Code
// repeats. Errors and CurrentHeadCommitSHA are extensions for the two errors
// a client can act on without parsing the message: an invalid spec (every
// problem with its position) and a stale expectedHeadCommitSha.
type errEnvelope struct {
	Code                 int         `json:"code"`
	ErrMsg               string      `json:"errMsg"`
	Path                 string      `json:"path"`
	Timestamp            int64       `json:"timestamp"`
	Errors               []specError `json:"errors,omitempty"`
	CurrentHeadCommitSHA string      `json:"currentHeadCommitSha,omitempty"`
}

// apiError is an error whose HTTP status and user-facing message are decided.
// Handlers return it for bad input; mapError builds it from domain errors.
type apiError struct {
	status int
	msg    string
	// errors and currentHead fill the envelope's extension fields.
	errors      []specError
	currentHead string
	// header is set on the response (WWW-Authenticate, Allow).
	header http.Header
	// cause is logged for 5xx answers, never sent.
	cause error
	// field is the path of the bad input, when known (the seed's API sends
	// it); code overrides the seed API's error code chosen by status.
	field string
	code  string
}

func (e *apiError) Error() string { return e.msg }

// errorf returns an apiError with a formatted message.
func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// statusClientClosedRequest is nginx's code for a client that went away; it is
// only logged (nobody reads the answer) and keeps such requests out of the 5xx
// figures.
const statusClientClosedRequest = 499

// mapError turns any error a handler returns into the status and message the
// client sees. It is the one place where domain errors become HTTP statuses
// (see ARCHITECTURE.md): a database outage or any other unexpected error is a
// 500 with a generic message — never a 404 — and its detail goes to the log.
func mapError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var head *store.HeadConflictError
	var fe *imagebuild.FieldError
	var re *imagebuild.ResolveError
	var de *runnel.Error
	var bad *pipeline.InvalidSpecError
	var stale *pipeline.StaleHeadError
	if errors.As(err, &bad) {
		return &apiError{status: http.StatusBadRequest, msg: bad.Error(), errors: bad.Errors}
	}
	if errors.As(err, &stale) {
		return &apiError{status: http.StatusConflict, msg: stale.Msg, currentHead: stale.Current}
	}
	if errors.As(err, &de) && err.Error() == de.Msg {
		// A domain error as written for its reader (not wrapped in more
		// context): its message is the answer's.
		if st := kindStatus(de.Kind); st != 0 {
			return &apiError{status: st, msg: de.Msg}
		}
	}
	switch {
	case errors.As(err, &fe):
		return &apiError{status: http.StatusBadRequest, msg: fe.Error(), field: fe.Field}
	case errors.Is(err, imagebuild.ErrNoRegistry):
		return &apiError{status: http.StatusServiceUnavailable, msg: err.Error(), cause: err}
	case errors.As(err, &re):
		return resolveError(re)
	case errors.As(err, &head):
		return &apiError{
			status:      http.StatusConflict,
			msg:         fmt.Sprintf("body.expectedHeadCommitSha: stale: the pipeline's head is now %s; load the spec again, reapply your change and save with that head", head.Current),
			currentHead: head.Current,
		}
	case errors.Is(err, runnel.ErrNotFound):
		return &apiError{status: http.StatusNotFound, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrConflict), errors.Is(err, runnel.ErrLeaseLost):
		return &apiError{status: http.StatusConflict, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrForbidden):
		return &apiError{status: http.StatusForbidden, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrInvalid):
		return &apiError{status: http.StatusBadRequest, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrUnauthenticated):
		return &apiError{status: http.StatusUnauthorized, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrUpstream):
		return &apiError{status: http.StatusBadGateway, msg: domainMsg(err)}
	case errors.Is(err, runnel.ErrUnprocessable):
		return &apiError{status: http.StatusUnprocessableEntity, msg: domainMsg(err)}
	case errors.Is(err, context.Canceled):
		return &apiError{status: statusClientClosedRequest, msg: "request cancelled", cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, msg: "the server did not finish in time; try again", cause: err}
	default:
		return &apiError{status: http.StatusInternalServerError, msg: "internal error", cause: err}
	}
}

// kindStatus is the HTTP status of a domain error kind (0: not one).
func kindStatus(kind error) int {
	switch kind {
	case runnel.ErrNotFound:
		return http.StatusNotFound
	case runnel.ErrConflict, runnel.ErrLeaseLost:
		return http.StatusConflict
	case runnel.ErrForbidden:
		return http.StatusForbidden
	case runnel.ErrInvalid:
		return http.StatusBadRequest
	case runnel.ErrUnauthenticated:
		return http.StatusUnauthorized
	case runnel.ErrUnavailable:
		return http.StatusServiceUnavailable
	case runnel.ErrUpstream:
		return http.StatusBadGateway
	case runnel.ErrUnprocessable:
		return http.StatusUnprocessableEntity
	}
	return 0
}

// domainMsg is a domain error's message without the sentinel's own text
// that %w wrapping appends ("…: conflict"): the status already says it.
// "not found" stays: "get run run_x: not found" needs it to make sense.
func domainMsg(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{runnel.ErrConflict, runnel.ErrInvalid, runnel.ErrLeaseLost, runnel.ErrForbidden,
		runnel.ErrUnauthenticated, runnel.ErrUnavailable, runnel.ErrUpstream, runnel.ErrUnprocessable} {
		if trimmed, ok := strings.CutSuffix(msg, ": "+sentinel.Error()); ok && trimmed != "" {
			return trimmed
		}
	}
	return msg
}

// writeJSON sends v with status. Encoding cannot fail for the response types
// of this package (no channels, funcs or cyclic values); a write error means the
// client went away, and there is nobody left to tell.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Unreachable for this package's types; answer something valid anyway.
		status = http.StatusInternalServerError
		b = []byte(`{"code":500,"errMsg":"internal error: cannot encode the response","path":"","timestamp":0}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// ok sends a success envelope; detail nil leaves the field out.
func (s *Server) ok(w http.ResponseWriter, status int, detail any) {
	writeJSON(w, status, okEnvelope{Code: 0, Msg: "success", Detail: detail, Timestamp: s.now().Unix()})
}

// fail sends err as an error envelope with its status, logging what the
// client is not told.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := mapError(err)
	msg := ae.msg
	if ae.status >= 500 {
		reqID := requestIDFrom(r.Context())
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", reqID), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", ae.status), slog.Any("error", ae.cause))
		if ae.status == http.StatusInternalServerError {
			msg = fmt.Sprintf("internal error (request id %s): the server log has the details", reqID)
		}
	}
	for k, vs := range ae.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if seedPath(r.URL.Path) {
		writeJSON(w, ae.status, seedErrors{Errors: []seedError{{Code: seedCode(ae), Message: msg, Field: ae.field}}})
		return
	}
	writeJSON(w, ae.status, errEnvelope{
		Code:                 ae.status,
		ErrMsg:               msg,
		Path:                 r.URL.EscapedPath(),
		Timestamp:            s.now().Unix(),
		Errors:               ae.errors,
		CurrentHeadCommitSHA: ae.currentHead,
	})
}

// seedPath reports whether a path is the seed's image build API (/v1/…),
// whose errors are {"errors":[{code, message, field}]} instead of the
// envelope.
func seedPath(p string) bool { return p == "/v1" || strings.HasPrefix(p, "/v1/") }

// seedErrors is the seed API's error body.
type seedErrors struct {
	Errors []seedError `json:"errors"`
}

type seedError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// seedCode is the seed API's error code of an error.
func seedCode(ae *apiError) string {
	if ae.code != "" {
		return ae.code
	}
	switch ae.status {
	case http.StatusBadRequest:
		return "invalid_args"
	case http.StatusUnauthorized:
		return "not_authenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusNotFound:
		return "resource_not_exist"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "resource_conflict"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusBadGateway:
		return "upstream_error"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	case statusClientClosedRequest:
		return "request_cancelled"
	}
	return "server_error"
}

// resolveError maps a branch or tag the source repository could not
// resolve: its answer (no such ref, credential refused) is the client's to
// fix; no answer is the upstream's fault.
func resolveError(re *imagebuild.ResolveError) *apiError {
	switch {
	case re.NotFound:
		return &apiError{status: http.StatusBadRequest, msg: "the branch or tag does not exist in the source repository: " + re.Error()}
	case re.Access:
		return &apiError{status: http.StatusBadRequest, msg: "the source repository refused the credential (or needs one): " + re.Error()}
	}
	return &apiError{status: http.StatusBadGateway, msg: "the source repository did not answer: " + re.Error(), cause: re}
}
