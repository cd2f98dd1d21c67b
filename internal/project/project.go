// Package project is the projects service: projects as resources (the access
// boundary), their members and roles, and teams. Who may do what is the
// access policy's; this package applies it to projects themselves and keeps
// the invariants (a project keeps an owner; a project is deleted only once
// it holds nothing).
package project

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/store"
)

// Store is what the service reads and writes.
type Store interface {
	store.Projects
	store.Teams
	GetUser(ctx context.Context, id string) (*store.User, error)
	UserByLogin(ctx context.Context, login string) (*store.User, error)
	ListPipelines(ctx context.Context, f store.PipelineFilter) ([]*store.Pipeline, int, error)
	ListSecrets(ctx context.Context, f store.SecretFilter) ([]*store.Secret, error)
	ListCredentials(ctx context.Context, projectID string) ([]*store.Credential, error)
	ListImageRepositories(ctx context.Context, namespace string) ([]*store.ImageRepository, error)
}

// Options configure a Service; Store and Access are required.
type Options struct {
	Store  Store
	Access *access.Policy
	Clock  func() time.Time
}

// Service is the projects and teams service.
type Service struct{ o Options }

// New returns a service for o.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Service{o: o}
}

// Fields are a project's editable fields; nil: unchanged.
type Fields struct {
	Name        *string
	Description *string
}

func (f Fields) check() error {
	if f.Name != nil {
		if err := check.Text("body.name", *f.Name, 200, false); err != nil {
			return err
		}
	}
	if f.Description != nil {
		if err := check.Text("body.description", *f.Description, 2000, true); err != nil {
			return err
		}
	}
	return nil
}

// Create creates a project; its creator becomes its owner. Any user may
// create one (their token needs the write scope).
func (s *Service) Create(ctx context.Context, id string, f Fields) (*store.Project, error) {
	if err := check.ProjectID("body.projectId", id); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	c, ok := runnel.PrincipalFrom(ctx)
	if ok && c.UserID == "" && !c.SiteAdmin() {
		return nil, runnel.Errorf(runnel.ErrForbidden, "creating a project needs a user's token")
	}
	now := s.o.Clock().UTC()
	p := &store.Project{ID: id, Name: id, CreatedBy: c.Subject, CreatedAt: now, UpdatedAt: now}
	if f.Name != nil && *f.Name != "" {
		p.Name = *f.Name
	}
	if f.Description != nil {
		p.Description = *f.Description
	}
	if err := s.o.Store.CreateProject(ctx, p); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			if !s.sees(ctx, id) {
				// Not revealed to those who cannot see it, but the id is taken.
				return nil, runnel.Errorf(runnel.ErrConflict, "body.projectId: the id %s is taken; choose another", id)
			}
			return nil, runnel.Errorf(runnel.ErrConflict, "body.projectId: a project %s exists", id)
		}
		return nil, fmt.Errorf("create project %s: %w", id, err)
	}
	if ok && c.UserID != "" {
		m := &store.Member{ProjectID: id, Kind: store.MemberUser, MemberID: c.UserID, Role: access.Owner.String(), CreatedAt: now, UpdatedAt: now}
		if err := s.o.Store.SetMember(ctx, m); err != nil {
			return nil, fmt.Errorf("make %s the owner of project %s: %w", c.Subject, id, err)
		}
	}
	return p, nil
}

func (s *Service) sees(ctx context.Context, id string) bool {
	r, err := s.o.Access.RoleIn(ctx, id)
	return err == nil && r >= access.Viewer
}

// Ensure makes sure project id exists before something is created in it (a
// pipeline, an image repository): a new id becomes a project the caller
// owns; an existing one needs role need (field names the id's field for the
// messages).
func (s *Service) Ensure(ctx context.Context, field, id string, need access.Role, action string) error {
	if err := check.ProjectID(field, id); err != nil {
		return err
	}
	_, err := s.o.Store.GetProject(ctx, id)
	if errors.Is(err, runnel.ErrNotFound) {
		if _, err := s.Create(ctx, id, Fields{}); err != nil && !errors.Is(err, runnel.ErrConflict) {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("get project %s: %w", id, err)
	}
	return s.o.Access.Require(ctx, id, need, access.Target{Noun: "project", ID: id}, action)
}

// Get returns a project the caller may see.
func (s *Service) Get(ctx context.Context, id string) (*store.Project, error) {
	if err := s.o.Access.Require(ctx, id, access.Viewer, access.Target{Noun: "project", ID: id}, "reading it"); err != nil {
		return nil, err
	}
	p, err := s.o.Store.GetProject(ctx, id)
	return p, runnel.About(err, "get", "project", id)
}

// Listed is a project with the caller's role in it.
type Listed struct {
	*store.Project
	Role access.Role
}

// List lists the projects the caller may see, with their role.
func (s *Service) List(ctx context.Context) ([]Listed, error) {
	v, err := s.o.Access.ViewOf(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.o.Store.ListProjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	out := []Listed{}
	for _, p := range all {
		if v.Sees(p.ID) {
			out = append(out, Listed{Project: p, Role: v.Role(p.ID)})
		}
	}
	return out, nil
}

// Update changes a project's name or description (maintainer).
func (s *Service) Update(ctx context.Context, id string, f Fields) (*store.Project, error) {
	if err := s.o.Access.Require(ctx, id, access.Maintainer, access.Target{Noun: "project", ID: id}, "changing the project"); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	p, err := s.o.Store.GetProject(ctx, id)
	if err != nil {
		return nil, runnel.About(err, "get", "project", id)
	}
	if f.Name != nil {
		p.Name = *f.Name
		if p.Name == "" {
			p.Name = p.ID
		}
	}
	if f.Description != nil {
		p.Description = *f.Description
	}
	p.UpdatedAt = s.o.Clock().UTC()
	return p, runnel.About(s.o.Store.UpdateProject(ctx, p), "update", "project", id)
}

// Delete removes an empty project (owner): one that still holds pipelines,
// secrets, credentials or image repositories is a conflict naming them, so
// that nothing is lost by accident.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.o.Access.Require(ctx, id, access.Owner, access.Target{Noun: "project", ID: id}, "deleting the project"); err != nil {
		return err
	}
	var held []string
	if _, n, err := s.o.Store.ListPipelines(ctx, store.PipelineFilter{ProjectID: id, Limit: 1}); err != nil {
		return fmt.Errorf("list the pipelines of project %s: %w", id, err)
	} else if n > 0 {
		held = append(held, fmt.Sprintf("%d pipeline(s)", n))
	}
	if list, err := s.o.Store.ListSecrets(ctx, store.SecretFilter{Scope: "project", ScopeID: id}); err != nil {
		return fmt.Errorf("list the secrets of project %s: %w", id, err)
	} else if len(list) > 0 {
		held = append(held, fmt.Sprintf("%d secret(s)", len(list)))
	}
	if list, err := s.o.Store.ListCredentials(ctx, id); err != nil {
		return fmt.Errorf("list the credentials of project %s: %w", id, err)
	} else if len(list) > 0 {
		held = append(held, fmt.Sprintf("%d credential(s)", len(list)))
	}
	if list, err := s.o.Store.ListImageRepositories(ctx, id); err != nil {
		return fmt.Errorf("list the image repositories of project %s: %w", id, err)
	} else if len(list) > 0 {
		held = append(held, fmt.Sprintf("%d image repositories", len(list)))
	}
	if len(held) > 0 {
		return runnel.Errorf(runnel.ErrConflict, "project %s still holds %s: delete them first", id, strings.Join(held, ", "))
	}
	return runnel.About(s.o.Store.DeleteProject(ctx, id), "delete", "project", id)
}

// MemberView is a member with their name.
type MemberView struct {
	*store.Member
	// Name is the user's login or the team's name ("" when it is gone).
	Name string
}

// Members lists a project's members (viewer).
func (s *Service) Members(ctx context.Context, id string) ([]MemberView, error) {
	if err := s.o.Access.Require(ctx, id, access.Viewer, access.Target{Noun: "project", ID: id}, "reading its members"); err != nil {
		return nil, err
	}
	ms, err := s.o.Store.Members(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list members of project %s: %w", id, err)
	}
	out := make([]MemberView, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberView{Member: m, Name: s.memberName(ctx, m.Kind, m.MemberID)})
	}
	return out, nil
}

func (s *Service) memberName(ctx context.Context, kind, id string) string {
	if kind == store.MemberTeam {
		if t, err := s.o.Store.GetTeam(ctx, id); err == nil {
			return t.Name
		}
		return ""
	}
	if u, err := s.o.Store.GetUser(ctx, id); err == nil {
		return u.Login
	}
	return ""
}

// resolveMember finds who ref names: a user's id (usr_…) or login, a
// team's id (tm_…) or team:NAME. An unknown one is not found.
func (s *Service) resolveMember(ctx context.Context, ref string) (kind, id, name string, err error) {
	switch {
	case strings.HasPrefix(ref, "usr_"):
		kind, id = store.MemberUser, ref
	case strings.HasPrefix(ref, "tm_"):
		kind, id = store.MemberTeam, ref
	case strings.HasPrefix(ref, "team:"):
		t, err := s.o.Store.TeamByName(ctx, strings.TrimPrefix(ref, "team:"))
		if err != nil {
			return "", "", "", runnel.About(err, "get", "team", strings.TrimPrefix(ref, "team:"))
		}
		return store.MemberTeam, t.ID, t.Name, nil
	default:
		if identity.CheckLogin("path parameter memberId", ref) != nil {
			return "", "", "", runnel.Invalidf("path parameter memberId: %q is not a user (usr_… or a login) nor a team (tm_… or team:NAME)", ref)
		}
		u, err := s.o.Store.UserByLogin(ctx, ref)
		if err != nil {
			return "", "", "", runnel.About(err, "get", "user", ref)
		}
		return store.MemberUser, u.ID, u.Login, nil
	}
	name = s.memberName(ctx, kind, id)
	if name == "" {
		return "", "", "", runnel.Errorf(runnel.ErrNotFound, "%s %s not found", kind, id)
	}
	return kind, id, name, nil
}

// SetMember gives a user or a team (ref: usr_… or a login, tm_… or
// team:NAME) a role in a project (owner).
func (s *Service) SetMember(ctx context.Context, projectID, ref, role string) (*MemberView, error) {
	if err := s.o.Access.Require(ctx, projectID, access.Owner, access.Target{Noun: "project", ID: projectID}, "managing its members"); err != nil {
		return nil, err
	}
	r, ok := access.ParseRole(role)
	if !ok {
		return nil, runnel.Invalidf("body.role: %q is not a role; accepted: %s", role, strings.Join(access.RoleNames, ", "))
	}
	kind, memberID, name, err := s.resolveMember(ctx, ref)
	if err != nil {
		return nil, err
	}
	if r < access.Owner {
		if err := s.keepAnOwner(ctx, projectID, kind, memberID); err != nil {
			return nil, err
		}
	}
	now := s.o.Clock().UTC()
	m := &store.Member{ProjectID: projectID, Kind: kind, MemberID: memberID, Role: r.String(), CreatedAt: now, UpdatedAt: now}
	if err := s.o.Store.SetMember(ctx, m); err != nil {
		return nil, runnel.About(err, "set a member of", "project", projectID)
	}
	return &MemberView{Member: m, Name: name}, nil
}

// RemoveMember takes a user's or a team's role away (owner).
func (s *Service) RemoveMember(ctx context.Context, projectID, ref string) error {
	if err := s.o.Access.Require(ctx, projectID, access.Owner, access.Target{Noun: "project", ID: projectID}, "managing its members"); err != nil {
		return err
	}
	kind, memberID, _, err := s.resolveMember(ctx, ref)
	if err != nil {
		return err
	}
	if err := s.keepAnOwner(ctx, projectID, kind, memberID); err != nil {
		return err
	}
	err = s.o.Store.RemoveMember(ctx, projectID, kind, memberID)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Errorf(runnel.ErrNotFound, "%s %s is not a member of project %s", kind, memberID, projectID)
	}
	return err
}

// keepAnOwner refuses to take the owner role from member (kind, id) when no
// other member owns the project.
func (s *Service) keepAnOwner(ctx context.Context, projectID, kind, id string) error {
	ms, err := s.o.Store.Members(ctx, projectID)
	if err != nil {
		return fmt.Errorf("list members of project %s: %w", projectID, err)
	}
	was := false
	for _, m := range ms {
		if m.Role != access.Owner.String() {
			continue
		}
		if m.Kind == kind && m.MemberID == id {
			was = true
			continue
		}
		return nil
	}
	if !was {
		return nil
	}
	return runnel.Errorf(runnel.ErrConflict, "%s %s is the last owner of project %s: make another member owner first", kind, id, projectID)
}

// Grant is one of the caller's roles, for GET /api/v1/me.
type Grant struct {
	ProjectID string
	Role      access.Role
	// Via names the teams the role comes through ("" direct).
	Via []string
}

// GrantsOf lists a user's effective role per project, and through which
// teams.
func (s *Service) GrantsOf(ctx context.Context, userID string) ([]Grant, error) {
	gs, err := s.o.Store.GrantsOf(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("roles of %s: %w", userID, err)
	}
	var out []Grant
	idx := map[string]int{}
	for _, g := range gs {
		r, _ := access.ParseRole(g.Role)
		i, ok := idx[g.ProjectID]
		if !ok {
			idx[g.ProjectID] = len(out)
			out = append(out, Grant{ProjectID: g.ProjectID})
			i = len(out) - 1
		}
		if r > out[i].Role {
			out[i].Role = r
		}
		if g.TeamName != "" {
			out[i].Via = append(out[i].Via, "team:"+g.TeamName)
		}
	}
	return out, nil
}
