package spec

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
	// Actions lists the accepted values of a step's `action` field; empty means
	// the field must be omitted.
	Actions []string
}

// ActionCatalog resolves `uses` references during validation. The action
// registry (package action) implements it.
type ActionCatalog interface {
	LookupAction(uses string) (ActionInfo, bool)
	// ActionNames lists every known `uses` value, for "did you mean" hints.
	ActionNames() []string
}
