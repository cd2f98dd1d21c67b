package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// ApprovalControl decides approval gates (the scheduler implements it).
type ApprovalControl interface {
	// DecideApproval approves or rejects a pending gate for the caller
	// (subject, role): ErrForbidden when not an approver, ErrConflict when
	// it is decided, expired, or its run ended, ErrNotFound when unknown.
	DecideApproval(ctx context.Context, id string, approve bool, subject string, may func(approvers []string) (bool, error), comment string) (*store.Approval, error)
}

var approvalID = idKind{Param: "approvalId", Prefix: "apr_", Noun: "approval"}

// approvalJSON is an approval gate as the API shows it.
type approvalJSON struct {
	ApprovalID  string   `json:"approvalId"`
	RunID       string   `json:"runId"`
	Scope       string   `json:"scope"`
	Target      string   `json:"target"`
	Message     string   `json:"message"`
	Approvers   []string `json:"approvers"`
	Status      string   `json:"status"`
	RequestedAt string   `json:"requestedAt"`
	TimeoutAt   *string  `json:"timeoutAt"`
	DecidedBy   string   `json:"decidedBy"`
	DecidedAt   *string  `json:"decidedAt"`
	Comment     string   `json:"comment"`
}

func toApprovalJSON(a *store.Approval) approvalJSON {
	approvers := a.Approvers
	if approvers == nil {
		approvers = []string{}
	}
	return approvalJSON{ApprovalID: a.ID, RunID: a.RunID, Scope: a.Scope, Target: a.Target, Message: a.Message,
		Approvers: approvers, Status: string(a.Status), RequestedAt: wire.Time(a.RequestedAt), TimeoutAt: wire.TimePtr(a.TimeoutAt),
		DecidedBy: a.DecidedBy, DecidedAt: wire.TimePtr(a.DecidedAt), Comment: a.Comment}
}

// listApprovals answers a run's gates, in the order they were requested.
func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) error {
	rid, err := pathID(r, runID)
	if err != nil {
		return err
	}
	list, err := s.st.ListApprovals(r.Context(), rid)
	if err != nil {
		return err
	}
	out := make([]approvalJSON, 0, len(list))
	for _, a := range list {
		out = append(out, toApprovalJSON(a))
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// decisionBody is the body of approve and reject.
type decisionBody struct {
	Comment string `json:"comment"`
}

// decide approves or rejects a gate as the caller.
func (s *Server) decide(approve bool) apikit.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, approvalID)
		if err != nil {
			return err
		}
		data, err := apikit.ReadBody(r, s.maxBody)
		if err != nil {
			return err
		}
		var b decisionBody
		if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{Optional: true}); err != nil {
			return err
		}
		if err := check.Text("body.comment", b.Comment, 2000, true); err != nil {
			return err
		}
		if _, err := s.st.GetApproval(r.Context(), id); err != nil {
			return err
		}
		if s.approvals == nil {
			return apikit.Errorf(http.StatusServiceUnavailable, "approvals cannot be decided on this server")
		}
		projectID, _, err := s.access.ProjectOf(r.Context(), "approvalId", id)
		if err != nil {
			return err
		}
		may := func(approvers []string) (bool, error) { return s.access.IsApprover(r.Context(), projectID, approvers) }
		p := apikit.PrincipalFrom(r.Context())
		a, err := s.approvals.DecideApproval(r.Context(), id, approve, p.Subject, may, b.Comment)
		if err != nil {
			if errors.Is(err, runnel.ErrConflict) || errors.Is(err, runnel.ErrNotFound) || errors.Is(err, runnel.ErrForbidden) {
				return err
			}
			return fmt.Errorf("decide approval %s: %w", id, err)
		}
		s.ok(w, http.StatusOK, toApprovalJSON(a))
		return nil
	}
}
