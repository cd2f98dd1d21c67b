// Package access decides who may see and change what: projects are the
// boundary, and a user's role in a project (direct, or through a team; site
// admins hold every role) says what they may do there. Every transport asks
// it: the HTTP routes through their declared Rule, the services for lists and
// for projects named in bodies, the WebSocket and gRPC streams for each
// subscription, the approvals for `role:` and `team:` approvers.
//
// A resource the caller cannot see is not found (its existence is not
// revealed); one they see but may not change is forbidden, naming the role
// needed.
package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// Role is a project role; each includes the ones before it.
type Role int

// The project roles: viewer sees pipelines, runs, logs and artifacts;
// developer also triggers and controls runs and approves where named;
// maintainer also edits pipelines, definitions, secrets, credentials,
// webhooks and image repositories; owner also manages members and deletes
// the project.
const (
	None Role = iota
	Viewer
	Developer
	Maintainer
	Owner
)

// RoleNames are the roles' names, least first.
var RoleNames = []string{"viewer", "developer", "maintainer", "owner"}

func (r Role) String() string {
	if r < Viewer || r > Owner {
		return "none"
	}
	return RoleNames[r-1]
}

// ParseRole reads a role's name.
func ParseRole(s string) (Role, bool) {
	i := slices.Index(RoleNames, s)
	if i < 0 {
		return None, false
	}
	return Role(i + 1), true
}

// Store is what the policy reads.
type Store interface {
	GetProject(ctx context.Context, id string) (*store.Project, error)
	GrantsOf(ctx context.Context, userID string) ([]store.Grant, error)
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
	GetRun(ctx context.Context, id string) (*store.Run, error)
	GetApproval(ctx context.Context, id string) (*store.Approval, error)
	GetSecret(ctx context.Context, id string) (*store.Secret, error)
	GetCredential(ctx context.Context, id string) (*store.Credential, error)
	TeamByName(ctx context.Context, name string) (*store.Team, error)
	TeamsOf(ctx context.Context, userID string) ([]*store.Team, error)
	ProjectOfStepRun(ctx context.Context, stepRunID string) (string, error)
}

// Policy answers access questions from the store.
type Policy struct{ st Store }

// New returns a policy reading st.
func New(st Store) *Policy { return &Policy{st: st} }

// View is what a caller sees: every project (site admins, and Runnel's own
// work), or those they hold a role in.
type View struct {
	All   bool
	Roles map[string]Role
}

// Sees reports whether the view includes project id.
func (v View) Sees(id string) bool { return v.All || v.Roles[id] >= Viewer }

// Role is the view's role in project id (Owner for All).
func (v View) Role(id string) Role {
	if v.All {
		return Owner
	}
	return v.Roles[id]
}

// Projects lists the projects seen (nil for All), sorted.
func (v View) Projects() []string {
	if v.All {
		return nil
	}
	out := make([]string, 0, len(v.Roles))
	for id, r := range v.Roles {
		if r >= Viewer {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// ViewOf is the caller's view. A context without a principal is Runnel's
// own work and sees everything; an agent's token sees nothing.
func (p *Policy) ViewOf(ctx context.Context) (View, error) {
	c, ok := runnel.PrincipalFrom(ctx)
	if !ok || c.SiteAdmin() {
		return View{All: true}, nil
	}
	v := View{Roles: map[string]Role{}}
	if c.UserID == "" || c.Role == "agent" {
		return v, nil
	}
	grants, err := p.st.GrantsOf(ctx, c.UserID)
	if err != nil {
		return View{}, fmt.Errorf("read the roles of %s: %w", c.Subject, err)
	}
	for _, g := range grants {
		if r, ok := ParseRole(g.Role); ok && r > v.Roles[g.ProjectID] {
			v.Roles[g.ProjectID] = r
		}
	}
	return v, nil
}

// RoleIn is the caller's role in project id.
func (p *Policy) RoleIn(ctx context.Context, projectID string) (Role, error) {
	v, err := p.ViewOf(ctx)
	if err != nil {
		return None, err
	}
	return v.Role(projectID), nil
}

// Target names what an action is about, for the messages: "pipeline pl_1".
type Target struct {
	Noun, ID string
}

func (t Target) String() string {
	if t.ID == "" {
		return t.Noun
	}
	return t.Noun + " " + t.ID
}

// Require checks that the caller holds need in project projectID for
// action (a gerund: "deleting it"): no role at all → ErrNotFound about t,
// too small a role → ErrForbidden naming the role needed.
func (p *Policy) Require(ctx context.Context, projectID string, need Role, t Target, action string) error {
	have, err := p.RoleIn(ctx, projectID)
	if err != nil {
		return err
	}
	return Judge(have, need, projectID, t, action)
}

// Judge is Require's verdict for a known role.
func Judge(have, need Role, projectID string, t Target, action string) error {
	switch {
	case have >= need:
		return nil
	case have < Viewer:
		return runnel.Errorf(runnel.ErrNotFound, "%s not found", t)
	}
	return runnel.Errorf(runnel.ErrForbidden, "%s needs the %s role in project %s; you are a %s there",
		action, need, projectID, have)
}

// ProjectOf says which project a resource belongs to: kind is the path
// parameter naming it (pipelineId, runId, approvalId, secretId,
// credentialId, projectId, namespace, buildId). global is true for a
// credential not limited to a project (site-wide: everyone may use it, site
// admins manage it).
func (p *Policy) ProjectOf(ctx context.Context, kind, id string) (projectID string, global bool, err error) {
	switch kind {
	case "projectId", "namespace":
		if _, err := p.st.GetProject(ctx, id); err != nil {
			return "", false, err
		}
		return id, false, nil
	case "pipelineId":
		pl, err := p.st.GetPipeline(ctx, id)
		if err != nil {
			return "", false, err
		}
		return pl.ProjectID, false, nil
	case "runId", "buildId", "build_id":
		run, err := p.st.GetRun(ctx, id)
		if err != nil {
			return "", false, err
		}
		return p.projectOfPipeline(ctx, run.PipelineID)
	case "approvalId":
		a, err := p.st.GetApproval(ctx, id)
		if err != nil {
			return "", false, err
		}
		run, err := p.st.GetRun(ctx, a.RunID)
		if err != nil {
			return "", false, err
		}
		return p.projectOfPipeline(ctx, run.PipelineID)
	case "secretId":
		s, err := p.st.GetSecret(ctx, id)
		if err != nil {
			return "", false, err
		}
		if s.Scope == "pipeline" {
			return p.projectOfPipeline(ctx, s.ScopeID)
		}
		return s.ScopeID, false, nil
	case "credentialId":
		c, err := p.st.GetCredential(ctx, id)
		if err != nil {
			return "", false, err
		}
		return c.ProjectID, c.ProjectID == "", nil
	}
	return "", false, fmt.Errorf("access: no rule finds the project of a %s", kind)
}

func (p *Policy) projectOfPipeline(ctx context.Context, id string) (string, bool, error) {
	pl, err := p.st.GetPipeline(ctx, id)
	if err != nil {
		return "", false, err
	}
	return pl.ProjectID, false, nil
}

// Rule is what a route needs beyond its token scope. Its text form, declared
// on each route:
//
//	public              no caller (the route authenticates otherwise, or not at all)
//	signed-in           any user; the service shows only what they may see
//	admin               site admins only
//	body                the service checks the project the body names
//	ROLE:PARAM          ROLE (viewer…owner) in the project of path parameter PARAM
type Rule struct {
	Kind  string // public | signed-in | admin | body | project
	Role  Role
	Param string
}

// Params are the path parameters a project rule may name.
var Params = []string{"projectId", "namespace", "pipelineId", "runId", "buildId", "build_id", "approvalId", "secretId", "credentialId"}

// ParseRule reads a rule's text form.
func ParseRule(s string) (Rule, error) {
	switch s {
	case "public", "signed-in", "admin", "body":
		return Rule{Kind: s}, nil
	}
	role, param, ok := strings.Cut(s, ":")
	r, known := ParseRole(role)
	if !ok || !known || !slices.Contains(Params, param) {
		return Rule{}, fmt.Errorf("access rule %q: want public, signed-in, admin, body or ROLE:PARAM (ROLE one of %s; PARAM one of %s)",
			s, strings.Join(RoleNames, ", "), strings.Join(Params, ", "))
	}
	return Rule{Kind: "project", Role: r, Param: param}, nil
}

// Check applies a route's rule to the caller in ctx; param returns a path
// parameter's value, action says what the route does ("deleting pipeline
// pl_1"). A resource that does not exist is left to the handler for site
// admins (it words the error) and not found for everyone else.
func (p *Policy) Check(ctx context.Context, rule Rule, param func(string) string, noun string, action string) error {
	c, _ := runnel.PrincipalFrom(ctx)
	switch rule.Kind {
	case "public", "signed-in", "body":
		return nil
	case "admin":
		if !c.SiteAdmin() {
			return runnel.Errorf(runnel.ErrForbidden, "%s needs a site admin", action)
		}
		return nil
	}
	if c.SiteAdmin() {
		return nil
	}
	id := param(rule.Param)
	t := Target{Noun: noun, ID: id}
	projectID, global, err := p.ProjectOf(ctx, rule.Param, id)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Errorf(runnel.ErrNotFound, "%s not found", t)
	}
	if err != nil {
		return fmt.Errorf("find the project of %s: %w", t, err)
	}
	if global && rule.Param == "credentialId" {
		// A connected account is personal: its owner alone sees and
		// changes it.
		if cr, err := p.st.GetCredential(ctx, id); err == nil && cr.OwnerID != "" {
			if cr.OwnerID == c.UserID {
				return nil
			}
			return runnel.Errorf(runnel.ErrNotFound, "%s not found", t)
		}
	}
	if global {
		// A site-wide credential: every user sees it and may use it; only
		// site admins change it.
		if rule.Role <= Viewer {
			return nil
		}
		return runnel.Errorf(runnel.ErrForbidden, "%s needs a site admin: %s is not limited to a project", action, t)
	}
	return p.Require(ctx, projectID, rule.Role, t, action)
}

// IsApprover reports whether the caller may decide a gate of a run in
// project projectID whose approvers are list: they must be a developer of
// the project (site admins are) and, when the list is not empty, match one
// entry: a login, `team:NAME` (a member of the team), `role:ROLE` (at least
// that role in the project; role:admin is a site admin).
func (p *Policy) IsApprover(ctx context.Context, projectID string, list []string) (bool, error) {
	c, ok := runnel.PrincipalFrom(ctx)
	if !ok {
		return false, nil
	}
	role, err := p.RoleIn(ctx, projectID)
	if err != nil {
		return false, err
	}
	if role < Developer {
		return false, nil
	}
	if len(list) == 0 {
		return true, nil
	}
	var teams []*store.Team
	for _, a := range list {
		switch {
		case a == "role:admin":
			if c.SiteAdmin() {
				return true, nil
			}
		case strings.HasPrefix(a, "role:"):
			if need, ok := ParseRole(strings.TrimPrefix(a, "role:")); ok && role >= need {
				return true, nil
			}
		case strings.HasPrefix(a, "team:"):
			if c.UserID == "" {
				continue
			}
			if teams == nil {
				if teams, err = p.st.TeamsOf(ctx, c.UserID); err != nil {
					return false, fmt.Errorf("read the teams of %s: %w", c.Subject, err)
				}
			}
			name := strings.TrimPrefix(a, "team:")
			if slices.ContainsFunc(teams, func(t *store.Team) bool { return t.Name == name }) {
				return true, nil
			}
		case a == c.Subject:
			return true, nil
		}
	}
	return false, nil
}

// Stream checks that the caller may follow a live stream: a step run's log,
// a run's events, a pipeline's or a project's runs (the first id given
// decides). With none, the stream is every run the caller may see: allow
// then says which projects' events to pass (nil: all). A stream of
// something the caller cannot see is ErrNotFound, as for the HTTP routes.
func (p *Policy) Stream(ctx context.Context, projectID, pipelineID, runID, stepRunID string) (allow func(projectID string) bool, err error) {
	var project string
	var t Target
	switch {
	case stepRunID != "":
		t = Target{Noun: "step run", ID: stepRunID}
		project, err = p.st.ProjectOfStepRun(ctx, stepRunID)
	case runID != "":
		t = Target{Noun: "run", ID: runID}
		project, _, err = p.ProjectOf(ctx, "runId", runID)
	case pipelineID != "":
		t = Target{Noun: "pipeline", ID: pipelineID}
		project, _, err = p.ProjectOf(ctx, "pipelineId", pipelineID)
	case projectID != "":
		t = Target{Noun: "project", ID: projectID}
		project = projectID
	default:
		v, err := p.ViewOf(ctx)
		if err != nil || v.All {
			return nil, err
		}
		return v.Sees, nil
	}
	v, verr := p.ViewOf(ctx)
	if verr != nil {
		return nil, verr
	}
	if v.All {
		// Site admins and Runnel itself: the stream says what does not exist.
		return nil, nil
	}
	if errors.Is(err, runnel.ErrNotFound) || (err == nil && !v.Sees(project)) {
		return nil, runnel.Errorf(runnel.ErrNotFound, "%s not found", t)
	}
	if err != nil {
		return nil, fmt.Errorf("find the project of %s: %w", t, err)
	}
	return nil, nil
}
