// Package plan turns a validated definition and a trigger into the executable
// plan of ONE run: variables resolved, matrices expanded, jobs given stable ids
// and their dependencies mapped onto the expanded jobs. It is pure: no I/O.
package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/spec"
)

// DefaultJobTimeout applies to jobs without a timeout, so a hung job cannot hold
// an agent forever.
const DefaultJobTimeout = 60 * time.Minute

// Input is everything a run is planned from.
type Input struct {
	Spec     *spec.Pipeline
	Pipeline expr.Pipeline
	Run      expr.Run
	Trigger  runnel.Trigger
	// Variables override the definition's variable defaults.
	Variables map[string]string
	// Secrets are made available to the secrets context.
	Secrets map[string]string
}

// Plan is one run, ready to execute.
type Plan struct {
	Spec *spec.Pipeline
	// Base holds the run-level contexts: trigger, variables, pipeline, run, secrets.
	Base   expr.Env
	Stages []*Stage
	// Jobs indexes every job of every stage by ID.
	Jobs map[string]*Job
}

// Stage is a group of jobs; stages run in order.
type Stage struct {
	Name  string
	Index int
	Jobs  []*Job
}

// Job is one job of the run: a definition job, or one combination of its matrix.
type Job struct {
	// ID is unique within the run and stable across runs of the same definition:
	// "stage/job", with the matrix values appended for matrix jobs.
	ID string
	// Name is for display: the job name, with matrix values in parentheses.
	Name string
	// Base is the job's name in the definition.
	Base  string
	Stage string
	// StageIndex orders stages.
	StageIndex int
	// Matrix holds this combination's values (nil without a matrix).
	Matrix map[string]any
	// MatrixKeys orders Matrix for display.
	MatrixKeys []string
	// Needs are the IDs of the jobs that must finish first.
	Needs []string
	// NeedNames maps each needed definition job name to its expanded IDs, for
	// the needs context.
	NeedNames map[string][]string
	Spec      *spec.Job
	If        *expr.Condition
	Timeout   time.Duration
	RetryMax  int
	RetryWait time.Duration
}

// Error is a problem with the trigger's input (not with the definition).
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// New plans a run.
func New(in Input) (*Plan, error) {
	vars, err := resolveVariables(in.Spec.Variables, in.Variables)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Spec: in.Spec,
		Base: expr.Env{
			Trigger:   in.Trigger,
			Variables: vars,
			Pipeline:  in.Pipeline,
			Run:       in.Run,
			Secrets:   in.Secrets,
		},
		Jobs: map[string]*Job{},
	}
	if p.Base.Pipeline.Namespace == "" {
		p.Base.Pipeline.Namespace = in.Spec.Namespace
	}
	for si, st := range in.Spec.EffectiveStages() {
		stage := &Stage{Name: st.Name, Index: si}
		byName := map[string][]string{}
		for ji := range st.Jobs {
			sj := &st.Jobs[ji]
			cond, err := expr.ParseCondition(sj.If)
			if err != nil {
				return nil, fmt.Errorf("job %s: if: %w", sj.Name, err)
			}
			combos := []spec.Combination{{}}
			if sj.Matrix != nil {
				combos = spec.ExpandMatrix(sj.Matrix, spec.MaxMatrixCombinations)
			}
			for _, c := range combos {
				j := &Job{
					Base:       sj.Name,
					Stage:      st.Name,
					StageIndex: si,
					Matrix:     c.Values,
					MatrixKeys: c.Keys,
					Spec:       sj,
					If:         cond,
					Timeout:    sj.Timeout.D(),
				}
				if j.Timeout == 0 {
					j.Timeout = DefaultJobTimeout
				}
				if sj.Retry != nil {
					j.RetryMax, j.RetryWait = sj.Retry.Max, sj.Retry.Delay.D()
				}
				j.ID, j.Name = jobID(st.Name, sj.Name, c)
				if _, dup := p.Jobs[j.ID]; dup {
					// Two include entries may produce the same values; keep ids unique.
					j.ID = fmt.Sprintf("%s#%d", j.ID, len(stage.Jobs))
				}
				p.Jobs[j.ID] = j
				stage.Jobs = append(stage.Jobs, j)
				byName[sj.Name] = append(byName[sj.Name], j.ID)
			}
		}
		for _, j := range stage.Jobs {
			j.NeedNames = map[string][]string{}
			for _, n := range j.Spec.Needs {
				ids := byName[n]
				j.NeedNames[n] = ids
				j.Needs = append(j.Needs, ids...)
			}
		}
		p.Stages = append(p.Stages, stage)
	}
	return p, nil
}

func jobID(stage, name string, c spec.Combination) (id, display string) {
	id = stage + "/" + name
	display = name
	if len(c.Keys) == 0 {
		return id, display
	}
	parts := make([]string, len(c.Keys))
	vals := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		v := spec.MatrixString(c.Values[k])
		parts[i] = k + "=" + v
		vals[i] = v
	}
	return id + "[" + strings.Join(parts, ",") + "]", display + " (" + strings.Join(vals, ", ") + ")"
}

func resolveVariables(decl spec.Variables, given map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(decl))
	var problems []string
	names := decl.Names()
	for _, k := range sortedKeys(given) {
		if _, ok := decl.Lookup(k); !ok {
			hint := "the definition declares no variables"
			if len(names) > 0 {
				hint = "declared: " + strings.Join(names, ", ")
			}
			problems = append(problems, fmt.Sprintf("variable %q is not declared in the definition (%s)", k, hint))
		}
	}
	for _, v := range decl {
		val, ok := given[v.Name]
		if !ok {
			val = v.Default
		}
		if v.Required && val == "" {
			problems = append(problems, fmt.Sprintf("variable %q is required: give it a value", v.Name))
		}
		if len(v.Options) > 0 && (ok || val != "") {
			found := false
			for _, o := range v.Options {
				found = found || o == val
			}
			if !found {
				problems = append(problems, fmt.Sprintf("variable %q: %q is not one of %s", v.Name, val, strings.Join(v.Options, ", ")))
			}
		}
		out[v.Name] = val
	}
	if len(problems) > 0 {
		return nil, &Error{Msg: strings.Join(problems, "; ")}
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// MatrixValues returns the matrix values for the matrix context (nil without a
// matrix).
func (j *Job) MatrixValues() map[string]any {
	if len(j.Matrix) == 0 {
		return nil
	}
	return j.Matrix
}
