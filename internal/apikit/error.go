package apikit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/store"
)

// Error is an error whose HTTP status and user-facing message are decided.
// Handlers return it for bad input; MapError builds it from domain errors.
type Error struct {
	Status int
	Msg    string
	// SpecErrors and CurrentHead fill the envelope's extension fields.
	SpecErrors  []pipeline.SpecError
	CurrentHead string
	// Header is set on the response (WWW-Authenticate, Allow).
	Header http.Header
	// Cause is logged for 5xx answers, never sent.
	Cause error
	// Field is the path of the bad input, when known (the seed's API sends
	// it); Code overrides a dialect's error code chosen by status.
	Field string
	Code  string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an Error with a formatted message.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// StatusClientClosedRequest is nginx's code for a client that went away; it
// is only logged (nobody reads the answer) and keeps such requests out of the
// 5xx figures.
const StatusClientClosedRequest = 499

// MapError turns any error a handler returns into the status and message the
// client sees. It is the one place where domain errors become HTTP statuses
// (see docs/architecture.md): a database outage or any other unexpected error
// is a 500 with a generic message — never a 404 — and its detail goes to the
// log.
func MapError(err error) *Error {
	var ae *Error
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
		return &Error{Status: http.StatusBadRequest, Msg: bad.Error(), SpecErrors: bad.Errors}
	}
	if errors.As(err, &stale) {
		return &Error{Status: http.StatusConflict, Msg: stale.Msg, CurrentHead: stale.Current}
	}
	if errors.As(err, &de) && err.Error() == de.Msg {
		// A domain error as written for its reader (not wrapped in more
		// context): its message is the answer's.
		if st := KindStatus(de.Kind); st != 0 {
			return &Error{Status: st, Msg: de.Msg}
		}
	}
	switch {
	case errors.As(err, &fe):
		return &Error{Status: http.StatusBadRequest, Msg: fe.Error(), Field: fe.Field}
	case errors.Is(err, imagebuild.ErrNoRegistry):
		return &Error{Status: http.StatusServiceUnavailable, Msg: err.Error(), Cause: err}
	case errors.As(err, &re):
		return resolveError(re)
	case errors.As(err, &head):
		return &Error{
			Status:      http.StatusConflict,
			Msg:         fmt.Sprintf("body.expectedHeadCommitSha: stale: the pipeline's head is now %s; load the spec again, reapply your change and save with that head", head.Current),
			CurrentHead: head.Current,
		}
	}
	for _, kind := range domainKinds {
		if errors.Is(err, kind) {
			return &Error{Status: KindStatus(kind), Msg: DomainMsg(err)}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Status: StatusClientClosedRequest, Msg: "request cancelled", Cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Msg: "the server did not finish in time; try again", Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Msg: "internal error", Cause: err}
}

// domainKinds are the vocabulary's error kinds, in the order MapError tries
// them on a wrapped error.
var domainKinds = []error{runnel.ErrNotFound, runnel.ErrConflict, runnel.ErrLeaseLost, runnel.ErrForbidden,
	runnel.ErrInvalid, runnel.ErrUnauthenticated, runnel.ErrUnavailable, runnel.ErrUpstream, runnel.ErrUnprocessable}

// KindStatus is the HTTP status of a domain error kind (0: not one).
func KindStatus(kind error) int {
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

// DomainMsg is a domain error's message without the sentinel's own text
// that %w wrapping appends ("…: conflict"): the status already says it.
// "not found" stays: "get run run_x: not found" needs it to make sense.
func DomainMsg(err error) string {
	msg := err.Error()
	for _, sentinel := range domainKinds[1:] {
		if trimmed, ok := strings.CutSuffix(msg, ": "+sentinel.Error()); ok && trimmed != "" {
			return trimmed
		}
	}
	return msg
}

// resolveError maps a branch or tag the source repository could not
// resolve: its answer (no such ref, credential refused) is the client's to
// fix; no answer is the upstream's fault.
func resolveError(re *imagebuild.ResolveError) *Error {
	switch {
	case re.NotFound:
		return &Error{Status: http.StatusBadRequest, Msg: "the branch or tag does not exist in the source repository: " + re.Error()}
	case re.Access:
		return &Error{Status: http.StatusBadRequest, Msg: "the source repository refused the credential (or needs one): " + re.Error()}
	}
	return &Error{Status: http.StatusBadGateway, Msg: "the source repository did not answer: " + re.Error(), Cause: re}
}
