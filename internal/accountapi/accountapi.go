// Package accountapi serves the identity part of Runnel's API: users, API
// tokens, the caller (GET /api/v1/me) and the audit log, over the identity
// service and the audit store. The HTTP API mounts its Routes and records
// every change through Record.
package accountapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/project"
	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/store"
)

// API serves the account routes.
type API struct {
	Identity *identity.Service
	// Projects owns projects, members and teams.
	Projects *project.Service
	// SignIn owns single sign-on's providers and the browser sessions.
	SignIn *signin.Service
	// Tokens reads a token's expiry (a session opened with it ends no
	// later).
	Tokens interface {
		GetToken(ctx context.Context, id string) (*store.APIToken, error)
	}
	// ExternalURL is the server's public address (--external-url); ""
	// derives it from each request.
	ExternalURL string
	// Audit stores and lists the audit log.
	Audit store.Audit
	// MaxBody bounds request bodies.
	MaxBody int64
	Now     func() time.Time
	Log     *slog.Logger
}

// Routes lists the account endpoints.
func (a *API) Routes() []apikit.Route {
	return []apikit.Route{
		{Method: "GET", Path: "/api/v1/me", Access: "signed-in", Scope: apikit.ScopeRead, H: a.me},
		{Method: "GET", Path: "/api/v1/users", Access: "admin", Scope: apikit.ScopeAdmin, H: a.listUsers},
		{Method: "POST", Path: "/api/v1/users", Access: "admin", Scope: apikit.ScopeAdmin, H: a.createUser},
		// A user reads their own record with a read token; the service
		// answers 404 for others' unless the caller is an admin.
		{Method: "GET", Path: "/api/v1/users/{userId}", Access: "signed-in", Scope: apikit.ScopeRead, H: a.getUser},
		{Method: "PUT", Path: "/api/v1/users/{userId}", Access: "admin", Scope: apikit.ScopeAdmin, H: a.updateUser},
		{Method: "DELETE", Path: "/api/v1/users/{userId}", Access: "admin", Scope: apikit.ScopeAdmin, H: a.deleteUser},
		{Method: "POST", Path: "/api/v1/users/{userId}/tokens", Access: "admin", Scope: apikit.ScopeAdmin, H: a.createUserToken},
		{Method: "GET", Path: "/api/v1/audit", Access: "admin", Scope: apikit.ScopeAdmin, H: a.listAudit},
		{Method: "GET", Path: "/api/v1/tokens", Access: "signed-in", Scope: apikit.ScopeRead, H: a.listOwnTokens},
		{Method: "POST", Path: "/api/v1/tokens", Access: "signed-in", Scope: apikit.ScopeWrite, H: a.createOwnToken},
		{Method: "DELETE", Path: "/api/v1/tokens/{tokenId}", Access: "signed-in", Scope: apikit.ScopeWrite, H: a.deleteToken},

		// Single sign-on and browser sessions.
		{Method: "GET", Path: "/api/v1/auth/providers", Public: true, Access: "public", H: a.listProviders},
		{Method: "POST", Path: "/api/v1/auth/providers", Scope: apikit.ScopeAdmin, Access: "admin", H: a.createProvider},
		{Method: "GET", Path: "/api/v1/auth/providers/{name}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.getProvider},
		{Method: "PUT", Path: "/api/v1/auth/providers/{name}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.updateProvider},
		{Method: "DELETE", Path: "/api/v1/auth/providers/{name}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.deleteProvider},
		{Method: "GET", Path: "/api/v1/auth/providers/{name}/login", Public: true, Access: "public", NoAudit: true, H: a.login},
		{Method: "GET", Path: "/api/v1/auth/providers/{name}/connect", Scope: apikit.ScopeWrite, Access: "signed-in", NoAudit: true, H: a.connect},
		{Method: "GET", Path: "/api/v1/auth/providers/{name}/callback", Public: true, Access: "public", NoAudit: true, H: a.callback},
		{Method: "POST", Path: "/api/v1/auth/session", Scope: apikit.ScopeRead, Access: "signed-in", H: a.openSession},
		{Method: "DELETE", Path: "/api/v1/auth/session", Scope: apikit.ScopeRead, Access: "signed-in", H: a.closeSession},
		{Method: "POST", Path: "/api/v1/auth/cli/grant", Scope: apikit.ScopeRead, Access: "signed-in", H: a.grantCLI},
		{Method: "POST", Path: "/api/v1/auth/cli/token", Public: true, Access: "public", MaxBody: 4 << 10, H: a.cliToken},
		{Method: "GET", Path: "/api/v1/sessions", Scope: apikit.ScopeRead, Access: "signed-in", H: a.listSessions},
		{Method: "DELETE", Path: "/api/v1/sessions/{sessionId}", Scope: apikit.ScopeRead, Access: "signed-in", H: a.deleteSession},

		// Projects: any user creates one (and owns it); the rest by role.
		{Method: "GET", Path: "/api/v1/projects", Scope: apikit.ScopeRead, Access: "signed-in", H: a.listProjects},
		{Method: "POST", Path: "/api/v1/projects", Scope: apikit.ScopeWrite, Access: "signed-in", H: a.createProject},
		{Method: "GET", Path: "/api/v1/projects/{projectId}", Scope: apikit.ScopeRead, Access: "viewer:projectId", H: a.getProject},
		{Method: "PUT", Path: "/api/v1/projects/{projectId}", Scope: apikit.ScopeWrite, Access: "maintainer:projectId", H: a.updateProject},
		{Method: "DELETE", Path: "/api/v1/projects/{projectId}", Scope: apikit.ScopeWrite, Access: "owner:projectId", H: a.deleteProject},
		{Method: "GET", Path: "/api/v1/projects/{projectId}/members", Scope: apikit.ScopeRead, Access: "viewer:projectId", H: a.listMembers},
		{Method: "PUT", Path: "/api/v1/projects/{projectId}/members/{memberId}", Scope: apikit.ScopeWrite, Access: "owner:projectId", H: a.setMember},
		{Method: "DELETE", Path: "/api/v1/projects/{projectId}/members/{memberId}", Scope: apikit.ScopeWrite, Access: "owner:projectId", H: a.removeMember},

		// Teams: every user sees them (to add one to a project); site
		// admins manage them.
		{Method: "GET", Path: "/api/v1/teams", Scope: apikit.ScopeRead, Access: "signed-in", H: a.listTeams},
		{Method: "POST", Path: "/api/v1/teams", Scope: apikit.ScopeAdmin, Access: "admin", H: a.createTeam},
		{Method: "GET", Path: "/api/v1/teams/{teamId}", Scope: apikit.ScopeRead, Access: "signed-in", H: a.getTeam},
		{Method: "PUT", Path: "/api/v1/teams/{teamId}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.updateTeam},
		{Method: "DELETE", Path: "/api/v1/teams/{teamId}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.deleteTeam},
		{Method: "PUT", Path: "/api/v1/teams/{teamId}/members/{userId}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.teamMember(true)},
		{Method: "DELETE", Path: "/api/v1/teams/{teamId}/members/{userId}", Scope: apikit.ScopeAdmin, Access: "admin", H: a.teamMember(false)},
	}
}

// ok sends Runnel's success envelope.
func (a *API) ok(w http.ResponseWriter, status int, detail any) {
	apikit.WriteOK(w, status, detail, a.Now().Unix())
}

// RequestBodies are the request bodies of the routes by their schema name in
// the OpenAPI document, for the check that the document and the decoders
// accept the same fields.
func RequestBodies() map[string]any {
	return map[string]any{"UserCreate": &userBody{}, "UserUpdate": &userUpdateBody{}, "TokenCreate": &tokenBody{},
		"ProjectCreate": &projectBody{}, "ProjectUpdate": &projectUpdateBody{}, "MemberSet": &memberBody{},
		"TeamCreate": &teamBody{}, "TeamUpdate": &teamUpdateBody{}, "ProviderCreate": &providerBody{}, "ProviderUpdate": &providerBody{},
		"CLIGrant": &cliGrantBody{}, "CLIToken": &cliTokenBody{}}
}

// me describes the caller: the web UI shows who is signed in and offers
// admin-only controls to admins.
func (a *API) me(w http.ResponseWriter, r *http.Request) error {
	p := apikit.PrincipalFrom(r.Context())
	out := meJSON{Subject: p.Subject, Role: p.Role, TokenID: p.TokenID, Scopes: p.Scopes}
	if out.Scopes == nil {
		out.Scopes = runnel.Scopes[:3]
		if p.Role == "admin" {
			out.Scopes = runnel.Scopes
		}
	}
	if p.UserID != "" {
		u, err := a.Identity.GetUser(r.Context(), p, p.UserID)
		if err != nil {
			return err
		}
		j := toUserJSON(u)
		out.User = &j
		gs, err := a.Projects.GrantsOf(r.Context(), p.UserID)
		if err != nil {
			return err
		}
		for _, g := range gs {
			out.Projects = append(out.Projects, toGrantJSON(g))
		}
	}
	if out.Projects == nil {
		out.Projects = []grantJSON{}
	}
	a.ok(w, http.StatusOK, out)
	return nil
}
