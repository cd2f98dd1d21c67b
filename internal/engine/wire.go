package engine

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
)

// wireRequest is the serialised form of a JobRequest: what a scheduler stores
// with a queued job and an agent (in this process or on another machine)
// executes. It carries the job's definition, not the whole plan.
type wireRequest struct {
	BackendID  string            `json:"backendId"`
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Base       string            `json:"base"`
	Stage      string            `json:"stage"`
	StageIndex int               `json:"stageIndex"`
	Matrix     map[string]any    `json:"matrix,omitempty"`
	MatrixKeys []string          `json:"matrixKeys,omitempty"`
	TimeoutNS  int64             `json:"timeoutNs"`
	Job        json.RawMessage   `json:"job"`
	Env        expr.Env          `json:"env"`
	ExtraEnv   map[string]string `json:"extraEnv,omitempty"`
	RepoURL    string            `json:"repoUrl,omitempty"`
}

// EncodeRequest serialises a job request. Secrets are not included (they are
// delivered separately, never stored with the job).
func EncodeRequest(req JobRequest) ([]byte, error) {
	job, err := json.Marshal(req.Job.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", req.Job.ID, err)
	}
	w := wireRequest{
		BackendID: req.BackendID, ID: req.Job.ID, Name: req.Job.Name, Base: req.Job.Base, Stage: req.Job.Stage,
		StageIndex: req.Job.StageIndex, Matrix: req.Job.Matrix, MatrixKeys: req.Job.MatrixKeys,
		TimeoutNS: int64(req.Job.Timeout), Job: job, Env: req.Env, ExtraEnv: req.ExtraEnv, RepoURL: req.RepoURL,
	}
	return json.Marshal(w)
}

// DecodeRequest is the inverse of EncodeRequest.
func DecodeRequest(data []byte) (JobRequest, error) {
	var w wireRequest
	if err := json.Unmarshal(data, &w); err != nil {
		return JobRequest{}, fmt.Errorf("decode job request: %w", err)
	}
	sj, err := spec.DecodeJob(w.Job)
	if err != nil {
		return JobRequest{}, fmt.Errorf("decode job request %s: %w", w.ID, err)
	}
	cond, err := expr.ParseCondition(sj.If)
	if err != nil {
		return JobRequest{}, fmt.Errorf("decode job request %s: if: %w", w.ID, err)
	}
	j := &plan.Job{
		ID: w.ID, Name: w.Name, Base: w.Base, Stage: w.Stage, StageIndex: w.StageIndex,
		Matrix: w.Matrix, MatrixKeys: w.MatrixKeys, Spec: sj, If: cond, Timeout: time.Duration(w.TimeoutNS),
	}
	return JobRequest{BackendID: w.BackendID, Job: j, Env: w.Env, ExtraEnv: w.ExtraEnv, RepoURL: w.RepoURL}, nil
}

// PipelineEnv evaluates a plan's top-level env, for the env context of job
// conditions and steps.
func PipelineEnv(p *plan.Plan) (map[string]string, error) { return evalPipelineEnv(p) }
