package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/logline"
	"github.com/runnel-ci/runnel/internal/mask"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
)

// Causes that tell a step's end apart; the backend only sees a done context.
var (
	errStepTimeout = errors.New("step timed out")
	errJobTimeout  = errors.New("job timed out")
	errCancelled   = errors.New("run cancelled")
)

// Actions resolves `uses` for the executor.
type Actions interface {
	Lookup(uses string) (action.Action, bool)
}

// Clock tells time; tests may replace it.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Executor runs the steps of one job attempt on a backend.
type Executor struct {
	Backend backend.Backend
	Actions Actions
	Clock   Clock
	// MaxLogLine bounds one log line (longer output is split); 0 → 64 KiB.
	MaxLogLine int
	// Docker opens a client of the Docker engine for native actions that
	// build images; nil: none.
	Docker func() (*client.Client, error)
}

// JobRequest is one job attempt to execute. It carries everything needed, so an
// agent on another machine can execute it without the plan.
type JobRequest struct {
	// BackendID identifies the attempt to the backend ([A-Za-z0-9._-]).
	BackendID string
	Job       *plan.Job
	// Env holds the job's contexts (see State.JobEnv); Env.Env is the pipeline env.
	Env expr.Env
	// ExtraEnv is added to every step's environment below the definition's env
	// (e.g. `runnel exec --env`).
	ExtraEnv map[string]string
	// RepoURL is the pipeline source, exported as RUNNEL_REPO_URL.
	RepoURL string
	// Hard, when done, stops everything at once, including steps that run on
	// cancellation (always()). nil means never.
	Hard context.Context

	// Credentials the job may use, by id (opened by the scheduler at claim
	// time; never serialised with the request).
	Credentials map[string]runnel.Credential
	// Storage keeps the run's artifacts and the pipeline's caches (bound to
	// the claim by the agent; never serialised). nil: none.
	Storage action.Storage

	// masker hides the values of Env.Secrets and of the credentials (set by
	// Execute).
	masker *mask.Masker
}

// StepReport is a step's status change.
type StepReport struct {
	Index    int
	Name     string
	Status   runnel.StepStatus
	ExitCode *int
	Started  time.Time
	Ended    time.Time
	// Error explains a failure that is not the script's own exit code.
	Error   string
	Outputs map[string]string
}

// Log levels.
const (
	LevelInfo  = "info"  // the step's own output
	LevelError = "error" // Runnel explaining a failure
	LevelWarn  = "warn"
)

// JobReporter receives a job's progress. Calls for one job come from one
// goroutine, in order.
type JobReporter interface {
	StepStatus(r StepReport)
	StepLog(step int, t time.Time, level, line string)
}

// JobResult is the outcome of one attempt.
type JobResult struct {
	Status runnel.JobStatus
	// AllowedFailure: a step failed but continueOnError let the job go on.
	AllowedFailure bool
	Outputs        map[string]string
	Reason         string
	Steps          []StepReport
}

// Execute runs one job attempt. ctx is the graceful cancellation signal: when it
// is done, the running step is stopped and only steps whose condition runs on
// cancellation (always(), cancelled()) still run. Execute always returns a result.
//
// The values of req.Env.Secrets never leave it unmasked: every log line (also
// a value split across the step's writes), step error and output, and the
// job's outputs and reason have each occurrence replaced by "***".
func (x *Executor) Execute(ctx context.Context, req JobRequest, rep JobReporter) JobResult {
	hidden := slices.Collect(maps.Values(req.Env.Secrets))
	for _, c := range req.Credentials {
		hidden = append(hidden, c.Secret)
	}
	m := mask.New(hidden)
	if m == nil {
		return x.execute(ctx, req, rep)
	}
	req.masker = m
	res := x.execute(ctx, req, maskingReporter{rep, m})
	res.Reason = m.String(res.Reason)
	res.Outputs = m.Map(res.Outputs)
	for i := range res.Steps {
		res.Steps[i] = maskStep(m, res.Steps[i])
	}
	return res
}

// maskingReporter masks what it passes on.
type maskingReporter struct {
	rep JobReporter
	m   *mask.Masker
}

func (r maskingReporter) StepStatus(s StepReport) { r.rep.StepStatus(maskStep(r.m, s)) }

func (r maskingReporter) StepLog(step int, t time.Time, level, line string) {
	r.rep.StepLog(step, t, level, r.m.String(line))
}

func maskStep(m *mask.Masker, s StepReport) StepReport {
	s.Error = m.String(s.Error)
	s.Outputs = m.Map(s.Outputs)
	return s
}

func (x *Executor) execute(ctx context.Context, req JobRequest, rep JobReporter) JobResult {
	clock := x.Clock
	if clock == nil {
		clock = realClock{}
	}
	hard := req.Hard
	if hard == nil {
		hard = context.Background()
	}
	j := req.Job
	jobCtx, cancelJob := context.WithTimeoutCause(hard, j.Timeout, errJobTimeout)
	defer cancelJob()
	var cancelled atomic.Bool
	stopWatch := context.AfterFunc(ctx, func() { cancelled.Store(true) })
	defer stopWatch()

	steps := j.Spec.Steps
	res := JobResult{Status: runnel.JobSuccess, Steps: make([]StepReport, len(steps))}
	for i, st := range steps {
		res.Steps[i] = StepReport{Index: i, Name: st.Name, Status: runnel.StepPending}
	}
	bj := &backend.Job{ID: req.BackendID, Name: j.Name, PullPolicy: j.Spec.PullPolicy, Plugins: j.Spec.PluginImages()}
	env := req.Env
	env.Steps = map[string]expr.StepResult{}

	// Job env: pipeline env, then the job's own.
	jobEnv := maps.Clone(req.Env.Env)
	if jobEnv == nil {
		jobEnv = map[string]string{}
	}
	failJob := func(msg string) JobResult {
		res.Status, res.Reason = runnel.JobFailed, msg
		for i := range res.Steps {
			if !res.Steps[i].Status.Terminal() {
				res.Steps[i].Status = runnel.StepSkipped
				rep.StepStatus(res.Steps[i])
			}
		}
		return res
	}
	{
		tmp := env
		tmp.Env = jobEnv
		for _, k := range sortedKeys(j.Spec.Env) {
			v, err := evalString(j.Spec.Env[k], &tmp)
			if err != nil {
				return failJob(fmt.Sprintf("env.%s: %v", k, err))
			}
			jobEnv[k] = v
		}
	}
	env.Env = jobEnv
	if err := jobContainers(bj, j.Spec, &env); err != nil {
		return failJob(err.Error())
	}

	_, err := x.Backend.SetupJob(jobCtx, bj)
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = x.Backend.DestroyJob(cleanup, bj)
	}()
	if err != nil {
		return failJob("setting up the job: " + err.Error())
	}

	files := &jobFiles{ctx: jobCtx, be: x.Backend, job: bj}
	env.Files = files
	var after []afterHook

	jobFailed := false
	allowed := false
	timedOut := false
	for i := range steps {
		st := &steps[i]
		sr := &res.Steps[i]
		cond, err := expr.ParseCondition(st.If)
		if err != nil {
			x.fail(rep, sr, clock, "if: "+err.Error())
			jobFailed = jobFailed || !st.ContinueOnError
			continue
		}
		isCancelled := cancelled.Load() || hard.Err() != nil
		if timedOut || errors.Is(context.Cause(jobCtx), errJobTimeout) {
			timedOut = true
			sr.Status = runnel.StepSkipped
			rep.StepStatus(*sr)
			continue
		}
		if hard.Err() != nil {
			// Stopped at once: nothing else runs, always() included.
			sr.Status = runnel.StepCancelled
			rep.StepStatus(*sr)
			continue
		}
		if isCancelled && !cond.RunsWhenCancelled() {
			sr.Status = runnel.StepCancelled
			rep.StepStatus(*sr)
			continue
		}
		env.Status = expr.Status{Failed: jobFailed, Cancelled: isCancelled}
		env.Job.Status = jobStatusWord(jobFailed, isCancelled)
		run, err := cond.Eval(&env)
		if err != nil {
			x.fail(rep, sr, clock, "evaluating if: "+err.Error())
			jobFailed = jobFailed || !st.ContinueOnError
			continue
		}
		if !run {
			sr.Status = runnel.StepSkipped
			env.Steps[st.Name] = expr.StepResult{Outcome: string(runnel.StepSkipped), Outputs: map[string]string{}}
			rep.StepStatus(*sr)
			continue
		}
		x.runStep(ctx, jobCtx, req, bj, files, st, sr, &env, cond, rep, clock, &after)
		env.Steps[st.Name] = expr.StepResult{Outcome: string(sr.Status), Outputs: nonNil(sr.Outputs)}
		switch sr.Status {
		case runnel.StepSuccess:
		case runnel.StepCancelled:
		case runnel.StepTimeout:
			if cause := context.Cause(jobCtx); errors.Is(cause, errJobTimeout) {
				timedOut = true
			}
			fallthrough
		default:
			if st.ContinueOnError {
				allowed = true
			} else {
				jobFailed = true
			}
		}
	}
	succeeded := !timedOut && !jobFailed && !cancelled.Load() && hard.Err() == nil
	x.runAfterHooks(hard, after, succeeded, rep, clock)
	switch {
	case timedOut:
		res.Status, res.Reason = runnel.JobFailed, fmt.Sprintf("job timed out after %s", j.Timeout)
	case jobFailed:
		res.Status = runnel.JobFailed
		res.Reason = firstFailure(res.Steps, steps)
	case cancelled.Load() || hard.Err() != nil:
		res.Status, res.Reason = runnel.JobCancelled, "cancelled"
	default:
		res.Status, res.AllowedFailure = runnel.JobSuccess, allowed
	}
	if res.Status == runnel.JobSuccess && len(j.Spec.Outputs) > 0 {
		res.Outputs = map[string]string{}
		for _, k := range sortedKeys(j.Spec.Outputs) {
			v, err := evalString(j.Spec.Outputs[k], &env)
			if err != nil {
				res.Status, res.Reason = runnel.JobFailed, fmt.Sprintf("outputs.%s: %v", k, err)
				break
			}
			res.Outputs[k] = v
		}
	}
	return res
}

func jobStatusWord(failed, cancelled bool) string {
	switch {
	case cancelled:
		return "cancelled"
	case failed:
		return "failure"
	}
	return "success"
}

func firstFailure(steps []StepReport, defs []spec.Step) string {
	for i, s := range steps {
		if defs[i].ContinueOnError {
			continue
		}
		switch s.Status {
		case runnel.StepFailed:
			if s.Error != "" {
				return fmt.Sprintf("step %s failed: %s", s.Name, s.Error)
			}
			if s.ExitCode != nil {
				return fmt.Sprintf("step %s failed with exit code %d", s.Name, *s.ExitCode)
			}
			return fmt.Sprintf("step %s failed", s.Name)
		case runnel.StepTimeout:
			return fmt.Sprintf("step %s timed out", s.Name)
		}
	}
	return "failed"
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (x *Executor) fail(rep JobReporter, sr *StepReport, clock Clock, msg string) {
	now := clock.Now()
	if sr.Started.IsZero() {
		sr.Started = now
	}
	sr.Ended = now
	sr.Status = runnel.StepFailed
	sr.Error = msg
	rep.StepLog(sr.Index, now, LevelError, "runnel: "+msg)
	rep.StepStatus(*sr)
}

func (x *Executor) runStep(ctx, jobCtx context.Context, req JobRequest, bj *backend.Job, files *jobFiles, st *spec.Step, sr *StepReport, env *expr.Env, cond *expr.Condition, rep JobReporter, clock Clock, after *[]afterHook) {
	sr.Started = clock.Now()
	sr.Status = runnel.StepRunning
	rep.StepStatus(*sr)

	bs, nc, err := x.prepareStep(req, st, sr.Index, env)
	if err != nil {
		x.fail(rep, sr, clock, err.Error())
		return
	}
	stepCtx, cancelStep := context.WithCancelCause(jobCtx)
	defer cancelStep(nil)
	if !cond.RunsWhenCancelled() {
		stop := context.AfterFunc(ctx, func() { cancelStep(errCancelled) })
		defer stop()
	}
	if d := st.Timeout.D(); d > 0 {
		var cancelT context.CancelFunc
		stepCtx, cancelT = context.WithTimeoutCause(stepCtx, d, errStepTimeout)
		defer cancelT()
	}
	maxLine := x.MaxLogLine
	sp := logline.NewSplitter(maxLine, func(line string) {
		rep.StepLog(sr.Index, clock.Now(), LevelInfo, line)
	})
	// Secrets are masked in the byte stream, before it is cut into lines:
	// a value split across writes or across a long line's chunks is found.
	mw := req.masker.Writer(sp)
	var result backend.Result
	var runErr error
	if nc != nil {
		result, runErr = x.runNative(stepCtx, req, files, nc, sr.Index, mw, rep, clock, after)
	} else {
		result, runErr = x.Backend.RunStep(stepCtx, bj, bs, mw)
	}
	mw.Flush()
	sp.Flush()
	sr.Ended = clock.Now()
	if stepCtx.Err() != nil {
		cause := context.Cause(stepCtx)
		switch {
		case errors.Is(cause, errStepTimeout):
			sr.Status, sr.Error = runnel.StepTimeout, fmt.Sprintf("timed out after %s", st.Timeout)
		case errors.Is(cause, errJobTimeout):
			sr.Status, sr.Error = runnel.StepTimeout, fmt.Sprintf("the job timed out after %s", req.Job.Timeout)
		default:
			sr.Status, sr.Error = runnel.StepCancelled, "cancelled"
		}
		rep.StepLog(sr.Index, sr.Ended, LevelError, "runnel: "+sr.Error)
		if runErr == nil {
			code := result.ExitCode
			sr.ExitCode = &code
		}
		rep.StepStatus(*sr)
		return
	}
	if runErr != nil {
		sr.Status, sr.Error = runnel.StepFailed, runErr.Error()
		rep.StepLog(sr.Index, sr.Ended, LevelError, "runnel: "+runErr.Error())
		rep.StepStatus(*sr)
		return
	}
	code := result.ExitCode
	sr.ExitCode = &code
	sr.Outputs = result.Outputs
	if code == 0 {
		sr.Status = runnel.StepSuccess
	} else {
		sr.Status = runnel.StepFailed
		if st.ContinueOnError {
			rep.StepLog(sr.Index, sr.Ended, LevelWarn, fmt.Sprintf("runnel: exit code %d; continuing (continueOnError)", code))
		}
	}
	rep.StepStatus(*sr)
}

// prepareStep evaluates a step's fields and resolves its action into what the
// backend runs.
func (x *Executor) prepareStep(req JobRequest, st *spec.Step, index int, env *expr.Env) (*backend.Step, *nativeCall, error) {
	stepEnv := make(map[string]string, 32)
	maps.Copy(stepEnv, req.ExtraEnv)
	maps.Copy(stepEnv, standardEnv(req, st, index))
	maps.Copy(stepEnv, env.Env)
	own := map[string]string{}
	for _, k := range sortedKeys(st.Env) {
		v, err := evalString(st.Env[k], env)
		if err != nil {
			return nil, nil, fmt.Errorf("env.%s: %w", k, err)
		}
		own[k] = v
	}
	maps.Copy(stepEnv, own)
	// The env context of a step includes its own env.
	scoped := *env
	scoped.Env = maps.Clone(env.Env)
	maps.Copy(scoped.Env, own)

	wd, err := evalString(st.WorkingDirectory, &scoped)
	if err != nil {
		return nil, nil, fmt.Errorf("workingDirectory: %w", err)
	}
	bs := &backend.Step{ID: fmt.Sprintf("step-%d", index+1), Name: st.Name, Env: stepEnv, WorkingDir: wd}
	if st.Run != "" {
		script, err := evalString(st.Run, &scoped)
		if err != nil {
			return nil, nil, fmt.Errorf("run: %w", err)
		}
		bs.Script, bs.Shell = script, st.Shell
		return bs, nil, nil
	}
	if image, ok := spec.PluginImage(st.Uses); ok {
		bs, err := pluginStep(bs, image, st, &scoped)
		return bs, nil, err
	}
	a, ok := x.Actions.Lookup(st.Uses)
	if !ok {
		return nil, nil, fmt.Errorf("unknown action %q", st.Uses)
	}
	var args map[string]any
	if len(st.Args) > 0 {
		v, err := expr.EvalAny(map[string]any(st.Args), &scoped)
		if err != nil {
			return nil, nil, fmt.Errorf("args: %w", err)
		}
		args, _ = v.(map[string]any)
	}
	// The selected operation of the action: the step's `action`, else the
	// action's default, so that every action (native ones too) is told it.
	call := action.Call{Action: st.Action, Args: args, Credentials: req.Credentials}
	if call.Action == "" {
		call.Action = a.Info().DefaultAction
	}
	if n, ok := a.(action.Native); ok {
		return bs, &nativeCall{action: n, call: call, uses: st.Uses}, nil
	}
	ex, err := a.Prepare(call)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", st.Uses, err)
	}
	bs.Script, bs.Shell = ex.Script, ex.Shell
	maps.Copy(bs.Env, ex.Env)
	if ex.WorkingDir != "" {
		bs.WorkingDir = ex.WorkingDir
	}
	return bs, nil, nil
}

// jobContainers evaluates the job's image and services into bj.
func jobContainers(bj *backend.Job, sj *spec.Job, env *expr.Env) error {
	image, err := evalString(sj.Image, env)
	if err != nil {
		return fmt.Errorf("image: %v", err)
	}
	bj.Image = strings.TrimSpace(image)
	if sj.Image != "" && bj.Image == "" {
		return fmt.Errorf("image: %q evaluates to an empty string", sj.Image)
	}
	for i, s := range sj.Services {
		img, err := evalString(s.Image, env)
		if err != nil {
			return fmt.Errorf("services[%d].image: %v", i, err)
		}
		bs := backend.Service{Name: s.Name, Image: strings.TrimSpace(img), Env: map[string]string{},
			Entrypoint: s.Entrypoint, Command: s.Command}
		for _, k := range sortedKeys(s.Env) {
			v, err := evalString(s.Env[k], env)
			if err != nil {
				return fmt.Errorf("services[%d].env.%s: %v", i, k, err)
			}
			bs.Env[k] = v
		}
		bj.Services = append(bj.Services, bs)
	}
	return nil
}

// pluginStep turns a `uses: docker://IMAGE` step into a backend step that runs
// the image, its args evaluated into PLUGIN_* variables (see
// spec.PluginEnvName and spec.PluginEnvValue) on top of the step's env.
func pluginStep(bs *backend.Step, image string, st *spec.Step, scoped *expr.Env) (*backend.Step, error) {
	bs.Image = image
	if len(st.Args) == 0 {
		return bs, nil
	}
	v, err := expr.EvalAny(map[string]any(st.Args), scoped)
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	args, _ := v.(map[string]any)
	for _, k := range sortedKeys(args) {
		val, err := spec.PluginEnvValue(args[k])
		if err != nil {
			return nil, fmt.Errorf("args.%s: %w", k, err)
		}
		bs.Env[spec.PluginEnvName(k)] = val
	}
	return bs, nil
}

var (
	unsafeEnvChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9_]`) })
	unsafeIDChars  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9._-]+`) })
)

// standardEnv is what every step learns about its run through RUNNEL_*.
func standardEnv(req JobRequest, st *spec.Step, index int) map[string]string {
	e := req.Env
	m := map[string]string{
		"RUNNEL":             "true",
		"RUNNEL_PIPELINE":    e.Pipeline.Namespace,
		"RUNNEL_PIPELINE_ID": e.Pipeline.ID,
		"RUNNEL_RUN_ID":      e.Run.ID,
		"RUNNEL_RUN_NUMBER":  strconv.FormatInt(e.Run.Number, 10),
		"RUNNEL_STAGE":       req.Job.Stage,
		"RUNNEL_JOB":         req.Job.Base,
		"RUNNEL_JOB_ID":      req.Job.ID,
		"RUNNEL_JOB_ATTEMPT": strconv.Itoa(e.Job.Attempt),
		"RUNNEL_STEP":        st.Name,
		"RUNNEL_TRIGGER":     e.Trigger.Type,
		"RUNNEL_EVENT":       e.Trigger.Event,
		"RUNNEL_REF":         e.Trigger.Ref,
		"RUNNEL_BRANCH":      e.Trigger.Branch,
		"RUNNEL_TAG":         e.Trigger.Tag,
		"RUNNEL_COMMIT":      e.Trigger.Commit,
		"RUNNEL_ACTOR":       e.Trigger.Actor,
	}
	if req.RepoURL != "" {
		m["RUNNEL_REPO_URL"] = req.RepoURL
	}
	for _, k := range req.Job.MatrixKeys {
		m["RUNNEL_MATRIX_"+strings.ToUpper(unsafeEnvChars().ReplaceAllString(k, "_"))] = spec.MatrixString(req.Job.Matrix[k])
	}
	return m
}

// evalString evaluates a template field ("" stays "").
func evalString(s string, env *expr.Env) (string, error) {
	if !strings.Contains(s, "${{") {
		return s, nil
	}
	t, err := expr.ParseTemplate(s)
	if err != nil {
		return "", err
	}
	return t.Eval(env)
}

// BackendID derives a backend-safe, unique id for a job attempt.
func BackendID(runID, jobID string, attempt int) string {
	h := fnv.New32a()
	h.Write([]byte(jobID))
	slug := strings.Trim(unsafeIDChars().ReplaceAllString(jobID, "-"), "-.")
	if len(slug) > 40 {
		slug = slug[:40]
	}
	return fmt.Sprintf("%s-%s-%08x-%d", runID, slug, h.Sum32(), attempt)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
