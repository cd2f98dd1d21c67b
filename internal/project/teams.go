package project

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/store"
)

var teamName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

// TeamView is a team with its members' ids and logins.
type TeamView struct {
	*store.Team
	Members []TeamMember
}

// TeamMember is one user of a team.
type TeamMember struct {
	UserID, Login string
}

func requireAdmin(ctx context.Context, what string) error {
	if c, ok := runnel.PrincipalFrom(ctx); ok && !c.SiteAdmin() {
		return runnel.Errorf(runnel.ErrForbidden, "%s needs a site admin", what)
	}
	return nil
}

// CreateTeam creates a team (site admins). Its name is what approvers
// name as team:NAME.
func (s *Service) CreateTeam(ctx context.Context, name, description string) (*store.Team, error) {
	if err := requireAdmin(ctx, "creating a team"); err != nil {
		return nil, err
	}
	if !teamName().MatchString(name) {
		return nil, runnel.Invalidf("body.name: %q is not a team name: 1 to 63 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit", name)
	}
	if err := check.Text("body.description", description, 2000, true); err != nil {
		return nil, err
	}
	t := &store.Team{ID: runnel.NewID("tm"), Name: name, Description: description, CreatedAt: s.o.Clock().UTC()}
	if err := s.o.Store.CreateTeam(ctx, t); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: a team %s exists", name)
		}
		return nil, fmt.Errorf("create team %s: %w", name, err)
	}
	return t, nil
}

// ListTeams lists every team (any signed-in user: owners add teams to
// their projects by id).
func (s *Service) ListTeams(ctx context.Context) ([]*store.Team, error) {
	list, err := s.o.Store.ListTeams(ctx)
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return list, nil
}

// GetTeam returns a team with its members.
func (s *Service) GetTeam(ctx context.Context, id string) (*TeamView, error) {
	t, err := s.o.Store.GetTeam(ctx, id)
	if err != nil {
		return nil, runnel.About(err, "get", "team", id)
	}
	ids, err := s.o.Store.TeamMembers(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("members of team %s: %w", id, err)
	}
	v := &TeamView{Team: t, Members: []TeamMember{}}
	for _, uid := range ids {
		login := ""
		if u, err := s.o.Store.GetUser(ctx, uid); err == nil {
			login = u.Login
		}
		v.Members = append(v.Members, TeamMember{UserID: uid, Login: login})
	}
	return v, nil
}

// UpdateTeam changes a team's description (site admins).
func (s *Service) UpdateTeam(ctx context.Context, id, description string) (*TeamView, error) {
	if err := requireAdmin(ctx, "changing a team"); err != nil {
		return nil, err
	}
	if err := check.Text("body.description", description, 2000, true); err != nil {
		return nil, err
	}
	t, err := s.o.Store.GetTeam(ctx, id)
	if err != nil {
		return nil, runnel.About(err, "get", "team", id)
	}
	t.Description = description
	if err := s.o.Store.UpdateTeam(ctx, t); err != nil {
		return nil, runnel.About(err, "update", "team", id)
	}
	return s.GetTeam(ctx, id)
}

// DeleteTeam removes a team, its members and its roles in projects (site
// admins).
func (s *Service) DeleteTeam(ctx context.Context, id string) error {
	if err := requireAdmin(ctx, "deleting a team"); err != nil {
		return err
	}
	return runnel.About(s.o.Store.DeleteTeam(ctx, id), "delete", "team", id)
}

// AddTeamMember adds a user to a team (site admins).
func (s *Service) AddTeamMember(ctx context.Context, teamID, userID string) error {
	if err := requireAdmin(ctx, "changing a team's members"); err != nil {
		return err
	}
	if _, err := s.o.Store.GetTeam(ctx, teamID); err != nil {
		return runnel.About(err, "get", "team", teamID)
	}
	if _, err := s.o.Store.GetUser(ctx, userID); err != nil {
		return runnel.About(err, "get", "user", userID)
	}
	return runnel.About(s.o.Store.AddTeamMember(ctx, teamID, userID), "add a member to", "team", teamID)
}

// RemoveTeamMember removes a user from a team (site admins).
func (s *Service) RemoveTeamMember(ctx context.Context, teamID, userID string) error {
	if err := requireAdmin(ctx, "changing a team's members"); err != nil {
		return err
	}
	err := s.o.Store.RemoveTeamMember(ctx, teamID, userID)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Errorf(runnel.ErrNotFound, "user %s is not a member of team %s", userID, teamID)
	}
	return err
}
