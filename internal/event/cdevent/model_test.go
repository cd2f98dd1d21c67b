package cdevent

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	cdevents "github.com/cdevents/sdk-go/pkg/api"
	cdeventsv05 "github.com/cdevents/sdk-go/pkg/api/v05"
)

// sdkRendering reads a CDEvent built here back with the CDEvents SDK and
// renders it again with the SDK's own types: an event equal to data after
// both are normalised means the JSON has exactly the fields the SDK's types
// know, named and nested as the SDK renders them (a field the SDK does not
// know would be dropped, a required one the SDK renders would appear).
func sdkRendering(t *testing.T, data []byte) cdevents.CDEventReader {
	t.Helper()
	back, err := cdeventsv05.NewFromJsonBytes(data)
	if err != nil {
		t.Fatalf("SDK NewFromJsonBytes: %v\n%s", err, data)
	}
	again, err := cdevents.AsJsonBytes(back)
	if err != nil {
		t.Fatalf("SDK AsJsonBytes: %v", err)
	}
	if !bytes.Equal(normalise(t, data), normalise(t, again)) {
		t.Errorf("the SDK renders this event differently:\nbuilt here: %s\nSDK:        %s", data, again)
	}
	return back
}

func normalise(t *testing.T, data []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	out, _ := json.Marshal(v) // maps are written with sorted keys
	return out
}

// validate is cdevents.Validate, except that it accepts a build.finished
// event without an artifactId. The SDK (v0.5.1) tags that field
// `validate:"purl"` without omitempty, so its struct validation rejects the
// empty string although the spec's schema makes artifactId optional (and
// omitempty leaves it out of the JSON). Such an event is checked by
// cdevents.Validate with a placeholder package URL in artifactId (every
// other field's struct and schema checks), then as it is against the
// event's JSON schema.
func validate(cd cdevents.CDEventReader) error {
	bf, ok := cd.(*cdeventsv05.BuildFinishedEvent)
	if !ok || bf.Subject.Content.ArtifactId != "" {
		return cdevents.Validate(cd)
	}
	probe := *bf
	probe.SetSubjectArtifactId("pkg:generic/placeholder")
	if err := cdevents.Validate(&probe); err != nil {
		return err
	}
	_, sch, err := bf.GetSchema()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(bf)
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return sch.Validate(v)
}

// TestCheckAgreesWithSDK holds check to the SDK's validation: events that
// check refuses, the SDK refuses too, and the ones it accepts pass the SDK.
func TestCheckAgreesWithSDK(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	good := func() *cdEvent {
		return newEvent(TypeTaskRunFinished, "r-1", "https://ci.example.com", "job_1", at,
			&taskRunContent{Outcome: OutcomeSuccess, TaskName: "t", PipelineRun: &reference{ID: "r", Source: "/runnel/x"}, URI: "http://x/r"})
	}
	tests := []struct {
		name string
		ev   func() *cdEvent
		ok   bool
	}{
		{"good", good, true},
		{"no id", func() *cdEvent { e := good(); e.Context.ID = ""; return e }, false},
		{"no source", func() *cdEvent { e := good(); e.Context.Source = ""; e.Subject.Source = ""; return e }, false},
		{"bad source", func() *cdEvent { e := good(); e.Context.Source = "http://bad host/%zz"; return e }, false},
		{"no subject id", func() *cdEvent { e := good(); e.Subject.ID = ""; return e }, false},
		{"bad subject source", func() *cdEvent { e := good(); e.Subject.Source = "%zz"; return e }, false},
		{"relative source", func() *cdEvent {
			e := good()
			e.Context.Source, e.Subject.Source = "/runnel/inst-1", "/runnel/inst-1"
			return e
		}, true},
		{"build finished with a package URL", func() *cdEvent {
			return newEvent(TypeBuildFinished, "r-1-build", "/s", "r", at, &buildContent{ArtifactID: "pkg:oci/app@sha256:ab?tag=1"})
		}, true},
		{"build finished with a bad artifact id", func() *cdEvent {
			return newEvent(TypeBuildFinished, "r-1-build", "/s", "r", at, &buildContent{ArtifactID: "not a purl"})
		}, false},
		{"artifact packaged", func() *cdEvent {
			return newEvent(TypeArtifactPackaged, "r-1-p", "/s", "pkg:oci/app@sha256:ab", at, &artifactPackagedContent{Change: &reference{ID: "abc"}})
		}, true},
		{"artifact packaged without change id", func() *cdEvent {
			return newEvent(TypeArtifactPackaged, "r-1-p", "/s", "pkg:oci/app@sha256:ab", at, &artifactPackagedContent{Change: &reference{}})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.ev()
			err := e.check()
			if (err == nil) != tt.ok {
				t.Fatalf("check = %v; want ok %v", err, tt.ok)
			}
			data, merr := json.Marshal(e)
			if merr != nil {
				t.Fatal(merr)
			}
			back, perr := cdeventsv05.NewFromJsonBytes(data)
			if perr != nil {
				if tt.ok {
					t.Fatalf("SDK cannot read an event check accepts: %v", perr)
				}
				return
			}
			if serr := validate(back); (serr == nil) != tt.ok {
				t.Errorf("SDK validation = %v; check = %v", serr, err)
			}
			if tt.ok {
				sdkRendering(t, data)
			}
		})
	}
}
