package apikit

import (
	"context"
	"net/http"

	"github.com/runnel-ci/runnel"
)

// Principal is the authenticated caller (the vocabulary's).
type Principal = runnel.Principal

// The scopes of API tokens (the vocabulary's).
const (
	ScopeRead  = runnel.ScopeRead
	ScopeRun   = runnel.ScopeRun
	ScopeWrite = runnel.ScopeWrite
	ScopeAdmin = runnel.ScopeAdmin
)

// Allows is runnel.Allows.
func Allows(scopes []string, need string) bool { return runnel.Allows(scopes, need) }

// WithPrincipal returns ctx carrying p (the mux does it for authenticated
// routes).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return runnel.WithPrincipal(ctx, p)
}

// PrincipalFrom returns the caller of an authenticated route.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := runnel.PrincipalFrom(ctx)
	return p
}

// SubjectOr returns v, or the caller's subject when v is empty: createdBy,
// triggeredBy, operator and editor default to whoever holds the token.
func SubjectOr(r *http.Request, v string) string {
	if v != "" {
		return v
	}
	return PrincipalFrom(r.Context()).Subject
}
