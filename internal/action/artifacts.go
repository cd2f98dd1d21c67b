package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/runnel-ci/runnel/internal/spec"
)

// ArtifactUpload is actions/artifact-upload@v1: it packs the workspace files
// matching `paths` into a gzip-compressed tar archive and stores it on the
// server as the run's artifact `name`, for later jobs of the run
// (actions/artifact-download@v1) and for download through the API.
type ArtifactUpload struct{}

// Info implements Action.
func (ArtifactUpload) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          "actions/artifact-upload@v1",
		Description:   "Stores workspace files as an artifact of the run. Sets the outputs `files`, `size` and `sha256`.",
		Actions:       []string{"upload"},
		DefaultAction: "upload",
		Inputs: []spec.ActionInput{
			{Name: "name", Required: true, Description: "Artifact name, unique within the run: letters, digits, '.', '_' and '-' (at most 100)."},
			{Name: "paths", Required: true, Description: "Glob patterns relative to the workspace (a list, or one string of space- or newline-separated patterns); `**` spans directories, and a matching directory takes everything under it."},
			{Name: "ifNoFilesFound", Description: "What to do when no file matches: `error` (fail the step), `warn` or `ignore` (store nothing, succeed).", Default: "error"},
		},
	}
}

// Prepare implements Action; native actions are run, not prepared.
func (ArtifactUpload) Prepare(Call) (Exec, error) {
	return Exec{}, errNative("actions/artifact-upload@v1")
}

func errNative(uses string) error {
	return fmt.Errorf("%s is carried out by the agent itself, not by a script", uses)
}

func needStorage(uses string, rt *Runtime) error {
	if rt.Storage == nil {
		return fmt.Errorf("%s needs artifact and cache storage, which the agent running it was not given", uses)
	}
	return nil
}

// Run implements Native.
func (u ArtifactUpload) Run(ctx context.Context, call Call, rt *Runtime) (map[string]string, error) {
	a, err := checkCall(u.Info(), call)
	if err != nil {
		return nil, err
	}
	name, err := a.str("name", "")
	if err != nil {
		return nil, err
	}
	if !artifactName().MatchString(name) {
		return nil, fmt.Errorf("args.name: must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", name)
	}
	raw, err := a.stringList("paths", nil)
	if err != nil {
		return nil, err
	}
	patterns, err := checkPatterns("paths", raw)
	if err != nil {
		return nil, err
	}
	onNone, err := a.str("ifNoFilesFound", "error")
	if err != nil {
		return nil, err
	}
	if onNone != "error" && onNone != "warn" && onNone != "ignore" {
		return nil, fmt.Errorf("args.ifNoFilesFound: must be error, warn or ignore, got %q", onNone)
	}
	if err := needStorage(u.Info().Uses, rt); err != nil {
		return nil, err
	}

	// Pack and upload at once, streaming; an upload cut short by a packing
	// error (or no match) stores nothing.
	upCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	packed := make(chan struct {
		n   int
		err error
	}, 1)
	go func() {
		n, err := pack(upCtx, rt.Workspace, patterns, pw)
		if err != nil {
			pw.CloseWithError(err)
			cancel()
		} else {
			pw.Close()
		}
		packed <- struct {
			n   int
			err error
		}{n, err}
	}()
	info, upErr := rt.Storage.UploadArtifact(upCtx, name, pr)
	pr.CloseWithError(errors.New("upload ended"))
	p := <-packed
	switch {
	case errors.Is(p.err, errNoMatch):
		msg := fmt.Sprintf("no file matches %v: artifact %s not stored", raw, name)
		if onNone == "error" {
			return nil, fmt.Errorf("%s (set ifNoFilesFound: warn or ignore to allow it)", msg)
		}
		if onNone == "warn" {
			rt.Log("warning: " + msg)
		}
		return map[string]string{"files": "0", "size": "0", "sha256": ""}, nil
	case p.err != nil:
		return nil, fmt.Errorf("pack %v: %w", raw, p.err)
	case upErr != nil:
		if errors.Is(upErr, ErrArtifactExists) {
			return nil, fmt.Errorf("args.name: artifact %q was already uploaded by another job of this run; names are unique per run", name)
		}
		return nil, fmt.Errorf("upload artifact %s: %w", name, upErr)
	}
	rt.Log(fmt.Sprintf("uploaded artifact %s: %d file(s), %d bytes (sha256 %s)", name, p.n, info.Size, info.SHA256))
	return map[string]string{"files": strconv.Itoa(p.n), "size": strconv.FormatInt(info.Size, 10), "sha256": info.SHA256}, nil
}

// ArtifactDownload is actions/artifact-download@v1: it unpacks an artifact
// that an earlier job of the same run uploaded into the workspace.
type ArtifactDownload struct{}

// Info implements Action.
func (ArtifactDownload) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          "actions/artifact-download@v1",
		Description:   "Unpacks an artifact uploaded by an earlier job of the run into the workspace, with the paths it was uploaded with. Sets the output `files`.",
		Actions:       []string{"download"},
		DefaultAction: "download",
		Inputs: []spec.ActionInput{
			{Name: "name", Required: true, Description: "Name of the artifact (as given to actions/artifact-upload@v1). The uploading job must have finished: make this job `needs` it, or run it in a later stage."},
			{Name: "path", Description: "Directory of the workspace to unpack into (created if missing).", Default: "the workspace"},
		},
	}
}

// Prepare implements Action; native actions are run, not prepared.
func (ArtifactDownload) Prepare(Call) (Exec, error) {
	return Exec{}, errNative("actions/artifact-download@v1")
}

// Run implements Native.
func (d ArtifactDownload) Run(ctx context.Context, call Call, rt *Runtime) (map[string]string, error) {
	a, err := checkCall(d.Info(), call)
	if err != nil {
		return nil, err
	}
	name, err := a.str("name", "")
	if err != nil {
		return nil, err
	}
	if !artifactName().MatchString(name) {
		return nil, fmt.Errorf("args.name: must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", name)
	}
	dir, err := a.str("path", ".")
	if err != nil {
		return nil, err
	}
	if _, err := checkPatterns("path", []string{dir}); err != nil {
		return nil, fmt.Errorf("args.path: %q must be a directory relative to the workspace", dir)
	}
	if err := needStorage(d.Info().Uses, rt); err != nil {
		return nil, err
	}
	rc, info, err := rt.Storage.DownloadArtifact(ctx, name)
	if errors.Is(err, ErrNoArtifact) {
		return nil, fmt.Errorf("args.name: no job of this run has uploaded an artifact %q (yet): the uploading job must finish before this one starts (needs, or an earlier stage)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("download artifact %s: %w", name, err)
	}
	defer rc.Close()
	n, err := unpack(ctx, rt.Workspace, dir, rc)
	if err != nil {
		return nil, fmt.Errorf("unpack artifact %s into %s: %w", name, dir, err)
	}
	rt.Log(fmt.Sprintf("downloaded artifact %s: %d file(s), %d bytes, into %s", name, n, info.Size, dir))
	return map[string]string{"files": strconv.Itoa(n)}, nil
}
