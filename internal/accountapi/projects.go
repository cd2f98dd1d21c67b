package accountapi

import (
	"net/http"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/project"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

var teamIDKind = apikit.IDKind{Param: "teamId", Prefix: "tm_", Noun: "team"}

// projectJSON is a project as the API shows it; Role is the caller's.
type projectJSON struct {
	ProjectID   string `json:"projectId"`
	Name        string `json:"name"`
	Description string `json:"description"`
	CreatedBy   string `json:"createdBy"`
	CreatedAt   string `json:"createdAt"`
	UpdatedAt   string `json:"updatedAt"`
	Role        string `json:"role,omitempty"`
}

func toProjectJSON(p *store.Project) projectJSON {
	return projectJSON{ProjectID: p.ID, Name: p.Name, Description: p.Description, CreatedBy: p.CreatedBy,
		CreatedAt: wire.Time(p.CreatedAt), UpdatedAt: wire.Time(p.UpdatedAt)}
}

// projectBody is POST /api/v1/projects.
type projectBody struct {
	ProjectID string `json:"projectId"`
	projectUpdateBody
}

// projectUpdateBody is PUT /api/v1/projects/{projectId}: the fields present
// change.
type projectUpdateBody struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

func (a *API) readProjectBody(r *http.Request, update bool) (projectBody, error) {
	var b projectBody
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return b, err
	}
	opts := apikit.DecodeOptions{}
	if update {
		opts.Rejected = map[string]string{"projectId": "is the path's project id and cannot change"}
	}
	present, err := apikit.Decode(data, &b, opts)
	if err != nil {
		return b, err
	}
	for name, isNull := range map[string]bool{"name": b.Name == nil, "description": b.Description == nil} {
		if present[name] && isNull {
			return b, apikit.Errorf(http.StatusBadRequest, "body.%s: must not be null", name)
		}
	}
	return b, nil
}

func pathProject(r *http.Request) (string, error) {
	id := r.PathValue("projectId")
	if err := check.ProjectID("path parameter projectId", id); err != nil {
		return "", err
	}
	return id, nil
}

func (a *API) createProject(w http.ResponseWriter, r *http.Request) error {
	b, err := a.readProjectBody(r, false)
	if err != nil {
		return err
	}
	p, err := a.Projects.Create(r.Context(), b.ProjectID, project.Fields{Name: b.Name, Description: b.Description})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/projects/"+p.ID)
	out := toProjectJSON(p)
	out.Role = "owner"
	a.ok(w, http.StatusCreated, out)
	return nil
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	list, err := a.Projects.List(r.Context())
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, func(l project.Listed) projectJSON {
		j := toProjectJSON(l.Project)
		j.Role = l.Role.String()
		return j
	}))
	return nil
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := pathProject(r)
	if err != nil {
		return err
	}
	p, err := a.Projects.Get(r.Context(), id)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toProjectJSON(p))
	return nil
}

func (a *API) updateProject(w http.ResponseWriter, r *http.Request) error {
	id, err := pathProject(r)
	if err != nil {
		return err
	}
	b, err := a.readProjectBody(r, true)
	if err != nil {
		return err
	}
	p, err := a.Projects.Update(r.Context(), id, project.Fields{Name: b.Name, Description: b.Description})
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toProjectJSON(p))
	return nil
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request) error {
	id, err := pathProject(r)
	if err != nil {
		return err
	}
	if err := a.Projects.Delete(r.Context(), id); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

// memberJSON is a project's member.
type memberJSON struct {
	Kind      string `json:"kind"`
	MemberID  string `json:"memberId"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt string `json:"createdAt"`
	UpdatedAt string `json:"updatedAt"`
}

func toMemberJSON(m project.MemberView) memberJSON {
	return memberJSON{Kind: m.Kind, MemberID: m.MemberID, Name: m.Name, Role: m.Role,
		CreatedAt: wire.Time(m.CreatedAt), UpdatedAt: wire.Time(m.UpdatedAt)}
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := pathProject(r)
	if err != nil {
		return err
	}
	list, err := a.Projects.Members(r.Context(), id)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, toMemberJSON))
	return nil
}

// memberBody is PUT /api/v1/projects/{projectId}/members/{memberId}.
type memberBody struct {
	Role string `json:"role"`
}

// pathMember is who the path names: a user's id or login, a team's id or
// team:NAME (the service resolves it).
func pathMember(r *http.Request) (string, error) {
	id := r.PathValue("memberId")
	if id == "" || len(id) > 100 {
		return "", apikit.Errorf(http.StatusBadRequest, "path parameter memberId: a user (usr_… or a login) or a team (tm_… or team:NAME)")
	}
	return id, nil
}

func (a *API) setMember(w http.ResponseWriter, r *http.Request) error {
	id, err := pathProject(r)
	if err != nil {
		return err
	}
	mid, err := pathMember(r)
	if err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	var b memberBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{}); err != nil {
		return err
	}
	m, err := a.Projects.SetMember(r.Context(), id, mid, b.Role)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toMemberJSON(*m))
	return nil
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) error {
	id, err := pathProject(r)
	if err != nil {
		return err
	}
	mid, err := pathMember(r)
	if err != nil {
		return err
	}
	if err := a.Projects.RemoveMember(r.Context(), id, mid); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

// teamJSON is a team; Members only on a single team's answers.
type teamJSON struct {
	TeamID      string           `json:"teamId"`
	Name        string           `json:"name"`
	Description string           `json:"description"`
	CreatedAt   string           `json:"createdAt"`
	Members     []teamMemberJSON `json:"members,omitempty"`
}

type teamMemberJSON struct {
	UserID string `json:"userId"`
	Login  string `json:"login"`
}

func toTeamJSON(t *store.Team) teamJSON {
	return teamJSON{TeamID: t.ID, Name: t.Name, Description: t.Description, CreatedAt: wire.Time(t.CreatedAt)}
}

func toTeamViewJSON(v *project.TeamView) teamJSON {
	j := toTeamJSON(v.Team)
	j.Members = []teamMemberJSON{}
	for _, m := range v.Members {
		j.Members = append(j.Members, teamMemberJSON{UserID: m.UserID, Login: m.Login})
	}
	return j
}

// teamBody is POST /api/v1/teams.
type teamBody struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// teamUpdateBody is PUT /api/v1/teams/{teamId}.
type teamUpdateBody struct {
	Description string `json:"description"`
}

func (a *API) createTeam(w http.ResponseWriter, r *http.Request) error {
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	var b teamBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{}); err != nil {
		return err
	}
	t, err := a.Projects.CreateTeam(r.Context(), b.Name, b.Description)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/teams/"+t.ID)
	j := toTeamJSON(t)
	j.Members = []teamMemberJSON{}
	a.ok(w, http.StatusCreated, j)
	return nil
}

func (a *API) listTeams(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	list, err := a.Projects.ListTeams(r.Context())
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, toTeamJSON))
	return nil
}

func (a *API) getTeam(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := apikit.PathID(r, teamIDKind)
	if err != nil {
		return err
	}
	v, err := a.Projects.GetTeam(r.Context(), id)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toTeamViewJSON(v))
	return nil
}

func (a *API) updateTeam(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, teamIDKind)
	if err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	var b teamUpdateBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Rejected: map[string]string{
		"name": "cannot change: approvers name teams by it; create another team instead"}}); err != nil {
		return err
	}
	v, err := a.Projects.UpdateTeam(r.Context(), id, b.Description)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toTeamViewJSON(v))
	return nil
}

func (a *API) deleteTeam(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, teamIDKind)
	if err != nil {
		return err
	}
	if err := a.Projects.DeleteTeam(r.Context(), id); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

func (a *API) teamMember(add bool) apikit.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tid, err := apikit.PathID(r, teamIDKind)
		if err != nil {
			return err
		}
		uid, err := apikit.PathID(r, userIDKind)
		if err != nil {
			return err
		}
		if add {
			if r.ContentLength > 0 {
				if _, err := apikit.ReadBody(r, a.MaxBody); err != nil {
					return err
				}
			}
			err = a.Projects.AddTeamMember(r.Context(), tid, uid)
		} else {
			err = a.Projects.RemoveTeamMember(r.Context(), tid, uid)
		}
		if err != nil {
			return err
		}
		v, err := a.Projects.GetTeam(r.Context(), tid)
		if err != nil {
			return err
		}
		a.ok(w, http.StatusOK, toTeamViewJSON(v))
		return nil
	}
}

// grantJSON is one of the caller's roles in GET /api/v1/me.
type grantJSON struct {
	ProjectID string   `json:"projectId"`
	Role      string   `json:"role"`
	Via       []string `json:"via"`
}

func toGrantJSON(g project.Grant) grantJSON {
	via := g.Via
	if via == nil {
		via = []string{}
	}
	return grantJSON{ProjectID: g.ProjectID, Role: g.Role.String(), Via: via}
}
