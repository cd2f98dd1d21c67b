package imagebuild

import (
	"context"
	"errors"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/event/cdevent"
)

// ImageBuild tells the event deliverer whether a run is an image build and
// what it built (event.ImageBuilds), for the build and artifact CDEvents.
func (s *Service) ImageBuild(ctx context.Context, runID string) (*cdevent.ImageBuild, bool, error) {
	b, err := s.GetBuild(ctx, runID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return &cdevent.ImageBuild{
		Registry: s.o.Registry, Repository: b.Repository.Namespace + "/" + b.Repository.Name,
		Tag: b.DockerRepoTag, Digest: b.ImageID, Commit: b.Commit, SourceURL: ShownCloneURL(b.Repository.Source),
	}, true, nil
}
