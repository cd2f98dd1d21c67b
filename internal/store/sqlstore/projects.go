package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/runnel-ci/runnel/internal/store"
)

const projectCols = `id, name, description, created_by, created_at, updated_at`

func scanProject(sc scanner) (*store.Project, error) {
	var (
		p                store.Project
		created, updated int64
	)
	if err := sc.Scan(&p.ID, &p.Name, &p.Description, &p.CreatedBy, &created, &updated); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &p, nil
}

// CreateProject stores a new project; zero times become now. An empty id →
// ErrInvalid, a used id → ErrConflict. p is not modified.
func (s *Store) CreateProject(ctx context.Context, p *store.Project) error {
	op := "create project"
	if p == nil || p.ID == "" {
		return invalid(op, "the project id must not be empty")
	}
	op += " " + p.ID
	now := s.nowUTC()
	created := orNow(p.CreatedAt, now)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO projects (`+projectCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
			p.ID, p.Name, p.Description, p.CreatedBy, micros(created), micros(orNow(p.UpdatedAt, created)))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a project %s exists: %w", op, p.ID, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// GetProject returns a project by id.
func (s *Store) GetProject(ctx context.Context, id string) (*store.Project, error) {
	op := "get project " + id
	p, err := scanProject(s.queryRow(ctx, s.r, `SELECT `+projectCols+` FROM projects WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return p, nil
}

// ListProjects lists every project by id.
func (s *Store) ListProjects(ctx context.Context) ([]*store.Project, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+projectCols+` FROM projects ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	ps, err := collect(rows, scanProject)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return ps, nil
}

// UpdateProject replaces a project's name, description and update time.
func (s *Store) UpdateProject(ctx context.Context, p *store.Project) error {
	op := "update project"
	if p == nil || p.ID == "" {
		return invalid(op, "the project id must not be empty")
	}
	op += " " + p.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE projects SET name = ?, description = ?, updated_at = ? WHERE id = ?`,
			p.Name, p.Description, micros(orNow(p.UpdatedAt, s.nowUTC())), p.ID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// DeleteProject removes a project and, in the same transaction, its members.
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	op := "delete project " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM projects WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(op)
		}
		_, err = s.exec(ctx, tx, `DELETE FROM project_members WHERE project_id = ?`, id)
		return err
	})
	return wrapOp(op, err)
}

const memberCols = `project_id, kind, member_id, role, created_at, updated_at`

func scanMember(sc scanner) (*store.Member, error) {
	var (
		m                store.Member
		created, updated int64
	)
	if err := sc.Scan(&m.ProjectID, &m.Kind, &m.MemberID, &m.Role, &created, &updated); err != nil {
		return nil, err
	}
	m.CreatedAt, m.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &m, nil
}

// SetMember creates a membership or changes its role. The project must
// exist (ErrNotFound); the member is not checked (the caller does).
func (s *Store) SetMember(ctx context.Context, m *store.Member) error {
	op := "set member"
	switch {
	case m == nil || m.ProjectID == "" || m.MemberID == "":
		return invalid(op, "the project and member ids must not be empty")
	case m.Kind != store.MemberUser && m.Kind != store.MemberTeam:
		return invalid(op, "the member kind must be user or team")
	case m.Role == "":
		return invalid(op, "the role must not be empty")
	}
	op = fmt.Sprintf("set %s %s in project %s", m.Kind, m.MemberID, m.ProjectID)
	now := micros(orNow(m.UpdatedAt, s.nowUTC()))
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var one int
		if err := s.queryRow(ctx, tx, `SELECT 1 FROM projects WHERE id = ?`, m.ProjectID).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("project %s: %w", m.ProjectID, store.ErrNotFound)
			}
			return err
		}
		ok, err := s.execOne(ctx, tx, `UPDATE project_members SET role = ?, updated_at = ?
			WHERE project_id = ? AND kind = ? AND member_id = ?`, m.Role, now, m.ProjectID, m.Kind, m.MemberID)
		if err != nil || ok {
			return err
		}
		_, err = s.exec(ctx, tx, `INSERT INTO project_members (`+memberCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
			m.ProjectID, m.Kind, m.MemberID, m.Role, micros(orNow(m.CreatedAt, s.nowUTC())), now)
		return err
	})
	return wrapOp(op, err)
}

// RemoveMember removes a membership.
func (s *Store) RemoveMember(ctx context.Context, projectID, kind, memberID string) error {
	op := fmt.Sprintf("remove %s %s from project %s", kind, memberID, projectID)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM project_members WHERE project_id = ? AND kind = ? AND member_id = ?`,
			projectID, kind, memberID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// Members lists a project's members, teams after users, each by id.
func (s *Store) Members(ctx context.Context, projectID string) ([]*store.Member, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+memberCols+` FROM project_members WHERE project_id = ?
		ORDER BY kind DESC, member_id`, projectID)
	if err != nil {
		return nil, fmt.Errorf("list members of project %s: %w", projectID, err)
	}
	ms, err := collect(rows, scanMember)
	if err != nil {
		return nil, fmt.Errorf("list members of project %s: %w", projectID, err)
	}
	return ms, nil
}

// GrantsOf lists a user's roles: direct memberships and those of the teams
// they belong to.
func (s *Store) GrantsOf(ctx context.Context, userID string) ([]store.Grant, error) {
	rows, err := s.query(ctx, s.r, `
		SELECT m.project_id, m.role, '', '' FROM project_members m WHERE m.kind = 'user' AND m.member_id = ?
		UNION ALL
		SELECT m.project_id, m.role, t.id, t.name FROM team_members tm
		JOIN teams t ON t.id = tm.team_id
		JOIN project_members m ON m.kind = 'team' AND m.member_id = tm.team_id
		WHERE tm.user_id = ?
		ORDER BY 1, 3`, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("grants of user %s: %w", userID, err)
	}
	gs, err := collect(rows, func(sc scanner) (store.Grant, error) {
		var g store.Grant
		err := sc.Scan(&g.ProjectID, &g.Role, &g.TeamID, &g.TeamName)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("grants of user %s: %w", userID, err)
	}
	return gs, nil
}

const teamCols = `id, name, description, created_at`

func scanTeam(sc scanner) (*store.Team, error) {
	var (
		t       store.Team
		created int64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Description, &created); err != nil {
		return nil, err
	}
	t.CreatedAt = fromMicros(created)
	return &t, nil
}

// CreateTeam stores a new team.
func (s *Store) CreateTeam(ctx context.Context, t *store.Team) error {
	op := "create team"
	switch {
	case t == nil || t.ID == "":
		return invalid(op, "the team id must not be empty")
	case t.Name == "":
		return invalid(op+" "+t.ID, "the name must not be empty")
	}
	op += " " + t.Name
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO teams (`+teamCols+`) VALUES (?, ?, ?, ?)`,
			t.ID, t.Name, t.Description, micros(orNow(t.CreatedAt, s.nowUTC())))
		return err
	})
	if s.d.isUnique(err) {
		return fmt.Errorf("%s: a team with this id or the name %s exists: %w", op, t.Name, store.ErrConflict)
	}
	return wrapOp(op, err)
}

// GetTeam returns a team by id.
func (s *Store) GetTeam(ctx context.Context, id string) (*store.Team, error) {
	return s.teamBy(ctx, "get team "+id, `id`, id)
}

// TeamByName returns a team by name.
func (s *Store) TeamByName(ctx context.Context, name string) (*store.Team, error) {
	return s.teamBy(ctx, "team by name "+name, `name`, name)
}

func (s *Store) teamBy(ctx context.Context, op, col, v string) (*store.Team, error) {
	t, err := scanTeam(s.queryRow(ctx, s.r, `SELECT `+teamCols+` FROM teams WHERE `+col+` = ?`, v))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// ListTeams lists every team by name.
func (s *Store) ListTeams(ctx context.Context) ([]*store.Team, error) {
	return s.teams(ctx, "list teams", `SELECT `+teamCols+` FROM teams ORDER BY name`)
}

// TeamsOf lists the teams a user is a member of, by name.
func (s *Store) TeamsOf(ctx context.Context, userID string) ([]*store.Team, error) {
	return s.teams(ctx, "teams of user "+userID, `SELECT t.id, t.name, t.description, t.created_at FROM teams t
		JOIN team_members m ON m.team_id = t.id WHERE m.user_id = ? ORDER BY t.name`, userID)
}

func (s *Store) teams(ctx context.Context, op, q string, args ...any) ([]*store.Team, error) {
	rows, err := s.query(ctx, s.r, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ts, err := collect(rows, scanTeam)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return ts, nil
}

// UpdateTeam replaces a team's description.
func (s *Store) UpdateTeam(ctx context.Context, t *store.Team) error {
	op := "update team"
	if t == nil || t.ID == "" {
		return invalid(op, "the team id must not be empty")
	}
	op += " " + t.ID
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `UPDATE teams SET description = ? WHERE id = ?`, t.Description, t.ID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// DeleteTeam removes a team with its members and project memberships, in
// one transaction.
func (s *Store) DeleteTeam(ctx context.Context, id string) error {
	op := "delete team " + id
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM teams WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound(op)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM team_members WHERE team_id = ?`, id); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `DELETE FROM project_members WHERE kind = 'team' AND member_id = ?`, id)
		return err
	})
	return wrapOp(op, err)
}

// AddTeamMember adds a user to a team (no change when already one).
func (s *Store) AddTeamMember(ctx context.Context, teamID, userID string) error {
	op := fmt.Sprintf("add user %s to team %s", userID, teamID)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		var one int
		if err := s.queryRow(ctx, tx, `SELECT 1 FROM teams WHERE id = ?`, teamID).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("team %s: %w", teamID, store.ErrNotFound)
			}
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO team_members (team_id, user_id, created_at) VALUES (?, ?, ?)
			ON CONFLICT (team_id, user_id) DO NOTHING`, teamID, userID, micros(s.nowUTC()))
		return err
	})
	return wrapOp(op, err)
}

// RemoveTeamMember removes a user from a team.
func (s *Store) RemoveTeamMember(ctx context.Context, teamID, userID string) error {
	op := fmt.Sprintf("remove user %s from team %s", userID, teamID)
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		ok, err := s.execOne(ctx, tx, `DELETE FROM team_members WHERE team_id = ? AND user_id = ?`, teamID, userID)
		if err == nil && !ok {
			err = notFound(op)
		}
		return err
	})
	return wrapOp(op, err)
}

// TeamMembers lists the ids of a team's users.
func (s *Store) TeamMembers(ctx context.Context, teamID string) ([]string, error) {
	rows, err := s.query(ctx, s.r, `SELECT user_id FROM team_members WHERE team_id = ? ORDER BY user_id`, teamID)
	if err != nil {
		return nil, fmt.Errorf("members of team %s: %w", teamID, err)
	}
	ids, err := collect(rows, func(sc scanner) (string, error) {
		var id string
		return id, sc.Scan(&id)
	})
	if err != nil {
		return nil, fmt.Errorf("members of team %s: %w", teamID, err)
	}
	return ids, nil
}
