package spec

import "strings"

// ActionInput describes one argument a `uses` action accepts.
type ActionInput struct {
	Name        string
	Description string
	Required    bool
	// Default is documentation only: the action applies it.
	Default string
}

// ActionInfo is what validation needs to know about an action.
type ActionInfo struct {
	Uses        string
	Description string
	Inputs      []ActionInput
	// Actions lists the operations the action offers, the accepted values of
	// a step's `action` field (actions/go-build@v1: build, test); empty means
	// the field must be omitted.
	Actions []string
	// DefaultAction is the one of Actions carried out when a step omits
	// `action`.
	DefaultAction string
}

// ActionChoices words Actions for messages, the default marked:
// "build (default), test".
func (i ActionInfo) ActionChoices() string {
	words := make([]string, len(i.Actions))
	for k, a := range i.Actions {
		words[k] = a
		if a == i.DefaultAction {
			words[k] += " (default)"
		}
	}
	return strings.Join(words, ", ")
}

// ActionCatalog resolves `uses` references during validation. The action
// registry (package action) implements it.
type ActionCatalog interface {
	LookupAction(uses string) (ActionInfo, bool)
	// ActionNames lists every known `uses` value, for "did you mean" hints.
	ActionNames() []string
}
