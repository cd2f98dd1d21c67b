package cdevent

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	cdevents "github.com/cdevents/sdk-go/pkg/api"
	cdeventsv05 "github.com/cdevents/sdk-go/pkg/api/v05"
	"github.com/package-url/packageurl-go"

	"github.com/runnel-ci/runnel/internal/store"
)

const testDigest = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"

var testImage = ImageBuild{
	Registry:   "127.0.0.1:5000",
	Repository: "team/app",
	Tag:        "latest",
	Digest:     testDigest,
	Commit:     "0123456789abcdef0123456789abcdef01234567",
	SourceURL:  "https://git.example.com/team/app.git",
}

func TestTypeConstantsMatchSDK(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{TypeBuildQueued, cdeventsv05.BuildQueuedEventType.String()},
		{TypeBuildStarted, cdeventsv05.BuildStartedEventType.String()},
		{TypeBuildFinished, cdeventsv05.BuildFinishedEventType.String()},
		{TypeArtifactPackaged, cdeventsv05.ArtifactPackagedEventType.String()},
		{TypeArtifactPublished, cdeventsv05.ArtifactPublishedEventType.String()},
	} {
		if c.got != c.want {
			t.Errorf("constant %q; the SDK produces %q", c.got, c.want)
		}
	}
}

func TestImagePURL(t *testing.T) {
	tests := []struct {
		name string
		b    ImageBuild
		want string
		// what it parses back to
		pname, version string
		quals          map[string]string
	}{
		{name: "with digest, registry with port", b: testImage,
			want:  "pkg:oci/app@" + testDigest + "?repository_url=127.0.0.1:5000%2Fteam%2Fapp&tag=latest",
			pname: "app", version: testDigest, quals: map[string]string{"repository_url": "127.0.0.1:5000/team/app", "tag": "latest"}},
		{name: "without digest", b: ImageBuild{Registry: "127.0.0.1:5000", Repository: "team/app", Tag: "latest"},
			want:  "pkg:oci/app?repository_url=127.0.0.1:5000%2Fteam%2Fapp&tag=latest",
			pname: "app", quals: map[string]string{"repository_url": "127.0.0.1:5000/team/app", "tag": "latest"}},
		{name: "upper-case name and digest", b: ImageBuild{Registry: "Registry.Example.com", Repository: "Team/My-App", Tag: "V1.2", Digest: "sha256:ABCDEF"},
			want:  "pkg:oci/my-app@sha256:abcdef?repository_url=Registry.Example.com%2FTeam%2FMy-App&tag=V1.2",
			pname: "my-app", version: "sha256:abcdef", quals: map[string]string{"repository_url": "Registry.Example.com/Team/My-App", "tag": "V1.2"}},
		{name: "deep repository, no tag", b: ImageBuild{Registry: "ghcr.io", Repository: "org/group/svc", Digest: "sha256:0a1b"},
			want:  "pkg:oci/svc@sha256:0a1b?repository_url=ghcr.io%2Forg%2Fgroup%2Fsvc",
			pname: "svc", version: "sha256:0a1b", quals: map[string]string{"repository_url": "ghcr.io/org/group/svc"}},
		{name: "single-element repository", b: ImageBuild{Registry: "localhost:5000", Repository: "app", Tag: "main"},
			want:  "pkg:oci/app?repository_url=localhost:5000%2Fapp&tag=main",
			pname: "app", quals: map[string]string{"repository_url": "localhost:5000/app", "tag": "main"}},
		{name: "tag needing encoding", b: ImageBuild{Registry: "r:1", Repository: "a/b", Tag: "1.0+build"},
			want:  "pkg:oci/b?repository_url=r:1%2Fa%2Fb&tag=1.0%2Bbuild",
			pname: "b", quals: map[string]string{"repository_url": "r:1/a/b", "tag": "1.0+build"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.b.PURL()
			if got != tt.want {
				t.Errorf("PURL() = %q\nwant      %q", got, tt.want)
			}
			p, err := packageurl.FromString(got)
			if err != nil {
				t.Fatalf("FromString(%q): %v", got, err)
			}
			if p.Type != "oci" || p.Namespace != "" || p.Name != tt.pname || p.Version != tt.version {
				t.Errorf("parsed back: type %q namespace %q name %q version %q", p.Type, p.Namespace, p.Name, p.Version)
			}
			if fmt.Sprint(p.Qualifiers.Map()) != fmt.Sprint(tt.quals) {
				t.Errorf("qualifiers %v; want %v", p.Qualifiers.Map(), tt.quals)
			}
			// Canonical: rendering the parsed form gives it back.
			if s := p.ToString(); s != got {
				t.Errorf("not canonical: %q renders as %q", got, s)
			}
		})
	}
	// The spec's own example form (':' encoded, '/' not) is the same package.
	alt := "pkg:oci/app@sha256%3A" + strings.TrimPrefix(testDigest, "sha256:") + "?tag=latest&repository_url=127.0.0.1:5000/team/app"
	p, err := packageurl.FromString(alt)
	if err != nil {
		t.Fatal(err)
	}
	if p.ToString() != testImage.PURL() {
		t.Errorf("%q canonicalizes to %q, not %q", alt, p.ToString(), testImage.PURL())
	}
}

// imageContent is the subject content of the build and artifact events.
type imageContent struct {
	ArtifactID string              `json:"artifactId"`
	Change     *cdevents.Reference `json:"change"`
}

type imageJSON struct {
	Context struct {
		SpecVersion string `json:"specversion"`
		ID          string `json:"id"`
		Source      string `json:"source"`
		Type        string `json:"type"`
	} `json:"context"`
	Subject struct {
		ID      string          `json:"id"`
		Source  string          `json:"source"`
		Content json.RawMessage `json:"content"`
	} `json:"subject"`
}

func TestBuildEvents(t *testing.T) {
	purl := testImage.PURL()
	change := &cdevents.Reference{Id: testImage.Commit, Source: testImage.SourceURL}
	noDigest := testImage
	noDigest.Digest = ""
	type want struct {
		typ, idSuffix, subject string
		c                      imageContent
	}
	finishedWithArtifact := []want{
		{TypeBuildFinished, "-build", runID, imageContent{ArtifactID: purl}},
		{TypeArtifactPackaged, "-artifact-packaged", purl, imageContent{Change: change}},
		{TypeArtifactPublished, "-artifact-published", purl, imageContent{}},
	}
	finishedBare := []want{{TypeBuildFinished, "-build", runID, imageContent{}}}
	tests := []struct {
		name string
		typ  string
		sc   store.StatusChange
		b    ImageBuild
		want []want
	}{
		{name: "queued", typ: store.EventRunStatus, sc: store.StatusChange{Status: "pending"}, b: noDigest,
			want: []want{{TypeBuildQueued, "-build", runID, imageContent{}}}},
		{name: "started from pending", typ: store.EventRunStatus, sc: store.StatusChange{Status: "running", Previous: "pending"}, b: noDigest,
			want: []want{{TypeBuildStarted, "-build", runID, imageContent{}}}},
		{name: "started new", typ: store.EventRunStatus, sc: store.StatusChange{Status: "running"}, b: noDigest,
			want: []want{{TypeBuildStarted, "-build", runID, imageContent{}}}},
		{name: "success", typ: store.EventRunStatus, sc: store.StatusChange{Status: "success", Previous: "running", EndedAt: &testTime}, b: testImage,
			want: finishedWithArtifact},
		{name: "partial", typ: store.EventRunStatus, sc: store.StatusChange{Status: "partial", Previous: "running", EndedAt: &testTime}, b: testImage,
			want: finishedWithArtifact},
		{name: "success without digest", typ: store.EventRunStatus, sc: store.StatusChange{Status: "success", Previous: "running", EndedAt: &testTime}, b: noDigest,
			want: finishedBare},
		{name: "failed", typ: store.EventRunStatus, sc: store.StatusChange{Status: "failed", Previous: "running", Reason: "push refused", EndedAt: &testTime}, b: testImage,
			want: finishedBare},
		{name: "system error", typ: store.EventRunStatus, sc: store.StatusChange{Status: "failed", Previous: "pending", SystemError: true, EndedAt: &testTime}, b: noDigest,
			want: finishedBare},
		{name: "cancelled", typ: store.EventRunStatus, sc: store.StatusChange{Status: "cancelled", Previous: "paused", EndedAt: &testTime}, b: testImage,
			want: finishedBare},
		{name: "scp-like source URL left out of change", typ: store.EventRunStatus, sc: store.StatusChange{Status: "success", Previous: "running", EndedAt: &testTime},
			b: func() ImageBuild { b := testImage; b.SourceURL = "git@git.example.com:team/app.git"; return b }(),
			want: []want{finishedWithArtifact[0], {TypeArtifactPackaged, "-artifact-packaged", purl, imageContent{Change: &cdevents.Reference{Id: testImage.Commit}}},
				finishedWithArtifact[2]}},
		{name: "stopped, jobs still running", typ: store.EventRunStatus, sc: store.StatusChange{Status: "cancelled", Previous: "running"}, b: testImage},
		{name: "stopped, end recorded later", typ: store.EventRunStatus, sc: store.StatusChange{Status: "cancelled", Previous: "cancelled", EndedAt: &testTime},
			b: testImage, want: finishedBare},
		{name: "final without its end", typ: store.EventRunStatus, sc: store.StatusChange{Status: "success", Previous: "success"}, b: testImage},
		{name: "paused", typ: store.EventRunStatus, sc: store.StatusChange{Status: "paused", Previous: "running"}, b: testImage},
		{name: "resumed", typ: store.EventRunStatus, sc: store.StatusChange{Status: "running", Previous: "paused"}, b: testImage},
		{name: "job", typ: store.EventJobStatus, sc: job("success", "running", 1, ""), b: testImage},
		{name: "step", typ: store.EventStepStatus, sc: store.StatusChange{JobRunID: jobID, StepRunID: "s", Status: "running"}, b: testImage},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq := int64(i + 1)
			evs, err := BuildEvents(testCfg, runEvent(t, tt.typ, seq, tt.sc), tt.b)
			if err != nil {
				t.Fatalf("BuildEvents: %v", err)
			}
			if len(evs) != len(tt.want) {
				var types []string
				for _, ev := range evs {
					types = append(types, ev.Type())
				}
				t.Fatalf("BuildEvents = %v; want %d events", types, len(tt.want))
			}
			if len(tt.want) == 0 && evs != nil {
				t.Errorf("BuildEvents = %v; want nil", evs)
			}
			for j, w := range tt.want {
				ev := evs[j]
				wantID := fmt.Sprintf("%s-%d%s", runID, seq, w.idSuffix)
				if ev.Type() != w.typ || ev.ID() != wantID || ev.Source() != testCfg.Source || ev.Subject() != w.subject ||
					!ev.Time().Equal(testTime) || ev.DataContentType() != "application/json" {
					t.Errorf("event %d: type %s id %s source %s subject %s time %s content type %s; want %s %s", j,
						ev.Type(), ev.ID(), ev.Source(), ev.Subject(), ev.Time(), ev.DataContentType(), w.typ, wantID)
				}
				if err := ev.Validate(); err != nil {
					t.Errorf("event %d: CloudEvent invalid: %v", j, err)
				}
				var cd imageJSON
				if err := json.Unmarshal(ev.Data(), &cd); err != nil {
					t.Fatal(err)
				}
				if cd.Context.SpecVersion != SpecVersion || cd.Context.ID != wantID || cd.Context.Type != w.typ ||
					cd.Context.Source != testCfg.Source || cd.Subject.ID != w.subject || cd.Subject.Source != testCfg.Source {
					t.Errorf("event %d: CDEvent context %+v subject %s from %s", j, cd.Context, cd.Subject.ID, cd.Subject.Source)
				}
				var c imageContent
				if err := json.Unmarshal(cd.Subject.Content, &c); err != nil {
					t.Fatal(err)
				}
				got, _ := json.Marshal(c)
				want, _ := json.Marshal(w.c)
				if string(got) != string(want) {
					t.Errorf("event %d: content %s; want %s", j, got, want)
				}
				if w.c.ArtifactID == "" && strings.Contains(string(cd.Subject.Content), "artifactId") {
					t.Errorf("event %d: artifactId present: %s", j, cd.Subject.Content)
				}
				// The SDK reads it back and validates it against the schema.
				back := sdkRendering(t, ev.Data())
				if w.c.ArtifactID == "" && w.typ == TypeBuildFinished {
					// The SDK's struct validation rejects an empty
					// artifactId (see validate); the schema does not.
					if err := cdevents.Validate(back); err == nil || !strings.Contains(err.Error(), "ArtifactId") {
						t.Errorf("event %d: SDK Validate without artifactId: %v (has the SDK changed?)", j, err)
					}
					if err := validate(back); err != nil {
						t.Fatalf("event %d: validate: %v", j, err)
					}
				} else if err := cdevents.Validate(back); err != nil {
					t.Fatalf("event %d: Validate: %v", j, err)
				}
				if back.GetType().String() != w.typ || back.GetSubjectId() != w.subject || back.GetId() != wantID {
					t.Errorf("event %d: parsed back: %s %s %s", j, back.GetType(), back.GetSubjectId(), back.GetId())
				}
				if bf, ok := back.(*cdeventsv05.BuildFinishedEvent); ok && bf.Subject.Content.ArtifactId != w.c.ArtifactID {
					t.Errorf("event %d: parsed artifactId %q", j, bf.Subject.Content.ArtifactId)
				}
			}
		})
	}
}

func TestBuildEventsIDsDifferFromBuild(t *testing.T) {
	e := runEvent(t, store.EventRunStatus, 4, store.StatusChange{Status: "success", Previous: "running", EndedAt: &testTime})
	pr, ok, err := Build(testCfg, e, "image")
	if err != nil || !ok {
		t.Fatalf("Build: %v %v", ok, err)
	}
	evs, err := BuildEvents(testCfg, e, testImage)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{pr.ID(): true}
	for _, ev := range evs {
		if seen[ev.ID()] {
			t.Errorf("duplicate id %s", ev.ID())
		}
		seen[ev.ID()] = true
	}
	// Stable: built again (a redelivery), the same ids.
	again, err := BuildEvents(testCfg, e, testImage)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if evs[i].ID() != again[i].ID() || string(evs[i].Data()) != string(again[i].Data()) {
			t.Errorf("event %d differs when built again", i)
		}
	}
}

func TestBuildEventsErrors(t *testing.T) {
	success := runEvent(t, store.EventRunStatus, 1, store.StatusChange{Status: "success", Previous: "running", EndedAt: &testTime})
	garbled := *success
	garbled.Data = json.RawMessage(`{"status":`)
	noCommit := testImage
	noCommit.Commit = ""
	noRepo := testImage
	noRepo.Repository = ""
	tests := []struct {
		name string
		cfg  Config
		e    *store.RunEvent
		b    ImageBuild
		want []string
	}{
		{"garbled json", testCfg, &garbled, testImage, []string{"event 101", "run.status", "invalid status change data"}},
		{"unknown status", testCfg, runEvent(t, store.EventRunStatus, 1, store.StatusChange{Status: "exploded"}), testImage,
			[]string{"event 101", `unknown run status "exploded"`}},
		{"no source", Config{}, success, testImage, []string{"event 101", "no source"}},
		{"no commit", testCfg, success, noCommit, []string{"event 101", TypeArtifactPackaged, "commit"}},
		{"no repository", testCfg, success, noRepo, []string{"event 101", TypeBuildFinished, "repository"}},
		{"bad source", Config{Source: "http://bad host/%zz"}, success, testImage, []string{"event 101", TypeBuildFinished}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := BuildEvents(tt.cfg, tt.e, tt.b)
			if err == nil {
				t.Fatalf("BuildEvents = %d events, nil; want an error", len(evs))
			}
			t.Log(err)
			if evs != nil {
				t.Errorf("events returned with error %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := BuildEvents(testCfg, nil, testImage); err == nil {
		t.Error("BuildEvents(nil) did not fail")
	}
	// A failed build needs neither commit nor repository.
	failed := runEvent(t, store.EventRunStatus, 2, store.StatusChange{Status: "failed", Previous: "running", EndedAt: &testTime})
	if evs, err := BuildEvents(testCfg, failed, ImageBuild{}); err != nil || len(evs) != 1 {
		t.Errorf("failed build with an empty ImageBuild: %d events, %v", len(evs), err)
	}
}

func TestValidateWithoutArtifactIDStillChecks(t *testing.T) {
	ev, err := cdeventsv05.NewBuildFinishedEvent()
	if err != nil {
		t.Fatal(err)
	}
	ev.SetSource(testCfg.Source)
	ev.SetTimestamp(testTime)
	ev.SetSubjectId(runID)
	// No id: invalid with or without artifactId.
	ev.SetId("")
	if err := validate(ev); err == nil {
		t.Error("validate accepted a build.finished without an id")
	}
	ev.SetId("x-1-build")
	if err := validate(ev); err != nil {
		t.Errorf("validate: %v", err)
	}
	ev.SetSubjectArtifactId("not a purl")
	if err := validate(ev); err == nil {
		t.Error("validate accepted an invalid artifactId")
	}
}
