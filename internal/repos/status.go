package repos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/store"
)

// Commit statuses: the outbox queues a bound pipeline's run.status events
// (and the job.status events that start or end an attempt) for
// store.ForgeStatusSink; the Deliverer hands each to Report, in order per
// run, retrying while the forge is down. A forge outage never blocks or
// fails a run: the run's last error is kept with its status
// (store.CommitStatusRecord) for the run page to show.

// runState is the commit status of a run status.
func runState(status string) (string, string) {
	switch runnel.RunStatus(status) {
	case runnel.RunPending:
		return forge.StatusPending, "queued"
	case runnel.RunRunning:
		return forge.StatusRunning, "running"
	case runnel.RunPaused:
		return forge.StatusRunning, "paused"
	case runnel.RunSuccess:
		return forge.StatusSuccess, "succeeded"
	case runnel.RunFailed:
		return forge.StatusFailure, "failed"
	case runnel.RunPartial:
		return forge.StatusFailure, "partly failed"
	case runnel.RunCancelled:
		return forge.StatusCancelled, "cancelled"
	}
	return forge.StatusError, status
}

// jobState is the commit status of a job status ("" for none to report).
func jobState(status string) (string, string) {
	switch runnel.JobStatus(status) {
	case runnel.JobPending, runnel.JobQueued:
		return forge.StatusPending, "queued"
	case runnel.JobRunning:
		return forge.StatusRunning, "running"
	case runnel.JobSuccess:
		return forge.StatusSuccess, "succeeded"
	case runnel.JobFailed:
		return forge.StatusFailure, "failed"
	case runnel.JobCancelled:
		return forge.StatusCancelled, "cancelled"
	case runnel.JobSkipped:
		return forge.StatusSuccess, "skipped"
	}
	return "", ""
}

// Report sends the commit status an outbox event stands for. An error makes
// the Deliverer retry (the forge is down, or rate-limits); an answer no
// retry can change (the commit is unknown, the token refused) is recorded
// on the run and not retried.
func (s *Service) Report(ctx context.Context, e *store.RunEvent, attempt int) error {
	if e.Type != store.EventRunStatus && e.Type != store.EventJobStatus {
		return nil
	}
	var sc store.StatusChange
	if err := json.Unmarshal(e.Data, &sc); err != nil {
		return nil // not a status change: nothing to report
	}
	b, err := s.o.Store.GetRepoBinding(ctx, e.PipelineID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if e.Type == store.EventJobStatus && !b.JobStatuses {
		return nil
	}
	run, err := s.o.Store.GetRun(ctx, e.RunID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	sha := run.TriggerContext().Commit
	if sha == "" {
		sha = run.Commit
	}
	if len(sha) < 7 || strings.Trim(sha, "0123456789abcdef") != "" {
		return nil // not a Git commit (a stored definition's hash, or none)
	}
	p, err := s.o.Store.GetPipeline(ctx, e.PipelineID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ctxName := b.StatusContext
	if ctxName == "" {
		ctxName = s.o.StatusContext + "/" + p.Name
	}
	var st forge.CommitStatus
	if e.Type == store.EventRunStatus {
		state, words := runState(sc.Status)
		st = forge.CommitStatus{State: state, Context: ctxName, Description: fmt.Sprintf("Run #%d %s", run.Number, words)}
		if sc.Reason != "" && runnel.RunStatus(sc.Status).Terminal() && sc.Status != string(runnel.RunSuccess) {
			st.Description += ": " + sc.Reason
		}
	} else {
		state, words := jobState(sc.Status)
		if state == "" {
			return nil
		}
		st = forge.CommitStatus{State: state, Context: ctxName + "/" + sc.Key, Description: fmt.Sprintf("Job %s %s", sc.Name, words)}
	}
	st.Description = clip(st.Description, 140)
	if s.o.ExternalURL != "" {
		st.TargetURL = strings.TrimRight(s.o.ExternalURL, "/") + "/runs/" + run.ID
	}
	rec := &store.CommitStatusRecord{RunID: run.ID, Context: st.Context, SHA: sha, State: st.State, Description: st.Description,
		TargetURL: st.TargetURL, Attempts: attempt, UpdatedAt: s.now()}
	sendErr := s.send(ctx, p, b, sha, st)
	retry := false
	if sendErr != nil {
		rec.Error = clip(sendErr.Error(), 500)
		retry = retryable(sendErr)
	}
	if err := s.o.Store.PutCommitStatus(ctx, rec); err != nil && !errors.Is(err, runnel.ErrNotFound) {
		s.log.Warn("record a commit status", "run_id", run.ID, "err", err)
	}
	if sendErr != nil {
		s.log.Warn("commit status not sent", "run_id", run.ID, "repository", b.FullName, "state", st.State,
			"attempt", attempt, "retry", retry, "err", sendErr)
		if retry {
			return sendErr
		}
	}
	return nil
}

// send reports st on the pipeline's forge.
func (s *Service) send(ctx context.Context, p *store.Pipeline, b *store.RepoBinding, sha string, st forge.CommitStatus) error {
	c, err := s.credentialOf(ctx, p)
	if err != nil {
		if errors.Is(err, runnel.ErrNotFound) || errors.Is(err, runnel.ErrInvalid) {
			return errNoCredential
		}
		return err
	}
	h, err := forgeHost(b.Kind)
	if err != nil {
		return err
	}
	cn, err := s.conn(ctx, c, b.APIBase)
	if err != nil {
		return err
	}
	if err := h.SetStatus(ctx, cn, b.FullName, sha, st); err != nil {
		return err
	}
	return nil
}

var errNoCredential = errors.New("the pipeline has no credential to report commit statuses with")

// retryable says whether another attempt may succeed: the forge was
// unreachable, failed (5xx), or rate-limited; not a refusal of the request
// itself (an unknown commit, a refused token, a missing permission).
func retryable(err error) bool {
	var fe *forge.Error
	if errors.As(err, &fe) {
		return fe.StatusCode >= 500 || errors.Is(err, forge.ErrRateLimited) || fe.StatusCode == 408
	}
	if errors.Is(err, errNoCredential) {
		return false
	}
	var re *runnel.Error
	if errors.As(err, &re) {
		return errors.Is(err, runnel.ErrUpstream) || errors.Is(err, runnel.ErrUnavailable)
	}
	return true // a network error
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	for len(string(r)) > n-1 {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// Notify is Report under the name the outbox's Deliverer calls.
func (s *Service) Notify(ctx context.Context, e *store.RunEvent, attempt int) error {
	return s.Report(ctx, e, attempt)
}
