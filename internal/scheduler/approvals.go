package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
)

// Approval gates. A job may start only when every gate above it is
// approved: the pipeline's (before anything starts), its stage's (before any
// job of the stage starts) and its own. A gate is requested (a pending
// approvals row, an approval.requested event, a timeline entry) the first
// time the run reaches it; until it is decided the job stays pending with a
// reason saying what it waits for and since when. A rejection, or the
// timeout passing without a decision, fails the jobs behind the gate with
// the reason; the run's usual rules (needs, continueOnError, if) do the rest.

// Event types of approvals.
const (
	EventApprovalRequested = "approval.requested"
	EventApprovalApproved  = "approval.approved"
	EventApprovalRejected  = "approval.rejected"
	EventApprovalExpired   = "approval.expired"
	EventApprovalCancelled = "approval.cancelled"
)

// cancelGates closes a stopped run's pending gates: nobody can decide them
// any more, and the jobs behind them are cancelled.
func cancelGates(tx store.RunTx, runID, operator string, now time.Time) error {
	list, err := tx.Approvals()
	if err != nil {
		return err
	}
	for _, a := range list {
		if a.Status != runnel.ApprovalPending {
			continue
		}
		a.Status, a.DecidedBy, a.DecidedAt, a.Comment = runnel.ApprovalCancelled, cmpOr(operator, "runnel"), &now, "the run was stopped"
		if err := recordApproval(tx, EventApprovalCancelled, a, "approval_cancelled", a.DecidedBy, gateName(a)+" cancelled: the run was stopped", now); err != nil {
			return err
		}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// gate is one approval block a job is behind.
type gate struct {
	scope, target string
	a             *spec.Approval
}

func required(a *spec.Approval) bool { return a != nil && (a.Required == nil || *a.Required) }

// gatesOf lists the gates before a job, outermost first.
func gatesOf(pl *plan.Plan, pj *plan.Job) []gate {
	var out []gate
	if required(pl.Spec.Approval) {
		out = append(out, gate{"pipeline", "", pl.Spec.Approval})
	}
	stages := pl.Spec.EffectiveStages()
	if pj.StageIndex < len(stages) && required(stages[pj.StageIndex].Approval) {
		out = append(out, gate{"stage", stages[pj.StageIndex].Name, stages[pj.StageIndex].Approval})
	}
	if pj.Spec != nil && required(pj.Spec.Approval) {
		out = append(out, gate{"job", pj.ID, pj.Spec.Approval})
	}
	return out
}

// approvalData is the data of approval events.
type approvalData struct {
	ApprovalID string     `json:"approvalId"`
	Scope      string     `json:"scope"`
	Target     string     `json:"target,omitempty"`
	Message    string     `json:"message,omitempty"`
	Approvers  []string   `json:"approvers,omitempty"`
	Status     string     `json:"status"`
	By         string     `json:"by,omitempty"`
	Comment    string     `json:"comment,omitempty"`
	TimeoutAt  *time.Time `json:"timeoutAt,omitempty"`
}

func recordApproval(tx store.RunTx, typ string, a *store.Approval, action, operator, reason string, now time.Time) error {
	if err := tx.PutApproval(a); err != nil {
		return err
	}
	b, err := json.Marshal(approvalData{ApprovalID: a.ID, Scope: a.Scope, Target: a.Target, Message: a.Message,
		Approvers: a.Approvers, Status: string(a.Status), By: a.DecidedBy, Comment: a.Comment, TimeoutAt: a.TimeoutAt})
	if err != nil {
		return err
	}
	if _, err := tx.AddEvent(typ, b); err != nil {
		return err
	}
	return tx.AppendTimeline(&store.TimelineEntry{RunID: a.RunID, Time: now, Action: action, Operator: operator, Reason: reason})
}

func gateName(a *store.Approval) string {
	if a.Scope == "pipeline" {
		return "the pipeline's approval"
	}
	return fmt.Sprintf("the approval of %s %s", a.Scope, a.Target)
}

// gateVerdict is what a job's gates say now.
type gateVerdict struct {
	open     bool
	waitFor  string // why it waits
	rejected string // why it cannot run
	cancel   bool   // the job is cancelled (the run was stopped), not failed
	wakeAt   time.Time
}

func gateNameOf(g gate) string {
	return gateName(&store.Approval{Scope: g.scope, Target: g.target})
}

// checkGates requests, expires and reads the gates before pj. In a stopped
// run nothing is requested: a gate not approved before the stop holds its
// jobs back for good.
func (s *Scheduler) checkGates(tx store.RunTx, runID string, stopped bool, gates []gate, list *[]*store.Approval, now time.Time) (gateVerdict, error) {
	for _, g := range gates {
		i := slices.IndexFunc(*list, func(a *store.Approval) bool { return a.Scope == g.scope && a.Target == g.target })
		if i < 0 && stopped {
			return gateVerdict{rejected: "the run was stopped before " + gateNameOf(g) + " was requested", cancel: true}, nil
		}
		if i < 0 {
			a := &store.Approval{ID: runnel.NewID("apr"), RunID: runID, Scope: g.scope, Target: g.target, Message: g.a.Message,
				Approvers: g.a.Approvers, Status: runnel.ApprovalPending, RequestedAt: now}
			if d := time.Duration(g.a.Timeout); d > 0 {
				t := now.Add(d)
				a.TimeoutAt = &t
			}
			reason := gateName(a) + " is requested"
			if a.Message != "" {
				reason += ": " + a.Message
			}
			if err := recordApproval(tx, EventApprovalRequested, a, "approval_requested", "runnel", reason, now); err != nil {
				return gateVerdict{}, err
			}
			*list = append(*list, a)
			i = len(*list) - 1
		}
		a := (*list)[i]
		if a.Status == runnel.ApprovalPending && a.TimeoutAt != nil && !now.Before(*a.TimeoutAt) {
			a.Status, a.DecidedBy, a.DecidedAt = runnel.ApprovalExpired, "runnel", &now
			a.Comment = fmt.Sprintf("no decision within %s", a.TimeoutAt.Sub(a.RequestedAt).Round(time.Second))
			if err := recordApproval(tx, EventApprovalExpired, a, "approval_expired", "runnel", gateName(a)+" expired: "+a.Comment, now); err != nil {
				return gateVerdict{}, err
			}
		}
		switch a.Status {
		case runnel.ApprovalApproved:
			continue
		case runnel.ApprovalPending:
			v := gateVerdict{waitFor: fmt.Sprintf("waiting for %s (requested %s)", gateName(a), a.RequestedAt.UTC().Format(time.RFC3339))}
			if a.Message != "" {
				v.waitFor += ": " + a.Message
			}
			if a.TimeoutAt != nil {
				v.wakeAt = *a.TimeoutAt
			}
			return v, nil
		case runnel.ApprovalExpired:
			return gateVerdict{rejected: gateName(a) + " expired: " + a.Comment}, nil
		case runnel.ApprovalCancelled:
			return gateVerdict{rejected: gateName(a) + " was cancelled: " + a.Comment, cancel: true}, nil
		default:
			why := gateName(a) + " was rejected by " + a.DecidedBy
			if a.Comment != "" {
				why += ": " + a.Comment
			}
			return gateVerdict{rejected: why}, nil
		}
	}
	return gateVerdict{open: true}, nil
}

// gateStarts filters the jobs the State decided to start through their
// gates: it returns those that may start. Jobs that wait get their reason
// written; jobs behind a rejected gate are failed (rejected reports that the
// run must be evaluated again).
func (s *Scheduler) gateStarts(tx store.RunTx, tree *store.RunTree, pl *plan.Plan, start []*plan.Job, jobs map[string]*store.JobRun, now time.Time) (open []*plan.Job, rejected bool, err error) {
	var list []*store.Approval
	loaded := false
	for _, pj := range start {
		gates := gatesOf(pl, pj)
		if len(gates) == 0 {
			open = append(open, pj)
			continue
		}
		if !loaded {
			if list, err = tx.Approvals(); err != nil {
				return nil, false, err
			}
			loaded = true
		}
		v, err := s.checkGates(tx, tree.Run.ID, tree.Run.Status == runnel.RunCancelled, gates, &list, now)
		if err != nil {
			return nil, false, err
		}
		j := jobs[pj.ID]
		switch {
		case v.open:
			open = append(open, pj)
		case v.rejected != "":
			j.Status, j.Reason, j.EndedAt = runnel.JobFailed, v.rejected, &now
			if v.cancel {
				j.Status = runnel.JobCancelled
			}
			if err := tx.UpdateJob(j); err != nil {
				return nil, false, err
			}
			for _, st := range tree.Steps[j.ID] {
				if !runnel.StepStatus(st.Status).Terminal() {
					st.Status = runnel.StepSkipped
					if v.cancel {
						st.Status = runnel.StepCancelled
					}
					if err := tx.UpdateStep(st); err != nil {
						return nil, false, err
					}
				}
			}
			rejected = true
		default:
			if j.Reason != v.waitFor {
				j.Reason = v.waitFor
				if err := tx.UpdateJob(j); err != nil {
					return nil, false, err
				}
			}
			if !v.wakeAt.IsZero() {
				s.wakeAt(tree.Run.ID, v.wakeAt)
			}
		}
	}
	return open, rejected, nil
}

// DecideApproval approves or rejects a pending gate on behalf of the caller
// subject (may says whether they are one of the gate's approvers, by the
// access policy's rules: logins, team:NAME, role:ROLE) and lets the run go
// on.
// Not an approver → ErrForbidden; a gate already decided, expired, or of a
// run that ended → ErrConflict.
func (s *Scheduler) DecideApproval(ctx context.Context, id string, approve bool, subject string, may func(approvers []string) (bool, error), comment string) (*store.Approval, error) {
	a, err := s.st.GetApproval(ctx, id)
	if err != nil {
		return nil, err
	}
	// A gate's approvers never change: decided before the run is locked.
	ok, err := may(a.Approvers)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", id, err)
	}
	if !ok {
		who := "developers of the run's project"
		if len(a.Approvers) > 0 {
			who = strings.Join(a.Approvers, ", ")
		}
		return nil, fmt.Errorf("approval %s: only %s may decide, not %s: %w", id, who, subject, runnel.ErrForbidden)
	}
	now := s.now().UTC()
	var out *store.Approval
	var expired bool
	err = s.st.UpdateRunTx(ctx, a.RunID, func(tx store.RunTx) error {
		expired = false
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		list, err := tx.Approvals()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(list, func(x *store.Approval) bool { return x.ID == id })
		if i < 0 {
			return fmt.Errorf("approval %s: %w", id, runnel.ErrNotFound)
		}
		cur := list[i]
		if cur.Status != runnel.ApprovalPending {
			by := ""
			if cur.DecidedBy != "" {
				by = " by " + cur.DecidedBy
			}
			return fmt.Errorf("approval %s is already %s%s: %w", id, cur.Status, by, runnel.ErrConflict)
		}
		if tree.Run.EndedAt != nil || tree.Run.Status == runnel.RunCancelled {
			return fmt.Errorf("approval %s: run %s is %s; its gates can no longer be decided: %w", id, tree.Run.ID, tree.Run.Status, runnel.ErrConflict)
		}
		if cur.TimeoutAt != nil && !now.Before(*cur.TimeoutAt) {
			cur.Status, cur.DecidedBy, cur.DecidedAt = runnel.ApprovalExpired, "runnel", &now
			cur.Comment = fmt.Sprintf("no decision within %s", cur.TimeoutAt.Sub(cur.RequestedAt).Round(time.Second))
			expired = true
			out = cur
			return recordApproval(tx, EventApprovalExpired, cur, "approval_expired", "runnel", gateName(cur)+" expired: "+cur.Comment, now)
		}
		cur.DecidedBy, cur.DecidedAt, cur.Comment = subject, &now, comment
		typ, action := EventApprovalApproved, "approved"
		cur.Status = runnel.ApprovalApproved
		if !approve {
			typ, action, cur.Status = EventApprovalRejected, "rejected", runnel.ApprovalRejected
		}
		out = cur
		return recordApproval(tx, typ, cur, action, subject, gateName(cur)+" "+action+optional(": ", comment), now)
	})
	if err != nil {
		return nil, err
	}
	if err := s.advance(ctx, a.RunID); err != nil {
		s.log.Warn("advance after an approval decision", "run_id", a.RunID, "err", err)
	}
	if expired {
		return nil, fmt.Errorf("approval %s expired at %s before this decision: %w", id, out.TimeoutAt.Format(time.RFC3339), runnel.ErrConflict)
	}
	return out, nil
}

func optional(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}
