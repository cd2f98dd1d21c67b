package spec

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zones must resolve on hosts without a zoneinfo database

	"github.com/robfig/cron/v3"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/expr"
)

// Limits of the language.
const (
	// MaxMatrixCombinations bounds the jobs one matrix may expand to.
	MaxMatrixCombinations = 256
	// MaxRetries bounds retry.max.
	MaxRetries = 10
	// MaxTimeout bounds job and step timeouts.
	MaxTimeout = 7 * 24 * time.Hour
	maxNameLen = 100
)

var (
	namespaceRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]+$`) })
	nameRe      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`) })
	identRe     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`) })
	envKeyRe    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })
	hostnameRe  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`) })
)

// Every context name; the scopes below pick from it.
var (
	ctxPipelineEnv = []string{"trigger", "variables", "pipeline", "run"}
	ctxJobIf       = []string{"trigger", "variables", "env", "matrix", "pipeline", "run", "needs"}
	ctxJobField    = []string{"trigger", "variables", "env", "matrix", "pipeline", "run", "needs", "secrets"}
	ctxJobOutputs  = []string{"trigger", "variables", "env", "matrix", "pipeline", "run", "needs", "job", "steps"}
	ctxStepIf      = []string{"trigger", "variables", "env", "matrix", "pipeline", "run", "needs", "job", "steps"}
	ctxStepField   = []string{"trigger", "variables", "env", "matrix", "pipeline", "run", "needs", "job", "steps", "secrets"}
	ctxRunLevel    = []string{"trigger", "variables", "pipeline", "run", "secrets"}
)

// Accepted enumerations.
var (
	TriggerTypes  = []string{runnel.TriggerManual, runnel.TriggerCron, runnel.TriggerEvent}
	TriggerEvents = []string{"push", "tag", "pull_request"}
	NotifyOn      = []string{"success", "failure", "cancelled", "partial", "always"}
	// ApproverRoles are what role:ROLE approvers may name: a project role
	// (that role or a greater one decides) or admin (site admins).
	ApproverRoles = []string{"viewer", "developer", "maintainer", "owner", "admin"}
)

type validator struct {
	p       *Pipeline
	d       *decoder
	lines   [][]byte
	catalog ActionCatalog
	errs    ErrorList
	// templates and conditions hold what each distinct text parsed to: a
	// matrix or a generated definition repeats the same texts in every job,
	// and compiling an expression is most of checking one.
	templates  map[string]parsed[*expr.Template]
	conditions map[string]parsed[*expr.Condition]
}

// parsed is the result of parsing one text.
type parsed[T any] struct {
	v   T
	err error
}

// memo returns what parse gives for s, parsing each distinct s once.
func memo[T any](m *map[string]parsed[T], s string, parse func(string) (T, error)) (T, error) {
	if r, ok := (*m)[s]; ok {
		return r.v, r.err
	}
	if *m == nil {
		*m = map[string]parsed[T]{}
	}
	v, err := parse(s)
	(*m)[s] = parsed[T]{v, err}
	return v, err
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: v.p.Position(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate() {
	p := v.p
	switch {
	case p.Namespace == "":
		v.errorf("namespace", "namespace is required, e.g. namespace: demo.pipeline (letters, digits, '.', '_' and '-')")
	case !namespaceRe().MatchString(p.Namespace):
		v.errorf("namespace", "invalid namespace %q: use letters, digits, '.', '_' and '-' only", p.Namespace)
	}
	if p.Version != "" && p.Version != "v1" {
		v.errorf("version", "unsupported version %q: the only version is v1", p.Version)
	}
	declared := p.Variables.Names()
	for _, vr := range p.Variables {
		vp := keyPath("variables", vr.Name)
		if !identRe().MatchString(vr.Name) {
			v.errorf(vp, "invalid variable name %q: start with a letter or '_', then letters, digits, '_' or '-'", vr.Name)
		}
		if len(vr.Options) > 0 && vr.Default != "" && !contains(vr.Options, vr.Default) {
			v.errorf(vp, "default %q is not one of the options (%s)", vr.Default, quoteList(vr.Options))
		}
	}
	v.checkEnv("env", p.Env, expr.Scope{Contexts: ctxPipelineEnv, Variables: declared})
	runScope := expr.Scope{Contexts: ctxRunLevel, Variables: declared}
	if p.Source != nil {
		if p.Source.Type != "" && p.Source.Type != "git" {
			v.errorf("source.type", "unsupported source type %q: the only type is git", p.Source.Type)
		}
		if p.Source.RepoURL == "" {
			v.errorf("source", "source.repoUrl is required")
		}
		v.checkTemplate("source.repoUrl", p.Source.RepoURL, runScope)
		v.checkTemplate("source.branch", p.Source.Branch, runScope)
	}
	v.checkApproval("approval", p.Approval)
	if p.Target != nil && p.Target.Environment == "" {
		v.errorf("target", "target.environment is required")
	}
	v.checkNotify(runScope)
	v.checkTriggers(declared)

	switch {
	case len(p.Stages) > 0 && len(p.Jobs) > 0:
		v.errorf("jobs", "use either stages or the jobs shorthand, not both")
	case len(p.Stages) == 0 && len(p.Jobs) == 0:
		v.errorf("", "a pipeline needs jobs (or stages with jobs)")
	}
	if len(p.Stages) > 0 {
		seen := map[string]bool{}
		for i, st := range p.Stages {
			sp := indexPath("stages", i)
			v.checkName(sp+".name", "stage", st.Name)
			if seen[st.Name] && st.Name != "" {
				v.errorf(sp+".name", "duplicate stage name %q", st.Name)
			}
			seen[st.Name] = true
			v.checkApproval(sp+".approval", st.Approval)
			if len(st.Jobs) == 0 {
				v.errorf(sp, "stage %q has no jobs", st.Name)
			}
			v.checkJobs(sp+".jobs", st.Jobs, declared)
		}
	} else if len(p.Jobs) > 0 {
		v.checkJobs("jobs", p.Jobs, declared)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (v *validator) checkName(path, what, name string) {
	switch {
	case name == "":
		v.errorf(path, "a %s needs a name", what)
	case len(name) > maxNameLen:
		v.errorf(path, "%s name is longer than %d characters", what, maxNameLen)
	case !nameRe().MatchString(name):
		v.errorf(path, "invalid %s name %q: use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'", what, name)
	}
}

func (v *validator) checkDuration(path string, d Duration) {
	if d.D() > MaxTimeout {
		v.errorf(path, "%s is longer than the maximum of %s", d, MaxTimeout)
	}
}

func (v *validator) checkApproval(path string, a *Approval) {
	if a == nil {
		return
	}
	v.checkDuration(path+".timeout", a.Timeout)
	for i, ap := range a.Approvers {
		ip := indexPath(path+".approvers", i)
		switch {
		case strings.TrimSpace(ap) == "":
			v.errorf(ip, "an approver is a login, team:NAME or role:ROLE; got an empty string")
		case strings.HasPrefix(ap, "role:"):
			if r := strings.TrimPrefix(ap, "role:"); !contains(ApproverRoles, r) {
				v.errorf(ip, "unknown role %q%s; accepted: %s", r, didYouMean(r, ApproverRoles), quoteList(ApproverRoles))
			}
		case strings.HasPrefix(ap, "team:") && strings.TrimSpace(strings.TrimPrefix(ap, "team:")) == "":
			v.errorf(ip, "team: needs a team's name, as in team:release")
		}
	}
}

func (v *validator) checkNotify(scope expr.Scope) {
	for i, n := range v.p.Notify {
		np := indexPath("notify", i)
		if len(n.On) == 0 {
			v.errorf(np, "notify rule needs on: a list of %s", quoteList(NotifyOn))
		}
		for j, on := range n.On {
			if !contains(NotifyOn, on) {
				v.errorf(indexPath(np+".on", j), "unknown result %q%s; accepted: %s", on, didYouMean(on, NotifyOn), quoteList(NotifyOn))
			}
		}
		if n.Webhook == nil && n.Slack == nil && n.Email == nil {
			v.errorf(np, "notify rule needs a channel: webhook, slack or email")
		}
		if n.Webhook != nil {
			v.checkURL(np+".webhook.url", n.Webhook.URL, scope)
			v.checkTemplate(np+".webhook.secret", n.Webhook.Secret, scope)
		}
		if n.Slack != nil {
			v.checkURL(np+".slack.webhookUrl", n.Slack.WebhookURL, scope)
		}
		if n.Email != nil && len(n.Email.To) == 0 {
			v.errorf(np+".email.to", "email needs at least one recipient in to")
		}
	}
}

func (v *validator) checkURL(path, u string, scope expr.Scope) {
	if u == "" {
		v.errorf(path, "a URL is required")
		return
	}
	if v.checkTemplate(path, u, scope) && !strings.Contains(u, "${{") && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		v.errorf(path, "invalid URL %q: use an http:// or https:// URL", u)
	}
}

func (v *validator) checkTriggers(declared []string) {
	for i, t := range v.p.Triggers {
		tp := indexPath("triggers", i)
		if !contains(TriggerTypes, t.Type) {
			if t.Type == "" {
				v.errorf(tp+".type", "a trigger needs a type: %s", quoteList(TriggerTypes))
			} else {
				v.errorf(tp+".type", "unknown trigger type %q%s; accepted: %s", t.Type, didYouMean(t.Type, TriggerTypes), quoteList(TriggerTypes))
			}
		}
		if t.Type == runnel.TriggerCron {
			if t.Cron == "" {
				v.errorf(tp, "a cron trigger needs cron: an expression such as \"0 4 * * *\"")
			} else if _, err := ParseCron(t.Cron); err != nil {
				v.errorf(tp+".cron", "invalid cron expression %q: %v; write 5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly", t.Cron, err)
			}
			if t.Timezone != "" {
				if _, err := time.LoadLocation(t.Timezone); err != nil || t.Timezone == "Local" {
					v.errorf(tp+".timezone", "unknown time zone %q: use an IANA name such as Europe/Berlin or Asia/Hong_Kong", t.Timezone)
				}
			}
		} else {
			if t.Cron != "" {
				v.errorf(tp+".cron", "cron applies only to triggers of type cron")
			}
			if t.Timezone != "" {
				v.errorf(tp+".timezone", "timezone applies only to triggers of type cron")
			}
		}
		if t.Type != runnel.TriggerEvent {
			if len(t.Events) > 0 || t.Branches != nil || t.Tags != nil || t.Paths != nil {
				v.errorf(tp, "events, branches, tags and paths apply only to triggers of type event")
			}
		}
		for j, e := range t.Events {
			if !contains(TriggerEvents, e) {
				v.errorf(indexPath(tp+".events", j), "unknown event %q%s; accepted: %s", e, didYouMean(e, TriggerEvents), quoteList(TriggerEvents))
			}
		}
		v.checkFilter(tp+".branches", t.Branches)
		v.checkFilter(tp+".tags", t.Tags)
		v.checkFilter(tp+".paths", t.Paths)
		for k := range t.Variables {
			if !contains(declared, k) {
				v.errorf(keyPath(tp+".variables", k), "variable %q is not declared in variables%s", k, didYouMean(k, declared))
			}
		}
	}
}

// ParseCron parses a cron expression in the accepted syntax.
func ParseCron(s string) (cron.Schedule, error) {
	return cron.ParseStandard(s)
}

func (v *validator) checkFilter(fp string, f *Filter) {
	if f == nil {
		return
	}
	check := func(p string, pats []string) {
		for i, pat := range pats {
			ip := indexPath(p, i)
			if re, ok := strings.CutPrefix(pat, "regex:"); ok {
				if _, err := regexp.Compile(re); err != nil {
					v.errorf(ip, "invalid regular expression %q: %v", re, err)
				}
				continue
			}
			if pat == "" {
				v.errorf(ip, "empty pattern")
				continue
			}
			if _, err := path.Match(pat, ""); err != nil {
				v.errorf(ip, "invalid glob %q: %v (prefix regular expressions with regex:)", pat, err)
			}
		}
	}
	check(fp+".include", f.Include)
	check(fp+".exclude", f.Exclude)
}

func (v *validator) checkEnv(path string, env map[string]string, scope expr.Scope) {
	for _, k := range sortedKeys(env) {
		kp := keyPath(path, k)
		if !envKeyRe().MatchString(k) {
			v.errorf(kp, "invalid environment variable name %q: letters, digits and '_', not starting with a digit", k)
		}
		v.checkTemplate(kp, env[k], scope)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkTemplate parses and checks the expressions in a string field and reports
// problems at their exact position. It returns true when the field is valid.
func (v *validator) checkTemplate(path, s string, scope expr.Scope) bool {
	if !strings.Contains(s, "${{") {
		return true
	}
	t, err := memo(&v.templates, s, expr.ParseTemplate)
	if err != nil {
		v.exprError(path, err)
		return false
	}
	errs := t.Check(scope)
	for _, e := range errs {
		v.exprError(path, e)
	}
	return len(errs) == 0
}

func (v *validator) checkCondition(path, s string, scope expr.Scope) {
	if s == "" {
		return
	}
	c, err := memo(&v.conditions, s, expr.ParseCondition)
	if err != nil {
		v.exprError(path, err)
		return
	}
	for _, e := range c.Check(scope) {
		v.exprError(path, e)
	}
}

// exprError reports an expression error at the position inside the string.
func (v *validator) exprError(path string, err error) {
	e := &Error{Pos: v.p.Position(path), Path: path, Msg: err.Error()}
	if xe, ok := err.(*expr.Error); ok {
		e.Msg = xe.Msg
		if n := v.d.strs[path]; n != nil {
			e.Pos = v.offsetPos(n, xe.Offset)
		}
	}
	v.errs = append(v.errs, e)
}

// offsetPos maps a byte offset inside a string value to a file position. It is
// exact for plain scalars and block scalars, and close for quoted ones.
func (v *validator) offsetPos(n *node, off int) Pos {
	if off < 0 || off > len(n.text) {
		return n.pos
	}
	before := n.text[:off]
	nl := strings.Count(before, "\n")
	colInLine := off - (strings.LastIndexByte(before, '\n') + 1)
	switch n.style {
	case 'b':
		line := n.body + nl
		indent := 0
		if line-1 < len(v.lines) && line >= 1 {
			l := v.lines[line-1]
			for indent < len(l) && l[indent] == ' ' {
				indent++
			}
		}
		return Pos{Line: line, Column: indent + colInLine + 1}
	case 'q':
		if nl == 0 {
			return Pos{Line: n.pos.Line, Column: n.pos.Column + 1 + off}
		}
	default:
		if nl == 0 {
			return Pos{Line: n.pos.Line, Column: n.pos.Column + off}
		}
	}
	return n.pos
}

func (v *validator) checkJobs(path string, jobs []Job, declared []string) {
	names := make([]string, 0, len(jobs))
	index := map[string]int{}
	for i, j := range jobs {
		jp := indexPath(path, i)
		v.checkName(jp+".name", "job", j.Name)
		if _, dup := index[j.Name]; dup && j.Name != "" {
			v.errorf(jp+".name", "duplicate job name %q in this stage", j.Name)
			continue
		}
		index[j.Name] = i
		names = append(names, j.Name)
	}
	for i := range jobs {
		v.checkJob(indexPath(path, i), &jobs[i], names, declared)
	}
	v.checkCycles(path, jobs, index)
}

func (v *validator) checkCycles(path string, jobs []Job, index map[string]int) {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(jobs))
	var stack []string
	reported := false
	var visit func(i int)
	visit = func(i int) {
		if reported {
			return
		}
		color[i] = grey
		stack = append(stack, jobs[i].Name)
		for _, n := range jobs[i].Needs {
			j, ok := index[n]
			if !ok || j == i {
				continue
			}
			switch color[j] {
			case grey:
				start := 0
				for k, s := range stack {
					if s == n {
						start = k
					}
				}
				cycle := append(append([]string{}, stack[start:]...), n)
				v.errorf(indexPath(path, i)+".needs", "needs form a cycle: %s", strings.Join(cycle, " → "))
				reported = true
				return
			case white:
				visit(j)
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
	}
	for i := range jobs {
		if color[i] == white {
			visit(i)
		}
	}
}

func (v *validator) checkJob(jp string, j *Job, jobNames, declared []string) {
	for k, n := range j.Needs {
		np := indexPath(jp+".needs", k)
		switch {
		case n == j.Name:
			v.errorf(np, "job %q needs itself", n)
		case !contains(jobNames, n):
			v.errorf(np, "needs %q: no job of that name in this stage%s; jobs here: %s", n, didYouMean(n, jobNames), quoteList(jobNames))
		case contains(j.Needs[:k], n):
			v.errorf(np, "job %q is listed twice in needs", n)
		}
	}
	axes := []string{}
	if j.Matrix != nil {
		axes = v.checkMatrix(jp+".matrix", j.Matrix)
	}
	needs := []string(j.Needs)
	if needs == nil {
		needs = []string{}
	}
	jobScope := expr.Scope{Contexts: ctxJobField, Variables: declared, MatrixAxes: axes, Needs: needs}
	ifScope := jobScope
	ifScope.Contexts = ctxJobIf
	v.checkCondition(jp+".if", j.If, ifScope)
	v.checkEnv(jp+".env", j.Env, jobScope)
	v.checkTemplate(jp+".image", j.Image, withoutSecrets(jobScope))
	if j.PullPolicy != "" && !contains(PullPolicies, j.PullPolicy) {
		v.errorf(jp+".pullPolicy", "invalid pullPolicy %q%s; accepted: %s", j.PullPolicy, didYouMean(j.PullPolicy, PullPolicies), quoteList(PullPolicies))
	}
	v.checkDuration(jp+".timeout", j.Timeout)
	if j.Retry != nil {
		if j.Retry.Max < 0 || j.Retry.Max > MaxRetries {
			v.errorf(jp+".retry.max", "retry.max must be between 0 and %d, got %d", MaxRetries, j.Retry.Max)
		}
		v.checkDuration(jp+".retry.delay", j.Retry.Delay)
	}
	if j.RunsOn != nil {
		for k, val := range j.RunsOn.Labels {
			kp := keyPath(jp+".runsOn", k)
			if err := CheckLabel(k, val); err != nil {
				v.errorf(kp, "%v", err)
			}
		}
		for k, sel := range j.RunsOn.Selectors {
			if _, err := ParseSelector(sel); err != nil {
				v.errorf(indexPath(jp+".runsOn", k), "%v", err)
			}
		}
	}
	svcNames := map[string]bool{}
	for k, s := range j.Services {
		sp := indexPath(jp+".services", k)
		if !hostnameRe().MatchString(s.Name) {
			v.errorf(sp+".name", "invalid service name %q: it becomes a host name, so use lower-case letters, digits and '-'", s.Name)
		} else if svcNames[s.Name] {
			v.errorf(sp+".name", "duplicate service name %q", s.Name)
		}
		svcNames[s.Name] = true
		if s.Image == "" {
			v.errorf(sp, "service %q needs an image", s.Name)
		}
		v.checkTemplate(sp+".image", s.Image, withoutSecrets(jobScope))
		v.checkEnv(sp+".env", s.Env, jobScope)
	}
	v.checkApproval(jp+".approval", j.Approval)
	if len(j.Steps) == 0 {
		v.errorf(jp, "job %q has no steps", j.Name)
	}
	seen := map[string]bool{}
	var before []string
	for k := range j.Steps {
		st := &j.Steps[k]
		sp := indexPath(jp+".steps", k)
		if st.Name == "" {
			st.Name = fmt.Sprintf("step-%d", k+1)
		} else {
			v.checkName(sp+".name", "step", st.Name)
		}
		if seen[st.Name] {
			v.errorf(sp+".name", "duplicate step name %q in job %q", st.Name, j.Name)
		}
		seen[st.Name] = true
		scope := jobScope
		scope.Contexts = ctxStepField
		scope.Steps = append([]string{}, before...)
		v.checkStep(sp, st, scope)
		before = append(before, st.Name)
	}
	outScope := jobScope
	outScope.Contexts = ctxJobOutputs
	outScope.Steps = before
	for _, k := range sortedKeys(j.Outputs) {
		kp := keyPath(jp+".outputs", k)
		if !identRe().MatchString(k) {
			v.errorf(kp, "invalid output name %q: start with a letter or '_', then letters, digits, '_' or '-'", k)
		}
		v.checkTemplate(kp, j.Outputs[k], outScope)
	}
}

func (v *validator) checkMatrix(mp string, m *Matrix) []string {
	if len(m.Axes) == 0 && len(m.Include) == 0 {
		v.errorf(mp, "a matrix needs at least one axis (name: [values]) or include entries")
		return nil
	}
	axisNames := map[string]bool{}
	for _, a := range m.Axes {
		ap := keyPath(mp, a.Name)
		if !identRe().MatchString(a.Name) {
			v.errorf(ap, "invalid matrix axis name %q: start with a letter or '_', then letters, digits, '_' or '-'", a.Name)
		}
		if len(a.Values) == 0 {
			v.errorf(ap, "matrix axis %q has no values", a.Name)
		}
		axisNames[a.Name] = true
	}
	for i, ex := range m.Exclude {
		for k := range ex {
			if !axisNames[k] {
				names := make([]string, 0, len(m.Axes))
				for _, a := range m.Axes {
					names = append(names, a.Name)
				}
				v.errorf(keyPath(indexPath(mp+".exclude", i), k), "exclude names %q, which is not an axis%s; axes: %s", k, didYouMean(k, names), quoteList(names))
			}
		}
	}
	for i, inc := range m.Include {
		for k := range inc {
			if !identRe().MatchString(k) {
				v.errorf(keyPath(indexPath(mp+".include", i), k), "invalid matrix key %q", k)
			}
		}
	}
	if RawCombinations(m) > MaxRawCombinations {
		v.errorf(mp, "the matrix axes multiply to more than %d combinations (before exclude); at most %d jobs may result", MaxRawCombinations, MaxMatrixCombinations)
	} else if n := len(ExpandMatrix(m, MaxMatrixCombinations+1)); n > MaxMatrixCombinations {
		v.errorf(mp, "the matrix expands to more than %d combinations", MaxMatrixCombinations)
	} else if n == 0 {
		v.errorf(mp, "the matrix expands to no combination: exclude removes them all")
	}
	return m.AxisNames()
}

func (v *validator) checkStep(sp string, st *Step, scope expr.Scope) {
	hasRun, hasUses := st.Run != "", st.Uses != ""
	switch {
	case hasRun && hasUses:
		v.errorf(sp, "a step has either run (a shell script) or uses (an action), not both")
	case !hasRun && !hasUses:
		v.errorf(sp, "a step needs run (a shell script) or uses (an action, e.g. actions/git-checkout@v1)")
	}
	if hasRun {
		if st.Action != "" {
			v.errorf(sp+".action", "action applies only to steps with uses")
		}
		if len(st.Args) > 0 {
			v.errorf(sp+".args", "args apply only to steps with uses; a run step reads env instead")
		}
		v.checkTemplate(sp+".run", st.Run, withoutSecrets(scope))
		if strings.TrimSpace(st.Shell) == "" && st.Shell != "" {
			v.errorf(sp+".shell", "shell is blank")
		}
	}
	if hasUses && !hasRun {
		if st.Shell != "" {
			v.errorf(sp+".shell", "shell applies only to run steps; for actions/shell@v1 pass args.shell")
		}
		v.checkUses(sp, st, scope)
	}
	ifScope := scope
	ifScope.Contexts = ctxStepIf
	v.checkCondition(sp+".if", st.If, ifScope)
	v.checkEnv(sp+".env", st.Env, scope)
	v.checkTemplate(sp+".workingDirectory", st.WorkingDirectory, withoutSecrets(scope))
	v.checkDuration(sp+".timeout", st.Timeout)
}

// withoutSecrets is scope minus the secrets context: fields other than env
// and args (a script, a path, an image) must not carry secret values.
func withoutSecrets(scope expr.Scope) expr.Scope {
	scope.Contexts = slices.DeleteFunc(slices.Clone(scope.Contexts), func(c string) bool { return c == "secrets" })
	return scope
}

func (v *validator) checkUses(sp string, st *Step, scope expr.Scope) {
	if image, ok := PluginImage(st.Uses); ok {
		v.checkPlugin(sp, st, image, scope)
		return
	}
	if v.catalog == nil {
		v.errorf(sp+".uses", "unknown action %q: no actions are available here", st.Uses)
		return
	}
	info, ok := v.catalog.LookupAction(st.Uses)
	if !ok {
		names := v.catalog.ActionNames()
		msg := fmt.Sprintf("unknown action %q%s; available: %s", st.Uses, didYouMean(st.Uses, names), quoteList(names))
		if base, _, found := strings.Cut(st.Uses, "@"); found {
			for _, n := range names {
				if strings.HasPrefix(n, base+"@") {
					msg = fmt.Sprintf("unknown version of %s: %q is not available; available: %s", base, st.Uses, n)
				}
			}
		}
		v.errorf(sp+".uses", "%s", msg)
		return
	}
	switch {
	case st.Action != "" && len(info.Actions) == 0:
		v.errorf(sp+".action", "%s takes no action field", st.Uses)
	case st.Action != "" && !contains(info.Actions, st.Action):
		v.errorf(sp+".action", "unknown action %q for %s%s; accepted: %s", st.Action, st.Uses, didYouMean(st.Action, info.Actions), info.ActionChoices())
	}
	inputs := make([]string, len(info.Inputs))
	for i, in := range info.Inputs {
		inputs[i] = in.Name
	}
	for _, k := range sortedKeys(st.Args) {
		if !contains(inputs, k) {
			accepted := "none"
			if len(inputs) > 0 {
				accepted = quoteList(inputs)
			}
			v.errorf(keyPath(sp+".args", k), "%s has no argument %q%s; accepted: %s", st.Uses, k, didYouMean(k, inputs), accepted)
		}
	}
	for _, in := range info.Inputs {
		if _, ok := st.Args[in.Name]; in.Required && !ok {
			v.errorf(sp+".args", "%s needs args.%s (%s)", st.Uses, in.Name, in.Description)
		}
	}
	for _, pe := range expr.CheckAny(st.Args, scope) {
		v.exprError(joinArgsPath(sp+".args", pe.Path), pe.Err)
	}
}

// checkPlugin validates a `uses: docker://IMAGE` step: the image reference is
// literal (so that agents can fetch it before the job starts), and its args
// become PLUGIN_* variables, whatever their names.
func (v *validator) checkPlugin(sp string, st *Step, image string, scope expr.Scope) {
	switch {
	case image == "":
		v.errorf(sp+".uses", "uses %q names no image; write docker://IMAGE, e.g. docker://alpine:3.20", st.Uses)
	case strings.Contains(image, "${{"):
		v.errorf(sp+".uses", "the image of a docker:// step cannot contain expressions: %q", st.Uses)
	default:
		if err := CheckImageRef(image); err != nil {
			v.errorf(sp+".uses", "%s: %v", st.Uses, err)
		}
	}
	if st.Action != "" {
		v.errorf(sp+".action", "action applies only to catalog actions, not to a docker:// plugin")
	}
	byEnv := map[string]string{}
	for _, k := range sortedKeys(st.Args) {
		name := PluginEnvName(k)
		if k == "" {
			v.errorf(sp+".args", "an argument name is empty")
		} else if other, dup := byEnv[name]; dup {
			v.errorf(keyPath(sp+".args", k), "args %q and %q both become %s", other, k, name)
		}
		byEnv[name] = k
	}
	for _, pe := range expr.CheckAny(st.Args, scope) {
		v.exprError(joinArgsPath(sp+".args", pe.Path), pe.Err)
	}
}

func joinArgsPath(base, p string) string {
	if p == "" {
		return base
	}
	if strings.HasPrefix(p, "[") {
		return base + p
	}
	return base + "." + p
}

// CheckLabel validates an agent label key and value (the rules of runsOn).
func CheckLabel(k, val string) error {
	if !labelKeyRe().MatchString(k) {
		return fmt.Errorf("invalid label key %q: letters, digits, '.', '_', '-' and '/'", k)
	}
	if !labelValRe().MatchString(val) {
		return fmt.Errorf("invalid label value %q for %s: letters, digits, '.', '_' and '-'", val, k)
	}
	return nil
}
