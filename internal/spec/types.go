package spec

// The pipeline language. JSON field names (the `json` tags) are the public
// contract: the YAML keys, the JSON keys of the API and the JSON Schema all use
// them. Every type here is decoded by decode.go, which reports unknown fields and
// keeps the position of every value for error messages.

// Pipeline is a parsed pipeline definition.
type Pipeline struct {
	// Namespace identifies the pipeline definition, e.g. demo.pipeline.
	Namespace string `json:"namespace"`
	// Version of the language; only v1 exists.
	Version string `json:"version,omitempty"`
	// Variables are named inputs with defaults that a trigger may override.
	Variables Variables `json:"variables,omitempty"`
	// Env is added to the environment of every step.
	Env map[string]string `json:"env,omitempty"`
	// Source says where the code comes from (used by actions/git-checkout@v1).
	Source *Source `json:"source,omitempty"`
	// Approval gates the whole run.
	Approval *Approval `json:"approval,omitempty"`
	// Target describes where the pipeline delivers.
	Target *Target `json:"target,omitempty"`
	// Notify lists notification rules.
	Notify []NotifyRule `json:"notify,omitempty"`
	// Triggers list what starts the pipeline besides a manual trigger.
	Triggers []Trigger `json:"triggers,omitempty"`
	// Stages run one after another.
	Stages []Stage `json:"stages,omitempty"`
	// Jobs is the shorthand for a single stage named "default".
	Jobs []Job `json:"jobs,omitempty"`

	positions positions
}

// Variable is a declared input of the pipeline. In YAML a variable is either a
// scalar (its default) or a mapping with the fields below.
type Variable struct {
	Name        string   `json:"-"`
	Default     string   `json:"default,omitempty"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Variables keeps the declaration order, which forms and listings follow.
type Variables []Variable

// Source is the code repository of the pipeline.
type Source struct {
	// Type of the source; only "git" exists.
	Type    string `json:"type,omitempty"`
	RepoURL string `json:"repoUrl"`
	Branch  string `json:"branch,omitempty"`
	// Credential names the source-code credential used to fetch.
	Credential string `json:"credential,omitempty"`
}

// Approval is a manual gate.
type Approval struct {
	// Required defaults to true when the block is present.
	Required *bool `json:"required,omitempty"`
	// Approvers are token subjects or groups allowed to decide.
	Approvers []string `json:"approvers,omitempty"`
	Message   string   `json:"message,omitempty"`
	// Timeout after which the gate rejects.
	Timeout Duration `json:"timeout,omitempty"`
}

// Target is where the pipeline delivers (an environment).
type Target struct {
	Environment string         `json:"environment"`
	Type        string         `json:"type,omitempty"`
	URL         string         `json:"url,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
}

// NotifyRule sends a notification through one or more channels when the run
// ends with one of the listed statuses.
type NotifyRule struct {
	// On lists run results: success, failure, cancelled, partial, always.
	On      []string       `json:"on"`
	Webhook *WebhookNotify `json:"webhook,omitempty"`
	Slack   *SlackNotify   `json:"slack,omitempty"`
	Email   *EmailNotify   `json:"email,omitempty"`
}

// WebhookNotify posts a JSON body signed with HMAC-SHA256.
type WebhookNotify struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// SlackNotify posts to a Slack incoming webhook.
type SlackNotify struct {
	WebhookURL string `json:"webhookUrl"`
	Channel    string `json:"channel,omitempty"`
}

// EmailNotify sends mail over SMTP.
type EmailNotify struct {
	To      []string `json:"to"`
	Subject string   `json:"subject,omitempty"`
}

// Trigger starts the pipeline automatically.
type Trigger struct {
	// Type is manual, cron or event.
	Type string `json:"type"`
	// Cron is a 5-field cron expression (or @hourly, @daily, …) for type cron.
	Cron string `json:"cron,omitempty"`
	// Timezone is an IANA time zone name for cron, default UTC.
	Timezone string `json:"timezone,omitempty"`
	// Variables override the pipeline's variables for runs of this trigger.
	Variables map[string]string `json:"variables,omitempty"`
	// Events filters webhook events: push, tag, pull_request.
	Events   []string `json:"events,omitempty"`
	Branches *Filter  `json:"branches,omitempty"`
	Tags     *Filter  `json:"tags,omitempty"`
	Paths    *Filter  `json:"paths,omitempty"`
}

// Filter includes and excludes names by glob, or by regular expression when the
// pattern starts with "regex:". In YAML a plain list means include.
type Filter struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// Stage is a group of jobs; stages run in order.
type Stage struct {
	Name     string    `json:"name"`
	Approval *Approval `json:"approval,omitempty"`
	Jobs     []Job     `json:"jobs"`
}

// Job is the unit scheduled onto one agent.
type Job struct {
	Name  string            `json:"name"`
	Steps []Step            `json:"steps"`
	Env   map[string]string `json:"env,omitempty"`
	// Needs lists jobs of the same stage that must finish first.
	Needs StringList `json:"needs,omitempty"`
	// If is a condition; the job is skipped when it is false.
	If string `json:"if,omitempty"`
	// Matrix runs the job once per combination of values.
	Matrix          *Matrix  `json:"matrix,omitempty"`
	Timeout         Duration `json:"timeout,omitempty"`
	Retry           *Retry   `json:"retry,omitempty"`
	ContinueOnError bool     `json:"continueOnError,omitempty"`
	RunsOn          *RunsOn  `json:"runsOn,omitempty"`
	// Image is the container image the job's run steps execute in.
	Image    string    `json:"image,omitempty"`
	Services []Service `json:"services,omitempty"`
	// PullPolicy says when the job's images (image, services, docker://
	// steps) are pulled: never, if-not-present (the default) or always.
	PullPolicy string    `json:"pullPolicy,omitempty" jsonschema:"enum=never,enum=if-not-present,enum=always"`
	Approval   *Approval `json:"approval,omitempty"`
	// Outputs are published to jobs that need this one, as needs.<job>.outputs.
	Outputs map[string]string `json:"outputs,omitempty"`
}

// Retry re-runs a failed job.
type Retry struct {
	Max   int      `json:"max"`
	Delay Duration `json:"delay,omitempty"`
}

// RunsOn selects agents by label: a mapping of exact matches, or a list of
// selector expressions (key=value, key!=value, key in (a,b), key notin (a,b),
// key, !key).
type RunsOn struct {
	Labels    map[string]string `json:"-"`
	Selectors []string          `json:"-"`
}

// Service is a sidecar container for the job (Docker backend).
type Service struct {
	Name       string            `json:"name"`
	Image      string            `json:"image"`
	Env        map[string]string `json:"env,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Command    []string          `json:"command,omitempty"`
}

// Step is one atomic action: a shell script (`run`) or an action (`uses`): a
// catalog action (actions/git-checkout@v1) or a container image run as a
// plugin (docker://IMAGE, whose args become PLUGIN_* variables).
type Step struct {
	Name             string            `json:"name,omitempty"`
	Run              string            `json:"run,omitempty"`
	Shell            string            `json:"shell,omitempty"`
	Uses             string            `json:"uses,omitempty"`
	Action           string            `json:"action,omitempty"`
	Args             map[string]any    `json:"args,omitempty"`
	Env              map[string]string `json:"env,omitempty"`
	If               string            `json:"if,omitempty"`
	Timeout          Duration          `json:"timeout,omitempty"`
	ContinueOnError  bool              `json:"continueOnError,omitempty"`
	WorkingDirectory string            `json:"workingDirectory,omitempty"`
}

// Matrix is a set of axes whose combinations each become a job, plus extra
// combinations (include) and removed ones (exclude).
type Matrix struct {
	Axes    []MatrixAxis     `json:"-"`
	Include []map[string]any `json:"-"`
	Exclude []map[string]any `json:"-"`
}

// MatrixAxis is one dimension of a matrix, in the order written.
type MatrixAxis struct {
	Name   string
	Values []any
}

// StringList is a list of strings that may be written as a single string.
type StringList []string

// StageNames returns the effective stages: the jobs shorthand becomes one stage
// named "default".
func (p *Pipeline) EffectiveStages() []Stage {
	if len(p.Stages) > 0 || len(p.Jobs) == 0 {
		return p.Stages
	}
	return []Stage{{Name: DefaultStage, Jobs: p.Jobs}}
}

// DefaultStage is the name of the stage the jobs shorthand is wrapped in.
const DefaultStage = "default"
