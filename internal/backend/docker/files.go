package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/workspace"
)

var _ backend.Files = (*Backend)(nil)

// filesContainer returns the job's file-access container: created (never
// started) from one of the job's images with the workspace volume mounted,
// so Docker's archive API reaches the volume.
func (b *Backend) filesContainer(ctx context.Context, job *backend.Job) (*client.Client, string, error) {
	if err := checkID("job", job.ID); err != nil {
		return nil, "", err
	}
	b.mu.Lock()
	st := b.jobs[job.ID]
	b.mu.Unlock()
	if st == nil {
		return nil, "", fmt.Errorf("job %s is not set up", job.ID)
	}
	cli, err := b.client()
	if err != nil {
		return nil, "", err
	}
	if st.files != "" {
		return cli, st.files, nil
	}
	if st.image == "" {
		return nil, "", fmt.Errorf("job %s has no image to reach its workspace with", job.Name)
	}
	name := b.name(job.ID, "files")
	opts := client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:      st.image,
			Entrypoint: []string{"/nonexistent"}, // never started
			Labels:     b.labels(job.ID, "files"),
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: st.volume, Target: WorkspaceDir}},
		},
	}
	created, err := cli.ContainerCreate(ctx, opts)
	if cerrdefs.IsConflict(err) {
		b.removeContainer(context.WithoutCancel(ctx), cli, name)
		created, err = cli.ContainerCreate(ctx, opts)
	}
	if err != nil {
		return nil, "", fmt.Errorf("create the workspace access container: %w", err)
	}
	b.mu.Lock()
	st.files = created.ID
	b.mu.Unlock()
	return cli, created.ID, nil
}

// ArchiveWorkspace implements backend.Files through Docker's archive API.
// Docker names entries after the directory's base name; they are renamed to
// be relative to dir.
func (b *Backend) ArchiveWorkspace(ctx context.Context, job *backend.Job, dir string) (io.ReadCloser, error) {
	d, err := workspace.Clean(dir)
	if err != nil {
		return nil, err
	}
	cli, id, err := b.filesContainer(ctx, job)
	if err != nil {
		return nil, err
	}
	src := path.Join(WorkspaceDir, d)
	stat, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: src})
	if cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("workspace path %q: %w", d, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("workspace path %q: %w", d, err)
	}
	if !stat.Stat.Mode.IsDir() {
		return nil, fmt.Errorf("workspace path %q is not a directory", d)
	}
	res, err := cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: src})
	if err != nil {
		return nil, fmt.Errorf("read workspace path %q: %w", d, err)
	}
	prefix := path.Base(src) + "/"
	pr, pw := io.Pipe()
	go func() {
		defer res.Content.Close()
		pw.CloseWithError(rebase(res.Content, pw, prefix))
	}()
	return pr, nil
}

// rebase copies a tar stream, stripping prefix from every entry name and
// dropping the entry of the directory itself.
func rebase(r io.Reader, w io.Writer, prefix string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(h.Name, "./")
		if name+"/" == prefix || name == prefix {
			continue
		}
		if !strings.HasPrefix(name, prefix) {
			return fmt.Errorf("unexpected archive entry %q", h.Name)
		}
		h.Name = strings.TrimPrefix(name, prefix)
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(strings.TrimPrefix(h.Linkname, "./"), prefix)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// ExtractToWorkspace implements backend.Files: dir is created (through a
// small archive of its own, so it belongs to the volume), then the stream is
// unpacked into it by Docker, which refuses entries escaping it.
func (b *Backend) ExtractToWorkspace(ctx context.Context, job *backend.Job, dir string, r io.Reader) error {
	d, err := workspace.Clean(dir)
	if err != nil {
		return err
	}
	cli, id, err := b.filesContainer(ctx, job)
	if err != nil {
		return err
	}
	if d != "." {
		if err := mkdirAll(ctx, cli, id, d); err != nil {
			return err
		}
	}
	// Docker's extraction keeps entries inside the destination; names with
	// ".." are refused here as well, before anything is written.
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(checkEntries(r, pw))
	}()
	_, err = cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: path.Join(WorkspaceDir, d), Content: pr})
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("write workspace path %q: %w", d, err)
	}
	return nil
}

func mkdirAll(ctx context.Context, cli *client.Client, id, d string) error {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		parts := strings.Split(d, "/")
		for i := range parts {
			h := &tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(parts[:i+1], "/") + "/", Mode: 0o755}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	if _, err := cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: WorkspaceDir, Content: pr}); err != nil {
		return fmt.Errorf("create workspace path %q: %w", d, err)
	}
	return nil
}

func checkEntries(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		n := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if path.IsAbs(n) || n == ".." || strings.HasPrefix(n, "../") {
			return fmt.Errorf("archive entry %q would land outside the workspace", h.Name)
		}
		if h.Typeflag == tar.TypeLink && (path.IsAbs(h.Linkname) || strings.HasPrefix(path.Clean(h.Linkname), "../")) {
			return fmt.Errorf("archive entry %q links outside the workspace", h.Name)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
