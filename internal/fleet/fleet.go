// Package fleet owns the rules of the agents as administrators see and
// change them (status, routing labels, disabling, deletion with the hand-back
// of their jobs) and of the registration tokens that let new agents join.
// The agents' own protocol (registration, claims, reports) is the agent
// server's; this is the administration beside it.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
)

// Store is what the fleet service reads and writes.
type Store interface {
	ListAgents(ctx context.Context) ([]*store.Agent, error)
	GetAgent(ctx context.Context, id string) (*store.Agent, error)
	UpdateAgentAdmin(ctx context.Context, id string, labels map[string]string, disabled bool) (*store.Agent, error)
	DeleteAgent(ctx context.Context, id string) error
	JobsOfAgent(ctx context.Context, agentID string) ([]*store.JobRun, error)
	RunningJobsByAgent(ctx context.Context) (map[string][]string, error)
	CreateRegistrationToken(ctx context.Context, t *store.RegistrationToken) error
	ListRegistrationTokens(ctx context.Context) ([]*store.RegistrationToken, error)
	DeleteRegistrationToken(ctx context.Context, id string) error
}

// Control is what the service needs of the scheduler.
type Control interface {
	// Online reports whether an agent counts as connected at now.
	Online(a *store.Agent, now time.Time) bool
	// HandBack ends the running jobs an agent holds (it was deleted): they
	// are retried when their retry allows, else failed with reason.
	HandBack(ctx context.Context, agentID, reason string, keep []string) ([]string, error)
}

// Agent statuses as administrators see them.
const (
	StatusOnline   = "online"
	StatusOffline  = "offline"
	StatusDisabled = "disabled"
)

// Statuses are the statuses an agent list can filter by.
var Statuses = []string{StatusOnline, StatusOffline, StatusDisabled}

// Options configure a Service. Store is required.
type Options struct {
	Store Store
	// Control tells who is online and hands deleted agents' jobs back; nil:
	// every agent is offline and a deletion leaves its jobs to their leases.
	Control Control
	Clock   func() time.Time
}

// Service is the fleet's administration.
type Service struct{ o Options }

// New returns a service for o.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Service{o: o}
}

// Agent is an agent with what its administrators see of it now.
type Agent struct {
	*store.Agent
	// Status is StatusOnline, StatusOffline or StatusDisabled.
	Status string
	// Running are the ids of the job runs it holds.
	Running []string
}

func (s *Service) view(a *store.Agent, running []string, now time.Time) Agent {
	status := StatusOffline
	switch {
	case a.Disabled:
		status = StatusDisabled
	case s.o.Control != nil && s.o.Control.Online(a, now):
		status = StatusOnline
	}
	if running == nil {
		running = []string{}
	}
	return Agent{Agent: a, Status: status, Running: running}
}

// List returns the agents, those with status only unless it is "".
func (s *Service) List(ctx context.Context, status string) ([]Agent, error) {
	agents, err := s.o.Store.ListAgents(ctx)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	running, err := s.o.Store.RunningJobsByAgent(ctx)
	if err != nil {
		return nil, fmt.Errorf("list agents' jobs: %w", err)
	}
	now := s.o.Clock()
	out := []Agent{}
	for _, a := range agents {
		if v := s.view(a, running[a.ID], now); status == "" || v.Status == status {
			out = append(out, v)
		}
	}
	return out, nil
}

// Get returns an agent; a missing one is ErrNotFound naming it.
func (s *Service) Get(ctx context.Context, id string) (Agent, error) {
	a, err := s.o.Store.GetAgent(ctx, id)
	if err != nil {
		return Agent{}, runnel.About(err, "get", "agent", id)
	}
	return s.detail(ctx, a)
}

func (s *Service) detail(ctx context.Context, a *store.Agent) (Agent, error) {
	jobs, err := s.o.Store.JobsOfAgent(ctx, a.ID)
	if err != nil {
		return Agent{}, fmt.Errorf("jobs of agent %s: %w", a.ID, err)
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return s.view(a, ids, s.o.Clock()), nil
}

// Update is a change of an agent's administration: the fields set change.
type Update struct {
	// SetLabels replaces the labels the agent is routed by with Labels; nil
	// Labels go back to the labels the agent reports.
	SetLabels bool
	Labels    *map[string]string
	// SetDisabled sets Disabled, which must not be nil then.
	SetDisabled bool
	Disabled    *bool
}

// MaxLabels bounds the labels an admin sets (the agents' own are bounded
// alike by the agent server).
const MaxLabels = 64

// CheckLabels validates the labels of an agent update, naming the offending
// key as body.labels.<key>, and returns a copy.
func CheckLabels(in map[string]string) (map[string]string, error) {
	if len(in) > MaxLabels {
		return nil, runnel.Invalidf("body.labels: %d labels, at most %d", len(in), MaxLabels)
	}
	out := make(map[string]string, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		if err := spec.CheckLabel(k, v); err != nil {
			return nil, runnel.Invalidf("body.labels.%s: %v", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// UpdateAgent applies u to agent id.
func (s *Service) UpdateAgent(ctx context.Context, id string, u Update) (Agent, error) {
	a, err := s.o.Store.GetAgent(ctx, id)
	if err != nil {
		return Agent{}, runnel.About(err, "get", "agent", id)
	}
	labels, disabled := a.AdminLabels, a.Disabled
	if u.SetLabels {
		labels = nil
		if u.Labels != nil {
			if labels, err = CheckLabels(*u.Labels); err != nil {
				return Agent{}, err
			}
		}
	}
	if u.SetDisabled {
		if u.Disabled == nil {
			return Agent{}, runnel.Invalidf("body.disabled: must be true or false, got null")
		}
		disabled = *u.Disabled
	}
	updated, err := s.o.Store.UpdateAgentAdmin(ctx, a.ID, labels, disabled)
	if err != nil {
		return Agent{}, runnel.About(err, "update", "agent", a.ID)
	}
	return s.detail(ctx, updated)
}

// DeleteAgent removes agent id; by is who did it (for the reason its jobs
// are handed back with). The in-process agent of a server cannot be
// deleted: it comes back with its server.
func (s *Service) DeleteAgent(ctx context.Context, id, by string) error {
	a, err := s.o.Store.GetAgent(ctx, id)
	if err != nil {
		return runnel.About(err, "get", "agent", id)
	}
	if a.Kind == "embedded" {
		return runnel.Errorf(runnel.ErrConflict, "agent %s is the in-process agent of a server and comes back with it; disable it with PUT {\"disabled\": true}, or start that server with --embedded-agent-capacity 0", a.ID)
	}
	if err := s.o.Store.DeleteAgent(ctx, a.ID); err != nil {
		return runnel.About(err, "delete", "agent", a.ID)
	}
	// Its token no longer works: the jobs it held will never be reported.
	// Hand them back now rather than when their leases run out.
	if s.o.Control != nil {
		if _, err := s.o.Control.HandBack(context.WithoutCancel(ctx), a.ID, "the agent was deleted by "+by, nil); err != nil {
			return fmt.Errorf("hand back the jobs of deleted agent %s: %w", a.ID, err)
		}
	}
	return nil
}

// TokenRequest is a registration token to create.
type TokenRequest struct {
	Name string
	// ExpiresAt is an RFC 3339 time ("": never).
	ExpiresAt string
	// MaxUses is how many agents may register with it (0: unlimited).
	MaxUses int
	// By is who creates it.
	By string
}

// MaxRegistrationUses bounds MaxUses (0 is unlimited).
const MaxRegistrationUses = 1_000_000

// Check validates r at now and returns the expiry (nil: never).
func (r TokenRequest) Check(now time.Time) (*time.Time, error) {
	if err := check.Text("body.name", r.Name, 200, false); err != nil {
		return nil, err
	}
	if r.MaxUses < 0 || r.MaxUses > MaxRegistrationUses {
		return nil, runnel.Invalidf("body.maxUses: %d; want 0 (unlimited) to %d", r.MaxUses, MaxRegistrationUses)
	}
	if r.ExpiresAt == "" {
		return nil, nil
	}
	exp, err := time.Parse(time.RFC3339, r.ExpiresAt)
	if err != nil {
		return nil, runnel.Invalidf("body.expiresAt: %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", r.ExpiresAt)
	}
	if !exp.After(now) {
		return nil, runnel.Invalidf("body.expiresAt: %s is not in the future", r.ExpiresAt)
	}
	exp = exp.UTC()
	return &exp, nil
}

// CreateRegistrationToken creates a token and returns it with its value,
// which only this answer holds (the store keeps its SHA-256).
func (s *Service) CreateRegistrationToken(ctx context.Context, r TokenRequest) (*store.RegistrationToken, string, error) {
	now := s.o.Clock().UTC()
	exp, err := r.Check(now)
	if err != nil {
		return nil, "", err
	}
	t := &store.RegistrationToken{ID: runnel.NewID("rt"), Name: r.Name, CreatedBy: r.By, CreatedAt: now, ExpiresAt: exp, MaxUses: r.MaxUses}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	value := "rnlr_" + hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(value))
	t.Hash = sum[:]
	if err := s.o.Store.CreateRegistrationToken(ctx, t); err != nil {
		return nil, "", fmt.Errorf("create registration token: %w", err)
	}
	return t, value, nil
}

// ListRegistrationTokens lists the tokens (never their values).
func (s *Service) ListRegistrationTokens(ctx context.Context) ([]*store.RegistrationToken, error) {
	list, err := s.o.Store.ListRegistrationTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list registration tokens: %w", err)
	}
	return list, nil
}

// DeleteRegistrationToken revokes a token (agents registered with it stay).
func (s *Service) DeleteRegistrationToken(ctx context.Context, id string) error {
	return runnel.About(s.o.Store.DeleteRegistrationToken(ctx, id), "delete", "registration token", id)
}
