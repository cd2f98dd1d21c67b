package cdevent

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/package-url/packageurl-go"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// The CDEvents types BuildEvents produces (spec v0.5.1).
const (
	TypeBuildQueued       = "dev.cdevents.build.queued.0.3.0"
	TypeBuildStarted      = "dev.cdevents.build.started.0.3.0"
	TypeBuildFinished     = "dev.cdevents.build.finished.0.3.0"
	TypeArtifactPackaged  = "dev.cdevents.artifact.packaged.0.3.0"
	TypeArtifactPublished = "dev.cdevents.artifact.published.0.3.0"
)

// ImageBuild describes an image build run for its CDEvents.
type ImageBuild struct {
	Registry   string // "host[:port]" the image is pushed to, e.g. "127.0.0.1:5000"
	Repository string // "namespace/name" under the registry
	Tag        string // the image tag the build's tag config names ("latest")
	Digest     string // "sha256:…" of the pushed manifest; "" until pushed
	Commit     string // source commit id
	SourceURL  string // the source repository's URL (already free of credentials)
}

// PURL is the image's package URL, of type oci
// (https://github.com/package-url/purl-spec, types/oci-definition.json):
//
//	pkg:oci/<name>@<digest>?repository_url=<Registry>/<Repository>&tag=<Tag>
//
// where name is the last path element of Repository, lower-cased. It is
// rendered in the spec's canonical form by github.com/package-url/packageurl-go:
// components percent-encoded, except that ':' is left as is (the digest's
// "sha256:" stays readable; "sha256%3A" parses to the same version), '/' in
// the repository_url value encoded as %2F, and qualifiers sorted by key; for
// example
//
//	pkg:oci/app@sha256:abc…?repository_url=127.0.0.1:5000%2Fteam%2Fapp&tag=latest
//
// Without a digest the @version part is left out; an empty Tag or an empty
// Registry and Repository leave out their qualifier.
func (b ImageBuild) PURL() string {
	repo := strings.Trim(b.Repository, "/")
	name := repo
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	var q packageurl.Qualifiers // sorted by key
	repoURL := strings.Trim(b.Registry, "/")
	if repo != "" {
		if repoURL != "" {
			repoURL += "/"
		}
		repoURL += repo
	}
	if repoURL != "" {
		q = append(q, packageurl.Qualifier{Key: "repository_url", Value: repoURL})
	}
	if b.Tag != "" {
		q = append(q, packageurl.Qualifier{Key: "tag", Value: b.Tag})
	}
	// The oci type's name is case-insensitive and lower-cased, its version
	// the lower-case hex digest; packageurl-go does neither for oci.
	p := packageurl.NewPackageURL(packageurl.TypeOCI, "", strings.ToLower(name), strings.ToLower(b.Digest), q, "")
	return p.ToString()
}

// Suffixes of the ids of the events BuildEvents returns: runID-seq + suffix.
const (
	buildIDSuffix     = "-build"
	packagedIDSuffix  = "-artifact-packaged"
	publishedIDSuffix = "-artifact-published"
)

// BuildEvents returns the build and artifact CDEvents of an image build's run
// event e, in order, as CloudEvents checked against the spec's rules (see the
// package doc, "Image builds"):
//
//   - run.status, Status pending, Previous "": build.queued
//   - run.status, Status running, Previous "" or pending: build.started
//   - run.status, the run's end (a final Status, success failed cancelled
//     partial, with EndedAt): build.finished, with artifactId b.PURL() when
//     the Status is success or partial and b.Digest is set; then, only in
//     that case, artifact.packaged (subject id the PURL, change {id:
//     b.Commit, source: b.SourceURL}, the source left out when it is not a
//     URI reference) and artifact.published (subject id the PURL).
//   - anything else (job/step events, paused, …): none (nil, nil).
//
// The events' ids are runID-seq-build, runID-seq-artifact-packaged and
// runID-seq-artifact-published, their source cfg.Source and their time
// e.Time. A build subject is the run: id the run id, source cfg.Source.
//
// Errors name the event and say why; they are not transient (the same
// event and build always fail the same way). artifact.packaged requires a
// change, so a success with a digest but no b.Commit is an error.
func BuildEvents(cfg Config, e *store.RunEvent, b ImageBuild) ([]*Event, error) {
	if e == nil {
		return nil, errors.New("cdevent: nil run event")
	}
	if e.Type != store.EventRunStatus {
		return nil, nil
	}
	sc, what, err := decodeStatus(cfg, e)
	if err != nil {
		return nil, err
	}
	bl := builder{cfg: cfg, e: e, sc: sc, what: what}
	final, err := bl.checkStatuses(runStatus, "run")
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s-%d", e.RunID, e.Seq)
	event := func(typ, idSuffix, subjectID string, c any) *cdEvent {
		return newEvent(typ, base+idSuffix, cfg.Source, subjectID, e.Time, c)
	}
	var cds []*cdEvent
	switch {
	case sc.Status == string(runnel.RunPending) && sc.Previous == "":
		cds = append(cds, event(TypeBuildQueued, buildIDSuffix, e.RunID, &buildContent{}))
	case sc.Status == string(runnel.RunRunning) && (sc.Previous == "" || sc.Previous == string(runnel.RunPending)):
		cds = append(cds, event(TypeBuildStarted, buildIDSuffix, e.RunID, &buildContent{}))
	case runEnds(final, sc):
		finished := &buildContent{}
		cds = append(cds, event(TypeBuildFinished, buildIDSuffix, e.RunID, finished))
		if (sc.Status != string(runnel.RunSuccess) && sc.Status != string(runnel.RunPartial)) || b.Digest == "" {
			break
		}
		if strings.Trim(b.Repository, "/") == "" {
			return nil, fmt.Errorf("cdevent: %s: %s: image build without a repository", what, TypeBuildFinished)
		}
		purl := b.PURL()
		finished.ArtifactID = purl
		if b.Commit == "" {
			return nil, fmt.Errorf("cdevent: %s: %s: image build without a source commit (the event's change)", what, TypeArtifactPackaged)
		}
		change := &reference{ID: b.Commit}
		if b.SourceURL != "" {
			if _, err := url.Parse(b.SourceURL); err == nil {
				change.Source = b.SourceURL
			}
		}
		cds = append(cds,
			event(TypeArtifactPackaged, packagedIDSuffix, purl, &artifactPackagedContent{Change: change}),
			event(TypeArtifactPublished, publishedIDSuffix, purl, &emptyContent{}))
	default:
		return nil, nil
	}
	out := make([]*Event, 0, len(cds))
	for _, cd := range cds {
		ce, err := cd.cloudEvent()
		if err != nil {
			return nil, fmt.Errorf("cdevent: %s: %v", what, err)
		}
		out = append(out, ce)
	}
	return out, nil
}
