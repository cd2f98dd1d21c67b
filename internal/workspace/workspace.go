// Package workspace reads and writes a job's workspace as tar streams: the
// format Docker's archive API speaks, so that native actions (artifacts,
// caches, image builds) work the same on a host directory and in a container
// volume.
package workspace

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Clean checks a workspace-relative directory and returns it cleaned with
// forward slashes ("." for the root). Absolute paths and paths leaving the
// workspace are refused.
func Clean(dir string) (string, error) {
	if dir == "" {
		return ".", nil
	}
	d := path.Clean(filepath.ToSlash(dir))
	if path.IsAbs(d) || d == ".." || strings.HasPrefix(d, "../") {
		return "", fmt.Errorf("path %q: must be relative to the workspace and stay inside it", dir)
	}
	return d, nil
}

// Dir is a workspace that is a directory of this host.
type Dir string

// Archive implements action.Workspace.
func (d Dir) Archive(ctx context.Context, dir string) (io.ReadCloser, error) {
	rel, err := Clean(dir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(string(d), filepath.FromSlash(rel))
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("workspace path %q: %w", rel, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("workspace path %q is not a directory", rel)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(WriteTar(ctx, root, pw))
	}()
	return pr, nil
}

// Extract implements action.Workspace.
func (d Dir) Extract(ctx context.Context, dir string, r io.Reader) error {
	rel, err := Clean(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(string(d), filepath.FromSlash(rel)), 0o755); err != nil {
		return fmt.Errorf("create %q in the workspace: %w", rel, err)
	}
	root, err := os.OpenRoot(filepath.Join(string(d), filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer root.Close()
	return ExtractTar(ctx, root, r)
}

// WriteTar writes the tree under root to w as a tar stream with names relative
// to root. Symbolic links are stored as links, not followed; sockets and
// devices are skipped.
func WriteTar(ctx context.Context, root string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.IsDir(), info.Mode().IsRegular():
		default:
			return nil
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ExtractTar unpacks a tar stream into root. os.Root keeps every entry (and
// every symbolic link it would follow) inside root. Regular files, directories
// and symbolic links are restored with their permission bits; other entry
// types are skipped.
func ExtractTar(ctx context.Context, root *os.Root, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
			_ = root.Chmod(name, mode|0o700)
		case tar.TypeReg:
			_ = root.Remove(name) // replace a file or link of the same name
			f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o600)
			if err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			_ = root.Remove(name)
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
		}
	}
}

func entryName(name string) (string, error) {
	n := path.Clean(strings.TrimPrefix(filepath.ToSlash(name), "./"))
	if path.IsAbs(n) || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("archive entry %q would land outside the workspace", name)
	}
	return n, nil
}
