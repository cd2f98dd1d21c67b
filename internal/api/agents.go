package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
)

// AgentControl is what the agent routes need from the scheduler.
type AgentControl interface {
	// Online reports whether an agent counts as connected at now.
	Online(a *store.Agent, now time.Time) bool
	// HandBack ends the running jobs an agent holds (it was deleted): they
	// are retried when their retry allows, else failed with reason.
	HandBack(ctx context.Context, agentID, reason string, keep []string) ([]string, error)
}

var (
	agentIDKind = idKind{"agentId", "agent_", "agent"}
	regTokenID  = idKind{"tokenId", "rt_", "registration token"}
)

// agentStatuses are the statuses an agent list can filter by.
var agentStatuses = []string{"online", "offline", "disabled"}

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

func (s *Server) toAgentJSON(a *store.Agent, running []string, now time.Time) agentJSON {
	status := "offline"
	switch {
	case a.Disabled:
		status = "disabled"
	case s.agents != nil && s.agents.Online(a, now):
		status = "online"
	}
	if running == nil {
		running = []string{}
	}
	labels := a.Labels()
	if labels == nil {
		labels = map[string]string{}
	}
	reported := a.ReportedLabels
	if reported == nil {
		reported = map[string]string{}
	}
	return agentJSON{
		AgentID: a.ID, Name: a.Name, Kind: a.Kind, Status: status, Labels: labels, ReportedLabels: reported,
		LabelsOverridden: a.AdminLabels != nil, Capacity: a.Capacity, RunningJobs: len(running), RunningJobRunIDs: running,
		Version: a.Version, Hostname: a.Hostname, Platform: a.Platform, Disabled: a.Disabled,
		RegistrationToken: a.RegistrationTokenID, CreatedAt: isoTime(a.CreatedAt), LastSeenAt: isoPtr(a.LastSeenAt),
	}
}

// requireAdmin refuses a user-role token: agents and registration tokens are
// administration.
func requireAdmin(r *http.Request, what string) error {
	if apikit.PrincipalFrom(r.Context()).Role != "admin" {
		return apikit.Errorf(http.StatusForbidden, "%s needs an admin token", what)
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
		if err := check.Enum("query parameter status", want, agentStatuses...); err != nil {
			return err
		}
	}
	agents, err := s.st.ListAgents(r.Context())
	if err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	running, err := s.st.RunningJobsByAgent(r.Context())
	if err != nil {
		return fmt.Errorf("list agents' jobs: %w", err)
	}
	now := s.now()
	out := []agentJSON{}
	for _, a := range agents {
		j := s.toAgentJSON(a, running[a.ID], now)
		if want == "" || j.Status == want {
			out = append(out, j)
		}
	}
	s.ok(w, http.StatusOK, apikit.List[agentJSON]{Items: out, Total: len(out), Page: 1, PageSize: len(out)})
	return nil
}

func (s *Server) loadAgent(r *http.Request) (*store.Agent, error) {
	return loadByPath(r, agentIDKind, s.st.GetAgent)
}

func (s *Server) agentDetail(ctx context.Context, a *store.Agent) (agentJSON, error) {
	jobs, err := s.st.JobsOfAgent(ctx, a.ID)
	if err != nil {
		return agentJSON{}, fmt.Errorf("jobs of agent %s: %w", a.ID, err)
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return s.toAgentJSON(a, ids, s.now()), nil
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	a, err := s.loadAgent(r)
	if err != nil {
		return err
	}
	out, err := s.agentDetail(r.Context(), a)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, out)
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

// maxAgentLabels bounds the labels an admin sets (the agents' own are bounded
// alike by the gRPC server).
const maxAgentLabels = 64

// checkAgentLabels validates the labels of an agent update, naming the
// offending key as body.labels.<key>, and returns a copy.
func checkAgentLabels(in map[string]string) (map[string]string, error) {
	if len(in) > maxAgentLabels {
		return nil, apikit.Errorf(http.StatusBadRequest, "body.labels: %d labels, at most %d", len(in), maxAgentLabels)
	}
	out := make(map[string]string, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		if err := spec.CheckLabel(k, v); err != nil {
			return nil, apikit.Errorf(http.StatusBadRequest, "body.labels.%s: %v", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func (s *Server) updateAgent(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "changing an agent"); err != nil {
		return err
	}
	a, err := s.loadAgent(r)
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
	labels, disabled := a.AdminLabels, a.Disabled
	if present["labels"] {
		labels = nil
		if b.Labels != nil {
			if labels, err = checkAgentLabels(*b.Labels); err != nil {
				return err
			}
		}
	}
	if present["disabled"] {
		if b.Disabled == nil {
			return apikit.Errorf(http.StatusBadRequest, "body.disabled: must be true or false, got null")
		}
		disabled = *b.Disabled
	}
	updated, err := s.st.UpdateAgentAdmin(r.Context(), a.ID, labels, disabled)
	if errors.Is(err, runnel.ErrNotFound) {
		return apikit.Errorf(http.StatusNotFound, "agent %s not found", a.ID)
	}
	if err != nil {
		return fmt.Errorf("update agent %s: %w", a.ID, err)
	}
	out, err := s.agentDetail(r.Context(), updated)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r, "deleting an agent"); err != nil {
		return err
	}
	a, err := s.loadAgent(r)
	if err != nil {
		return err
	}
	if a.Kind == "embedded" {
		return apikit.Errorf(http.StatusConflict, "agent %s is the in-process agent of a server and comes back with it; disable it with PUT {\"disabled\": true}, or start that server with --embedded-agent-capacity 0", a.ID)
	}
	if err := s.st.DeleteAgent(r.Context(), a.ID); err != nil {
		if errors.Is(err, runnel.ErrNotFound) {
			return apikit.Errorf(http.StatusNotFound, "agent %s not found", a.ID)
		}
		return fmt.Errorf("delete agent %s: %w", a.ID, err)
	}
	// Its token no longer works: the jobs it held will never be reported.
	// Hand them back now rather than when their leases run out.
	if s.agents != nil {
		ctx := context.WithoutCancel(r.Context())
		if _, err := s.agents.HandBack(ctx, a.ID, "the agent was deleted by "+apikit.PrincipalFrom(r.Context()).Subject, nil); err != nil {
			return fmt.Errorf("hand back the jobs of deleted agent %s: %w", a.ID, err)
		}
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
		TokenID: t.ID, Name: t.Name, CreatedBy: t.CreatedBy, CreatedAt: isoTime(t.CreatedAt), ExpiresAt: isoPtr(t.ExpiresAt),
		MaxUses: t.MaxUses, Uses: t.Uses, LastUsedAt: isoPtr(t.LastUsedAt),
	}
}

type registrationTokenBody struct {
	Name      string `json:"name"`
	ExpiresAt string `json:"expiresAt"`
	MaxUses   int    `json:"maxUses"`
}

// maxRegistrationUses bounds maxUses (0 is unlimited).
const maxRegistrationUses = 1_000_000

// check validates the body at now and returns the expiry (nil: never).
func (b *registrationTokenBody) check(now time.Time) (*time.Time, error) {
	if err := check.Text("body.name", b.Name, 200, false); err != nil {
		return nil, err
	}
	if b.MaxUses < 0 || b.MaxUses > maxRegistrationUses {
		return nil, apikit.Errorf(http.StatusBadRequest, "body.maxUses: %d; want 0 (unlimited) to %d", b.MaxUses, maxRegistrationUses)
	}
	if b.ExpiresAt == "" {
		return nil, nil
	}
	exp, err := time.Parse(time.RFC3339, b.ExpiresAt)
	if err != nil {
		return nil, apikit.Errorf(http.StatusBadRequest, "body.expiresAt: %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", b.ExpiresAt)
	}
	if !exp.After(now) {
		return nil, apikit.Errorf(http.StatusBadRequest, "body.expiresAt: %s is not in the future", b.ExpiresAt)
	}
	exp = exp.UTC()
	return &exp, nil
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
	now := s.now().UTC()
	exp, err := b.check(now)
	if err != nil {
		return err
	}
	t := &store.RegistrationToken{ID: newID("rt_"), Name: b.Name, CreatedBy: apikit.PrincipalFrom(r.Context()).Subject, CreatedAt: now,
		ExpiresAt: exp, MaxUses: b.MaxUses}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	value := "rnlr_" + hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(value))
	t.Hash = sum[:]
	if err := s.st.CreateRegistrationToken(r.Context(), t); err != nil {
		return fmt.Errorf("create registration token: %w", err)
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
	list, err := s.st.ListRegistrationTokens(r.Context())
	if err != nil {
		return fmt.Errorf("list registration tokens: %w", err)
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
	if err := s.st.DeleteRegistrationToken(r.Context(), id); err != nil {
		if errors.Is(err, runnel.ErrNotFound) {
			return apikit.Errorf(http.StatusNotFound, "registration token %s not found", id)
		}
		return fmt.Errorf("delete registration token %s: %w", id, err)
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}
