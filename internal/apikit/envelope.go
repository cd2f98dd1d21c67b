package apikit

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel/internal/pipeline"
)

// okEnvelope is the success envelope of every JSON response of Runnel's own
// API. Detail is left out when a call has nothing to return (DELETE), as the
// seed's API shows.
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
	Code                 int                  `json:"code"`
	ErrMsg               string               `json:"errMsg"`
	Path                 string               `json:"path"`
	Timestamp            int64                `json:"timestamp"`
	Errors               []pipeline.SpecError `json:"errors,omitempty"`
	CurrentHeadCommitSHA string               `json:"currentHeadCommitSha,omitempty"`
}

// WriteJSON sends v with status. Encoding cannot fail for the response types
// of the dialects (no channels, funcs or cyclic values); a write error means
// the client went away, and there is nobody left to tell.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Unreachable for the dialects' types; answer something valid anyway.
		status = http.StatusInternalServerError
		b = []byte(`{"code":500,"errMsg":"internal error: cannot encode the response","path":"","timestamp":0}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteOK sends a success envelope at Unix time ts; detail nil leaves the
// field out.
func WriteOK(w http.ResponseWriter, status int, detail any, ts int64) {
	WriteJSON(w, status, okEnvelope{Code: 0, Msg: "success", Detail: detail, Timestamp: ts})
}

// WriteEnvelopeError sends e as an error envelope with message msg (what the
// client may read of it) at Unix time ts.
func WriteEnvelopeError(w http.ResponseWriter, r *http.Request, e *Error, msg string, ts int64) {
	WriteJSON(w, e.Status, errEnvelope{
		Code:                 e.Status,
		ErrMsg:               msg,
		Path:                 r.URL.EscapedPath(),
		Timestamp:            ts,
		Errors:               e.SpecErrors,
		CurrentHeadCommitSHA: e.CurrentHead,
	})
}

// List is a page of a list.
type List[T any] struct {
	Items    []T `json:"items"`
	Total    int `json:"total"`
	Page     int `json:"page"`
	PageSize int `json:"pageSize"`
}

// WholeList is a list answered in one page (agents, tokens, secrets,
// credentials: lists an administrator reads whole).
func WholeList[T, J any](items []T, conv func(T) J) List[J] {
	out := make([]J, 0, len(items))
	for _, x := range items {
		out = append(out, conv(x))
	}
	return List[J]{Items: out, Total: len(out), Page: 1, PageSize: len(out)}
}

// ExternalBase is the server's base URL as clients reach it: configured
// (--external-url) when set, else from the request (its Host and, behind a
// proxy, X-Forwarded-Proto).
func ExternalBase(r *http.Request, configured string) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0]); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}
