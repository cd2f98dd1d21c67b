package action

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/runnel-ci/runnel/internal/spec"
)

// args wraps a call's arguments with the checks every built-in action needs.
// Error messages have the form "args.NAME: what is accepted, got WHAT" so that
// a user can fix the pipeline without reading the action's source.
type args struct {
	values map[string]any
	// action is the operation selected: the call's `action`, else the
	// action's default.
	action string
}

// checkCall resolves the call's `action` (omitted: info's default; one that
// info does not offer is refused), and rejects arguments that info does not
// list (spec validation catches those earlier, but Prepare must not rely on
// it) and missing required arguments.
func checkCall(info spec.ActionInfo, call Call) (args, error) {
	action, err := selectAction(info, call.Action)
	if err != nil {
		return args{}, err
	}
	known := map[string]bool{}
	var names []string
	for _, in := range info.Inputs {
		known[in.Name] = true
		names = append(names, in.Name)
	}
	var unknown []string
	for name := range call.Args {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return args{}, fmt.Errorf("args.%s: unknown argument of %s (accepted: %s)", unknown[0], info.Uses, strings.Join(names, ", "))
	}
	for _, in := range info.Inputs {
		if _, ok := call.Args[in.Name]; in.Required && !ok {
			return args{}, fmt.Errorf("args.%s: required by %s", in.Name, info.Uses)
		}
	}
	return args{values: call.Args, action: action}, nil
}

// selectAction returns the operation a step's `action` field selects: the
// field itself when info offers it, info's default when it is empty.
func selectAction(info spec.ActionInfo, action string) (string, error) {
	switch {
	case len(info.Actions) == 0 && action != "":
		return "", fmt.Errorf("action: %s takes no action field, got %q", info.Uses, action)
	case action == "":
		return info.DefaultAction, nil
	case !slices.Contains(info.Actions, action):
		return "", fmt.Errorf("action: %s has no action %q (accepted: %s)", info.Uses, action, info.ActionChoices())
	}
	return action, nil
}

// str returns a string argument, or def when it is absent. Numbers and booleans
// are refused rather than formatted: YAML reads `ref: 1.10` as the number 1.1,
// and silently checking out "1.1" would be worse than asking for quotes.
func (a args) str(name, def string) (string, error) {
	v, ok := a.values[name]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("args.%s: must be a string (quote it in YAML), got %s", name, describe(v))
	}
	return s, nil
}

// nonNegativeInt returns an integer argument given as a number or a string of
// digits (expressions evaluate to strings), or def when it is absent.
func (a args) nonNegativeInt(name string, def int) (int, error) {
	v, ok := a.values[name]
	if !ok || v == nil {
		return def, nil
	}
	bad := fmt.Errorf("args.%s: must be a non-negative integer, got %s", name, describe(v))
	switch n := v.(type) {
	case int:
		if n < 0 {
			return 0, bad
		}
		return n, nil
	case int64:
		if n < 0 || n > math.MaxInt32 {
			return 0, bad
		}
		return int(n), nil
	case float64:
		if n < 0 || n != math.Trunc(n) || n > math.MaxInt32 {
			return 0, bad
		}
		return int(n), nil
	case string:
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || strings.HasPrefix(n, "+") {
			return 0, bad
		}
		return i, nil
	}
	return 0, bad
}

// stringList returns an argument given as one string of space-separated items
// or as a list of strings, or def when it is absent.
func (a args) stringList(name string, def []string) ([]string, error) {
	v, ok := a.values[name]
	if !ok || v == nil {
		return def, nil
	}
	if l, ok := v.([]string); ok {
		v = anyList(l)
	}
	switch l := v.(type) {
	case string:
		items := strings.Fields(l)
		if len(items) == 0 {
			return nil, fmt.Errorf("args.%s: must not be empty", name)
		}
		return items, nil
	case []any:
		if len(l) == 0 {
			return nil, fmt.Errorf("args.%s: must not be an empty list", name)
		}
		items := make([]string, len(l))
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("args.%s[%d]: must be a string, got %s", name, i, describe(e))
			}
			if s == "" || strings.ContainsFunc(s, unicode.IsSpace) {
				return nil, fmt.Errorf("args.%s[%d]: must be a non-empty string without whitespace, got %q", name, i, s)
			}
			items[i] = s
		}
		return items, nil
	}
	return nil, fmt.Errorf("args.%s: must be a string or a list of strings, got %s", name, describe(v))
}

// anyList converts a []string (callers other than YAML may pass one) to the
// []any that stringList checks.
func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// describe renders a value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case int, int64, float64:
		return fmt.Sprintf("number %v", x)
	case []any, []string:
		return "a list"
	case map[string]any:
		return "a map"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
