package api

import (
	"net/http"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/fleet"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// AgentControl is what the agent routes need from the scheduler.
type AgentControl = fleet.Control

var (
	agentIDKind = idKind{Param: "agentId", Prefix: "agent_", Noun: "agent"}
	regTokenID  = idKind{Param: "tokenId", Prefix: "rt_", Noun: "registration token"}
)

// agentJSON is an agent as the API shows it.
type agentJSON struct {
	AgentID           string            `json:"agentId"`
	Name              string            `json:"name"`
	Kind              string            `json:"kind"`
	Status            string            `json:"status"` // online | offline | disabled
	Labels            map[string]string `json:"labels"`
	ReportedLabels    map[string]string `json:"reportedLabels"`
	LabelsOverridden  bool              `json:"labelsOverridden"`
	Capacity          int               `json:"capacity"`
	RunningJobs       int               `json:"runningJobs"`
	RunningJobRunIDs  []string          `json:"runningJobRunIds"`
	Version           string            `json:"version"`
	Hostname          string            `json:"hostname"`
	Platform          string            `json:"platform"`
	Disabled          bool              `json:"disabled"`
	RegistrationToken string            `json:"registrationTokenId"`
	CreatedAt         string            `json:"createdAt"`
	LastSeenAt        *string           `json:"lastSeenAt"`
}

func toAgentJSON(a fleet.Agent) agentJSON {
	labels := a.Labels()
	if labels == nil {
		labels = map[string]string{}
	}
	reported := a.ReportedLabels
	if reported == nil {
		reported = map[string]string{}
	}
	return agentJSON{
		AgentID: a.ID, Name: a.Name, Kind: a.Kind, Status: a.Status, Labels: labels, ReportedLabels: reported,
		LabelsOverridden: a.AdminLabels != nil, Capacity: a.Capacity, RunningJobs: len(a.Running), RunningJobRunIDs: a.Running,
		Version: a.Version, Hostname: a.Hostname, Platform: a.Platform, Disabled: a.Disabled,
		RegistrationToken: a.RegistrationTokenID, CreatedAt: wire.Time(a.CreatedAt), LastSeenAt: wire.TimePtr(a.LastSeenAt),
	}
}

// requireAdmin refuses a user-role token: agents and registration tokens are
// administration.
func requireAdmin(r *http.Request, what string) error {
	if !apikit.PrincipalFrom(r.Context()).Admin() {
		return apikit.Errorf(http.StatusForbidden, "%s needs an admin token (a site admin's, with the admin scope)", what)
	}
	return nil
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "status")
	if err != nil {
		return err
	}
	// As for runs: a status parameter given, even empty, must be one of the
	// statuses; a filter that is silently ignored returns wrong data that
	// looks right.
	want := q.Str("status")
	if q.Has("status") {
		if err := check.Enum("query parameter status", want, fleet.Statuses...); err != nil {
			return err
		}
	}
	agents, err := s.fleet.List(r.Context(), want)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, apikit.WholeList(agents, toAgentJSON))
	return nil
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := pathID(r, agentIDKind)
	if err != nil {
		return err
	}
	a, err := s.fleet.Get(r.Context(), id)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toAgentJSON(a))
	return nil
}

// agentBody is PUT /api/v1/agents/{agentId}: the fields present change.
type agentBody struct {
	// Labels replace the agent's own labels for routing; null goes back to
	// the labels the agent reports.
	Labels *map[string]string `json:"labels"`
	// Disabled is a pointer so that null is told apart from false: null is
	// refused rather than taken as "enable".
	Disabled *bool `json:"disabled"`
}

func (s *Server) updateAgent(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "changing an agent"); err != nil {
		return err
	}
	id, err := pathID(r, agentIDKind)
	if err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b agentBody
	present, err := apikit.Decode(data, &b, apikit.DecodeOptions{})
	if err != nil {
		return err
	}
	a, err := s.fleet.UpdateAgent(r.Context(), id, fleet.Update{
		SetLabels: present["labels"], Labels: b.Labels, SetDisabled: present["disabled"], Disabled: b.Disabled})
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toAgentJSON(a))
	return nil
}

func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "deleting an agent"); err != nil {
		return err
	}
	id, err := pathID(r, agentIDKind)
	if err != nil {
		return err
	}
	if err := s.fleet.DeleteAgent(r.Context(), id, apikit.PrincipalFrom(r.Context()).Subject); err != nil {
		return err
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}

// registrationTokenJSON is a registration token as listed (never its value).
type registrationTokenJSON struct {
	TokenID    string  `json:"tokenId"`
	Name       string  `json:"name"`
	CreatedBy  string  `json:"createdBy"`
	CreatedAt  string  `json:"createdAt"`
	ExpiresAt  *string `json:"expiresAt"`
	MaxUses    int     `json:"maxUses"`
	Uses       int     `json:"uses"`
	LastUsedAt *string `json:"lastUsedAt"`
	// Token is the value, only in the answer of the creation.
	Token string `json:"token,omitempty"`
}

func toRegistrationTokenJSON(t *store.RegistrationToken) registrationTokenJSON {
	return registrationTokenJSON{
		TokenID: t.ID, Name: t.Name, CreatedBy: t.CreatedBy, CreatedAt: wire.Time(t.CreatedAt), ExpiresAt: wire.TimePtr(t.ExpiresAt),
		MaxUses: t.MaxUses, Uses: t.Uses, LastUsedAt: wire.TimePtr(t.LastUsedAt),
	}
}

type registrationTokenBody struct {
	Name      string `json:"name"`
	ExpiresAt string `json:"expiresAt"`
	MaxUses   int    `json:"maxUses"`
}

func (s *Server) createRegistrationToken(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "creating a registration token"); err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b registrationTokenBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Optional: true}); err != nil {
		return err
	}
	t, value, err := s.fleet.CreateRegistrationToken(r.Context(), fleet.TokenRequest{
		Name: b.Name, ExpiresAt: b.ExpiresAt, MaxUses: b.MaxUses, By: apikit.PrincipalFrom(r.Context()).Subject})
	if err != nil {
		return err
	}
	out := toRegistrationTokenJSON(t)
	out.Token = value
	w.Header().Set("Location", "/api/v1/registration-tokens/"+t.ID)
	s.ok(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listRegistrationTokens(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "listing registration tokens"); err != nil {
		return err
	}
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	list, err := s.fleet.ListRegistrationTokens(r.Context())
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, apikit.WholeList(list, toRegistrationTokenJSON))
	return nil
}

func (s *Server) deleteRegistrationToken(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "deleting a registration token"); err != nil {
		return err
	}
	id, err := pathID(r, regTokenID)
	if err != nil {
		return err
	}
	if err := s.fleet.DeleteRegistrationToken(r.Context(), id); err != nil {
		return err
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}
