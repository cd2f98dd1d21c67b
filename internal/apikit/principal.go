package apikit

import (
	"context"
	"net/http"
)

// Principal is the authenticated caller.
type Principal struct {
	TokenID string
	Subject string
	Role    string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p (the mux does it for authenticated
// routes).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller of an authenticated route.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
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
