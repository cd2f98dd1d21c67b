package imageapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/apikit"
)

// API serves the image build routes of both dialects. The HTTP API mounts
// its Routes beside its own, authenticates them and writes their errors
// with WriteError when SeedPath says the seed's dialect.
type API struct {
	// Images is the service; nil: every route answers 503.
	Images Service
	// MaxBody bounds request bodies.
	MaxBody int64
	// ExternalURL is the server's URL as clients reach it ("": from the
	// request), for the absolute next/previous links of build pages.
	ExternalURL string
	// Now is the clock of the envelope's timestamps.
	Now func() time.Time
}

// Routes lists the image build endpoints.
func (a *API) Routes() []apikit.Route {
	return []apikit.Route{
		// The image build service in the seed's own API (snake_case, no
		// envelope, errors as {"errors":[…]}: see WriteError).
		{Method: "POST", Path: "/v1/repositories/{namespace}", Access: "body", Scope: apikit.ScopeWrite, H: a.seedCreateRepository},
		{Method: "GET", Path: "/v1/repositories/{namespace}/{repo_name}", Access: "viewer:namespace", Scope: apikit.ScopeRead, H: a.seedGetRepository},
		{Method: "DELETE", Path: "/v1/repositories/{namespace}/{repo_name}", Access: "maintainer:namespace", Scope: apikit.ScopeWrite, H: a.seedDeleteRepository},
		{Method: "PUT", Path: "/v1/repositories/{namespace}/{repo_name}/build-config", Access: "maintainer:namespace", Scope: apikit.ScopeWrite, H: a.seedUpdateBuildConfig},
		{Method: "GET", Path: "/v1/builds", Access: "signed-in", Scope: apikit.ScopeRead, H: a.seedListBuilds},
		{Method: "POST", Path: "/v1/builds", Access: "body", Scope: apikit.ScopeRun, NoAudit: true, H: a.seedTriggerBuild},
		{Method: "GET", Path: "/v1/builds/{build_id}", Access: "viewer:build_id", Scope: apikit.ScopeRead, H: a.seedGetBuild},
		{Method: "GET", Path: "/v1/builds/{build_id}/logs", Access: "viewer:build_id", Scope: apikit.ScopeRead, H: a.seedBuildLogs},

		// The same service in Runnel's API (camelCase, envelope).
		{Method: "POST", Path: "/api/v1/image-repositories", Access: "body", Scope: apikit.ScopeWrite, H: a.createImageRepository},
		{Method: "GET", Path: "/api/v1/image-repositories", Access: "signed-in", Scope: apikit.ScopeRead, H: a.listImageRepositories},
		{Method: "GET", Path: "/api/v1/image-repositories/{namespace}/{repoName}", Access: "viewer:namespace", Scope: apikit.ScopeRead, H: a.getImageRepository},
		{Method: "DELETE", Path: "/api/v1/image-repositories/{namespace}/{repoName}", Access: "maintainer:namespace", Scope: apikit.ScopeWrite, H: a.deleteImageRepository},
		{Method: "PUT", Path: "/api/v1/image-repositories/{namespace}/{repoName}/build-config", Access: "maintainer:namespace", Scope: apikit.ScopeWrite, H: a.updateImageBuildConfig},
		{Method: "GET", Path: "/api/v1/image-builds", Access: "signed-in", Scope: apikit.ScopeRead, H: a.listImageBuilds},
		{Method: "POST", Path: "/api/v1/image-builds", Access: "body", Scope: apikit.ScopeRun, NoAudit: true, H: a.triggerImageBuild},
		{Method: "GET", Path: "/api/v1/image-builds/{buildId}", Access: "viewer:buildId", Scope: apikit.ScopeRead, H: a.getImageBuild},
		{Method: "GET", Path: "/api/v1/image-builds/{buildId}/logs", Access: "viewer:buildId", Scope: apikit.ScopeRead, H: a.imageBuildLogs},
	}
}

// ok sends Runnel's success envelope.
func (a *API) ok(w http.ResponseWriter, status int, detail any) {
	apikit.WriteOK(w, status, detail, a.Now().Unix())
}

// SeedPath reports whether a path is the seed's image build API (/v1/…),
// whose errors are {"errors":[{code, message, field}]} instead of the
// envelope, and whose clients send "Authorization: Token …".
func SeedPath(p string) bool { return p == "/v1" || strings.HasPrefix(p, "/v1/") }

// seedErrors is the seed API's error body.
type seedErrors struct {
	Errors []seedError `json:"errors"`
}

type seedError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// WriteError sends e in the seed's error style with message msg (what the
// client may read of it).
func WriteError(w http.ResponseWriter, e *apikit.Error, msg string) {
	apikit.WriteJSON(w, e.Status, seedErrors{Errors: []seedError{{Code: seedCode(e), Message: msg, Field: e.Field}}})
}

// seedCode is the seed API's error code of an error.
func seedCode(e *apikit.Error) string {
	if e.Code != "" {
		return e.Code
	}
	switch e.Status {
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
	case apikit.StatusClientClosedRequest:
		return "request_cancelled"
	}
	return "server_error"
}

// RequestBodies are the request bodies of the routes by their schema name in
// the OpenAPI document, for the check that the document and the decoders
// accept the same fields.
func RequestBodies() map[string]any {
	return map[string]any{
		"SeedRepositoryCreate":  &repositoryBody{},
		"SeedBuildConfigInput":  &buildConfigBody{},
		"SeedTagConfigInput":    &tagConfigBody{},
		"SeedBuildConfigUpdate": &buildConfigUpdateBody{},
		"SeedBuildTrigger":      &buildTriggerBody{},
	}
}
