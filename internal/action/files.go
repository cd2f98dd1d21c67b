package action

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"sync"

	"github.com/bmatcuk/doublestar/v4"
)

// This file holds what artifact-upload, artifact-download and cache share:
// packing workspace files matched by glob patterns into a gzip-compressed
// tar archive with workspace-relative names, and unpacking one.

var artifactName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`) })

// checkPatterns validates glob patterns relative to the workspace.
func checkPatterns(name string, patterns []string) ([]string, error) {
	out := make([]string, 0, len(patterns))
	for i, p := range patterns {
		c := strings.TrimPrefix(path.Clean(p), "./")
		if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
			return nil, fmt.Errorf("args.%s[%d]: %q must be relative to the workspace and stay inside it", name, i, p)
		}
		if !doublestar.ValidatePattern(c) {
			return nil, fmt.Errorf("args.%s[%d]: %q is not a valid glob pattern", name, i, p)
		}
		out = append(out, c)
	}
	return out, nil
}

// errNoMatch: no file matched the patterns.
var errNoMatch = errors.New("no file matched")

// pack writes a tar.gz of the workspace entries matching patterns to w.
// An entry matches when its workspace-relative name, or one of its parent
// directories, matches a pattern: "dist" and "dist/**" both take the whole
// directory. It returns the number of regular files written, and errNoMatch
// (after writing an empty archive) when there were none.
func pack(ctx context.Context, ws Workspace, patterns []string, w io.Writer) (int, error) {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	seen := map[string]bool{}
	files := 0
	for _, p := range patterns {
		n, err := packPattern(ctx, ws, p, tw, seen)
		if err != nil {
			return files, err
		}
		files += n
	}
	if err := tw.Close(); err != nil {
		return files, err
	}
	if err := zw.Close(); err != nil {
		return files, err
	}
	if files == 0 {
		return 0, errNoMatch
	}
	return files, nil
}

func packPattern(ctx context.Context, ws Workspace, p string, tw *tar.Writer, seen map[string]bool) (int, error) {
	base, rest := doublestar.SplitPattern(p)
	literal := !strings.ContainsAny(p, "*?[{\\")
	if literal {
		// A plain path: read just that directory when it is one.
		rc, err := ws.Archive(ctx, p)
		if err == nil {
			return copyMatching(rc, p, "", tw, seen)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		// A file: read its directory and pick it.
		base, rest = path.Dir(p), path.Base(p)
	}
	rc, err := ws.Archive(ctx, base)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return copyMatching(rc, base, rest, tw, seen)
}

// copyMatching copies the entries of an archive of dir whose names match
// pattern (all of them when pattern is "") into tw, named relative to the
// workspace.
func copyMatching(rc io.ReadCloser, dir, pattern string, tw *tar.Writer, seen map[string]bool) (int, error) {
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("read the workspace: %w", err)
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if rel == "" || rel == "." {
			continue
		}
		if pattern != "" && !matchesOrUnder(pattern, rel) {
			continue
		}
		full := rel
		if dir != "." && dir != "" {
			full = dir + "/" + rel
		}
		if seen[full] {
			continue
		}
		seen[full] = true
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		default:
			continue
		}
		hdr := &tar.Header{Typeflag: h.Typeflag, Name: full, Linkname: h.Linkname, Mode: h.Mode, Size: h.Size, ModTime: h.ModTime, Format: tar.FormatPAX}
		if h.Typeflag == tar.TypeDir {
			hdr.Name += "/"
			hdr.Size = 0
		}
		if h.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return files, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return files, err
			}
			files++
		}
	}
}

// matchesOrUnder tells whether name or one of its parent directories
// matches pattern.
func matchesOrUnder(pattern, name string) bool {
	for n := name; n != "." && n != ""; n = path.Dir(n) {
		if ok, _ := doublestar.Match(pattern, n); ok {
			return true
		}
		if !strings.Contains(n, "/") {
			break
		}
	}
	return false
}

// unpack extracts a tar.gz stream into dir of the workspace and counts the
// regular files in it.
func unpack(ctx context.Context, ws Workspace, dir string, r io.Reader) (int, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return 0, fmt.Errorf("not a gzip-compressed tar archive: %w", err)
	}
	pr, pw := io.Pipe()
	files := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Re-stream the tar, counting files, so the workspace receives a
		// plain tar and the count is known without buffering.
		tr := tar.NewReader(zr)
		tw := tar.NewWriter(pw)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				pw.CloseWithError(tw.Close())
				return
			}
			if err != nil {
				pw.CloseWithError(fmt.Errorf("read archive: %w", err))
				return
			}
			if h.Typeflag == tar.TypeReg {
				files++
			}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	err = ws.Extract(ctx, dir, pr)
	pr.CloseWithError(err)
	<-done
	if err != nil {
		return 0, err
	}
	return files, nil
}
