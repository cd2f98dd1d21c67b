package expr

import "github.com/runnel-ci/runnel"

// The contexts below are the compile-time environment of every expression
// (see newConfig): expr-lang reads their `expr` tags for the names users
// write, and checks types against them.

// The `trigger` context is the vocabulary's Trigger: what started
// the run.

// Pipeline is the `pipeline` context.
type Pipeline struct {
	ID        string `expr:"id" json:"id"`
	Name      string `expr:"name" json:"name"`
	Namespace string `expr:"namespace" json:"namespace"`
}

// Run is the `run` context.
type Run struct {
	ID     string `expr:"id" json:"id"`
	Number int64  `expr:"number" json:"number"`
}

// Job is the `job` context.
type Job struct {
	Name    string `expr:"name" json:"name"`
	Stage   string `expr:"stage" json:"stage"`
	Attempt int    `expr:"attempt" json:"attempt"`
	// Status is the job's status so far: success, failure or cancelled.
	Status string `expr:"status" json:"status"`
}

// StepResult is one entry of the `steps` context.
type StepResult struct {
	Outputs map[string]string `expr:"outputs" json:"outputs"`
	// Outcome is the step's final status (success, failed, timeout, skipped, …).
	Outcome string `expr:"outcome" json:"outcome"`
}

// NeedResult is one entry of the `needs` context: a job this job depends on.
type NeedResult struct {
	Outputs map[string]string `expr:"outputs" json:"outputs"`
	// Result is the needed job's final status.
	Result string `expr:"result" json:"result"`
}

// Status is what the status functions success(), failure() and cancelled()
// answer for the unit being evaluated. It is not a context users can name.
type Status struct {
	// Failed is true when an earlier unit (step of the job, or needed job) failed
	// in a way that was not allowed by continueOnError.
	Failed bool
	// Cancelled is true when the run is being cancelled.
	Cancelled bool
	// Incomplete is true when an earlier unit neither succeeded nor failed (a
	// needed job was skipped or cancelled): success() is false, failure() too.
	Incomplete bool
}

// Env is every context an expression can name. Fields that are nil/zero are
// simply empty at evaluation time; which contexts a given field may use is
// decided by the static check (see Scope), not by Env.
type Env struct {
	Trigger   runnel.Trigger        `expr:"trigger" json:"trigger"`
	Variables map[string]string     `expr:"variables" json:"variables,omitempty"`
	Env       map[string]string     `expr:"env" json:"env,omitempty"`
	Matrix    map[string]any        `expr:"matrix" json:"matrix,omitempty"`
	Pipeline  Pipeline              `expr:"pipeline" json:"pipeline"`
	Run       Run                   `expr:"run" json:"run"`
	Job       Job                   `expr:"job" json:"job"`
	Steps     map[string]StepResult `expr:"steps" json:"steps,omitempty"`
	Needs     map[string]NeedResult `expr:"needs" json:"needs,omitempty"`
	Secrets   map[string]string     `expr:"secrets" json:"-"`
	Status    Status                `expr:"-" json:"-"`
	// Files hashes workspace files for hashFiles(); nil where no workspace
	// exists (hashFiles then fails with a clear error).
	Files FileHasher `expr:"-" json:"-"`
}

// FileHasher computes hashFiles(patterns…): a hex SHA-256 over the files of
// the job's workspace matching any of the glob patterns ("**" matches any
// number of directories), or "" when none matches.
type FileHasher interface {
	HashFiles(patterns []string) (string, error)
}
