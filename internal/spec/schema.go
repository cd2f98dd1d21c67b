package spec

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
)

// SchemaID is the $id of the language's JSON Schema.
const SchemaID = "https://runnel.dev/schema/pipeline.v1.json"

// Schema returns the JSON Schema of the pipeline language, generated from the
// Go types so it cannot drift from what the parser accepts.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{ExpandedStruct: true}
	s := r.Reflect(&Pipeline{})
	s.ID = SchemaID
	s.Title = "Runnel pipeline definition"
	s.Description = "A pipeline: namespace, version, and stages of jobs of steps (or the jobs shorthand)."
	return json.MarshalIndent(s, "", "  ")
}

func stringSchema(desc string) *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: desc}
}

func scalarSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string"}, {Type: "number"}, {Type: "boolean"}}}
}

func stringsSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "array", Items: &jsonschema.Schema{Type: "string"}}
}

// JSONSchema describes a duration string.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`,
		Description: "A length of time with units, e.g. 30s, 10m, 1h30m."}
}

// JSONSchema describes "a string or a list of strings".
func (StringList) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{stringSchema(""), stringsSchema()}}
}

// JSONSchema describes variables: name → default, or name → declaration.
func (Variables) JSONSchema() *jsonschema.Schema {
	props := orderedmap.New[string, *jsonschema.Schema]()
	props.Set("default", scalarSchema())
	props.Set("description", stringSchema("Shown where the variable is asked for."))
	props.Set("required", &jsonschema.Schema{Type: "boolean"})
	props.Set("options", stringsSchema())
	decl := &jsonschema.Schema{Type: "object", Properties: props, AdditionalProperties: jsonschema.FalseSchema}
	return &jsonschema.Schema{
		Type:                 "object",
		Description:          "Named inputs with defaults that a trigger may override.",
		AdditionalProperties: &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string"}, {Type: "number"}, {Type: "boolean"}, decl}},
	}
}

// JSONSchema describes runsOn: labels or selectors.
func (RunsOn) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: "Agent labels to match exactly (a mapping) or selector expressions (a list).",
		OneOf: []*jsonschema.Schema{
			{Type: "object", AdditionalProperties: &jsonschema.Schema{Type: "string"}},
			stringsSchema(),
			{Type: "string"},
		},
	}
}

// JSONSchema describes a matrix: axes plus include and exclude.
func (Matrix) JSONSchema() *jsonschema.Schema {
	entry := &jsonschema.Schema{Type: "object", AdditionalProperties: scalarSchema()}
	entries := &jsonschema.Schema{Type: "array", Items: entry}
	props := orderedmap.New[string, *jsonschema.Schema]()
	props.Set("include", entries)
	props.Set("exclude", entries)
	return &jsonschema.Schema{
		Type:                 "object",
		Description:          "Axes (name: [values]) whose combinations each run the job, plus include and exclude entries.",
		Properties:           props,
		AdditionalProperties: &jsonschema.Schema{Type: "array", Items: scalarSchema(), MinItems: ptr(uint64(1))},
	}
}

// JSONSchema describes a filter: a list of patterns or include/exclude.
func (Filter) JSONSchema() *jsonschema.Schema {
	props := orderedmap.New[string, *jsonschema.Schema]()
	props.Set("include", stringsSchema())
	props.Set("exclude", stringsSchema())
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "string"},
		stringsSchema(),
		{Type: "object", Properties: props, AdditionalProperties: jsonschema.FalseSchema},
	}}
}

func ptr[T any](v T) *T { return &v }
