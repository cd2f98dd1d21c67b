package webhook

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/spec"
)

// matchAll is the trigger a definition without event triggers gets: every
// push, tag and pull request.
var matchAll = spec.Trigger{Type: runnel.TriggerEvent}

// Match returns the first `type: event` trigger of triggers that ev
// satisfies, or nil and a reason naming, for every event trigger, why not.
//
// A trigger matches when:
//   - its events (empty: push, tag and pull_request — but when only branches
//     is set, push and pull_request; when only tags is set, tag) include the
//     event's kind;
//   - for a push, branches matches the branch; for a pull request, branches
//     matches the base (target) branch; for a tag, tags matches the tag
//     (an absent filter matches all);
//   - for a push or a pull request, paths matches at least one changed
//     path, unless the changed paths are unknown (ev.ChangedPaths nil).
//
// A filter matches a name when some include pattern matches it (or there is
// no include) and no exclude pattern does. A pattern is a glob (path.Match
// syntax, and ** for any number of path segments) or, after "regex:", a
// regular expression that must match the whole name.
//
// A definition without any event trigger accepts every push, tag and pull
// request (matched is then a trigger with no filters and no variables).
func Match(triggers []spec.Trigger, ev *Event) (matched *spec.Trigger, reason string) {
	switch ev.Kind {
	case KindPush, KindTag, KindPullRequest:
	default:
		return nil, fmt.Sprintf("a %s event does not start runs", ev.Kind)
	}
	var reasons []string
	for i := range triggers {
		t := &triggers[i]
		if t.Type != runnel.TriggerEvent {
			continue
		}
		why := matchOne(t, ev)
		if why == "" {
			return t, ""
		}
		reasons = append(reasons, "triggers["+strconv.Itoa(i)+"]: "+why)
	}
	if reasons == nil {
		m := matchAll
		return &m, ""
	}
	return nil, strings.Join(reasons, "; ")
}

func matchOne(t *spec.Trigger, ev *Event) string {
	events := t.Events
	implied := ""
	if len(events) == 0 {
		switch {
		case t.Tags != nil && t.Branches == nil:
			events, implied = []string{KindTag}, " (implied: the trigger filters tags only)"
		case t.Branches != nil && t.Tags == nil:
			events, implied = []string{KindPush, KindPullRequest}, " (implied: the trigger filters branches only)"
		default:
			events = []string{KindPush, KindTag, KindPullRequest}
		}
	}
	if !slices.Contains(events, ev.Kind) {
		return fmt.Sprintf("event %q is not in events %s%s", ev.Kind, quoted(events), implied)
	}
	tr := &ev.Trigger
	switch ev.Kind {
	case KindPush:
		if why := filterName("branch", "branches", tr.Branch, t.Branches); why != "" {
			return why
		}
	case KindPullRequest:
		if why := filterName("base branch", "branches", tr.PullRequest.Base, t.Branches); why != "" {
			return why
		}
	case KindTag:
		if why := filterName("tag", "tags", tr.Tag, t.Tags); why != "" {
			return why
		}
		return ""
	}
	if t.Paths == nil || ev.ChangedPaths == nil {
		return ""
	}
	for _, p := range ev.ChangedPaths {
		if filterName("path", "paths", p, t.Paths) == "" {
			return ""
		}
	}
	return fmt.Sprintf("none of the %d changed paths (%s) passes paths %s", len(ev.ChangedPaths), sample(ev.ChangedPaths), describe(t.Paths))
}

// filterName returns "" when f lets name through, else why not.
func filterName(what, field, name string, f *spec.Filter) string {
	if f == nil {
		return ""
	}
	if len(f.Include) > 0 && !slices.ContainsFunc(f.Include, func(p string) bool { return MatchPattern(p, name) }) {
		return fmt.Sprintf("%s %q is not included by %s.include %s", what, name, field, quoted(f.Include))
	}
	for _, p := range f.Exclude {
		if MatchPattern(p, name) {
			return fmt.Sprintf("%s %q is excluded by %s.exclude pattern %q", what, name, field, p)
		}
	}
	return ""
}

// MatchPattern reports whether a filter pattern matches name: "regex:" and a
// regular expression matched against the whole name, or a glob (path.Match
// syntax, plus ** across "/"). An invalid pattern matches nothing (the
// definition's validation already refused it).
func MatchPattern(pattern, name string) bool {
	if re, ok := strings.CutPrefix(pattern, "regex:"); ok {
		rx, err := regexp.Compile(`^(?:` + re + `)$`)
		return err == nil && rx.MatchString(name)
	}
	ok, err := doublestar.Match(pattern, name)
	return err == nil && ok
}

func quoted(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func describe(f *spec.Filter) string {
	var parts []string
	if len(f.Include) > 0 {
		parts = append(parts, "include "+quoted(f.Include))
	}
	if len(f.Exclude) > 0 {
		parts = append(parts, "exclude "+quoted(f.Exclude))
	}
	return strings.Join(parts, ", ")
}

// sample lists up to three paths, for a reason that stays short.
func sample(paths []string) string {
	if len(paths) <= 3 {
		return quoted(paths)
	}
	return strings.TrimSuffix(quoted(paths[:3]), "]") + ", …]"
}
