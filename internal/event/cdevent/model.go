package cdevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/package-url/packageurl-go"
)

// The CDEvents of spec v0.5.1 this package produces, as their own JSON
// types. They used to be built with the CDEvents Go SDK, whose package init
// compiles every JSON schema of every spec version (150 ms and 33 MB at each
// start of any runnel command). The SDK stays in the tests: every event built
// here is read back by it, checked against its struct rules and the spec's
// JSON schema, and compared field for field with the event the SDK itself
// builds from the same values (model_test.go).

// cdEvent is a CDEvent: its context and its subject.
type cdEvent struct {
	Context cdContext `json:"context"`
	Subject cdSubject `json:"subject"`
}

// cdContext is the context of a spec v0.5.x event (specversion, no links or
// custom data).
type cdContext struct {
	ID          string    `json:"id"`
	Source      string    `json:"source"`
	Type        string    `json:"type"`
	Timestamp   time.Time `json:"timestamp"`
	SpecVersion string    `json:"specversion"`
}

// cdSubject is an event's subject; Content is one of the *Content types
// below, as the event type wants.
type cdSubject struct {
	ID      string `json:"id"`
	Source  string `json:"source,omitempty"`
	Content any    `json:"content"`
}

// reference is the spec's reference to another subject.
type reference struct {
	ID     string `json:"id"`
	Source string `json:"source,omitempty"`
}

// pipelineRunContent is the content of pipelinerun.queued, .started and
// .finished (the first two have no outcome or errors).
type pipelineRunContent struct {
	Errors       string `json:"errors,omitempty"`
	Outcome      string `json:"outcome,omitempty"`
	PipelineName string `json:"pipelineName,omitempty"`
	URI          string `json:"uri,omitempty"`
}

// taskRunContent is the content of taskrun.started and .finished.
type taskRunContent struct {
	Errors      string     `json:"errors,omitempty"`
	Outcome     string     `json:"outcome,omitempty"`
	PipelineRun *reference `json:"pipelineRun,omitempty"`
	TaskName    string     `json:"taskName,omitempty"`
	URI         string     `json:"uri,omitempty"`
}

// buildContent is the content of build.queued, .started and .finished
// (artifactId only in finished).
type buildContent struct {
	ArtifactID string `json:"artifactId,omitempty"`
}

// artifactPackagedContent is the content of artifact.packaged: change is
// required by the spec.
type artifactPackagedContent struct {
	Change *reference `json:"change"`
}

// emptyContent is the content of artifact.published as built here (no sbom,
// no user).
type emptyContent struct{}

// newEvent is an event of type typ about subject id with content c, from
// source at time t.
func newEvent(typ, id, source, subjectID string, t time.Time, c any) *cdEvent {
	return &cdEvent{
		Context: cdContext{ID: id, Source: source, Type: typ, Timestamp: t.UTC(), SpecVersion: SpecVersion},
		Subject: cdSubject{ID: subjectID, Source: source, Content: c},
	}
}

// check applies the spec's rules that the values given to newEvent could
// break (the rest is fixed by the types): required ids, URI references for
// sources, package URLs for artifact ids, a change for artifact.packaged.
func (e *cdEvent) check() error {
	if e.Context.ID == "" {
		return errors.New("context.id is empty")
	}
	if e.Context.Timestamp.IsZero() {
		return errors.New("context.timestamp is not set")
	}
	if err := uriReference("context.source", e.Context.Source, true); err != nil {
		return err
	}
	if e.Subject.ID == "" {
		return errors.New("subject.id is empty")
	}
	if err := uriReference("subject.source", e.Subject.Source, false); err != nil {
		return err
	}
	switch c := e.Subject.Content.(type) {
	case *taskRunContent:
		if c.PipelineRun != nil {
			if c.PipelineRun.ID == "" {
				return errors.New("subject.content.pipelineRun.id is empty")
			}
			if err := uriReference("subject.content.pipelineRun.source", c.PipelineRun.Source, false); err != nil {
				return err
			}
		}
	case *buildContent:
		if c.ArtifactID != "" {
			if _, err := packageurl.FromString(c.ArtifactID); err != nil {
				return fmt.Errorf("subject.content.artifactId %q is not a package URL: %v", c.ArtifactID, err)
			}
		}
	case *artifactPackagedContent:
		if c.Change == nil || c.Change.ID == "" {
			return errors.New("subject.content.change.id is empty")
		}
		if err := uriReference("subject.content.change.source", c.Change.Source, false); err != nil {
			return err
		}
	}
	if e.Context.Type == TypeArtifactPackaged || e.Context.Type == TypeArtifactPublished {
		if _, err := packageurl.FromString(e.Subject.ID); err != nil {
			return fmt.Errorf("subject.id %q is not a package URL: %v", e.Subject.ID, err)
		}
	}
	return nil
}

// uriReference checks that v, named field, is a URI reference (RFC 3986);
// an empty v is accepted unless required.
func uriReference(field, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s is empty", field)
		}
		return nil
	}
	if _, err := url.Parse(v); err != nil {
		return fmt.Errorf("%s %q is not a URI reference: %v", field, v, err)
	}
	return nil
}

// CloudEventsVersion is the CloudEvents specification version of the events
// sent.
const CloudEventsVersion = "1.0"

// Event is a CloudEvent (spec 1.0) whose data is a CDEvent as JSON: what
// Build and BuildEvents return and Sender sends. Its accessors are named as
// the CloudEvents Go SDK names them.
type Event struct {
	id, source, typ, subject string
	time                     time.Time
	data                     []byte
}

// ID is the event's id (the CDEvent's context id).
func (e *Event) ID() string { return e.id }

// Source is the event's source (the CDEvent's context source).
func (e *Event) Source() string { return e.source }

// Type is the event's type (the CDEvent's type).
func (e *Event) Type() string { return e.typ }

// Subject is the CDEvent's subject id.
func (e *Event) Subject() string { return e.subject }

// Time is when the event happened (the CDEvent's timestamp).
func (e *Event) Time() time.Time { return e.time }

// SpecVersion is the CloudEvents version, "1.0".
func (e *Event) SpecVersion() string { return CloudEventsVersion }

// DataContentType is the media type of Data, "application/json".
func (e *Event) DataContentType() string { return "application/json" }

// Data is the CDEvent as JSON.
func (e *Event) Data() []byte { return e.data }

// String describes the event for logs and test failures.
func (e *Event) String() string {
	return fmt.Sprintf("CloudEvent %s (%s) from %s about %s at %s", e.id, e.typ, e.source, e.subject, e.time.Format(time.RFC3339Nano))
}

// Validate checks the attributes CloudEvents 1.0 requires: a non-empty id
// and type, and a source that is a non-empty URI reference.
func (e *Event) Validate() error {
	if e == nil {
		return errors.New("nil event")
	}
	if e.id == "" {
		return errors.New("id is empty")
	}
	if e.typ == "" {
		return errors.New("type is empty")
	}
	return uriReference("source", e.source, true)
}

// cloudEvent checks e and renders it as a CloudEvent, with the attributes the
// CDEvents CloudEvents binding names: id, source and type of the CDEvent,
// subject the CDEvent's subject id, time its timestamp, and the CDEvent as
// application/json data.
func (e *cdEvent) cloudEvent() (*Event, error) {
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("%s: %v", e.Context.Type, err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", e.Context.Type, err)
	}
	return &Event{id: e.Context.ID, source: e.Context.Source, typ: e.Context.Type, subject: e.Subject.ID,
		time: e.Context.Timestamp, data: data}, nil
}
