package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/testdocker"
)

func tarNames(t *testing.T, rc io.ReadCloser) map[string]string {
	t.Helper()
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = string(b)
	}
}

func TestWorkspaceFiles(t *testing.T) {
	b, _ := newBackend(t, Options{})
	ctx := context.Background()
	job := &backend.Job{ID: "files-" + randomOwner(), Name: "files", Image: testdocker.Busybox}
	setupJob(t, b, job)
	var out bytes.Buffer
	res, err := b.RunStep(ctx, job, &backend.Step{ID: "s1", Script: "mkdir -p dist/sub && echo one > dist/a.txt && echo two > dist/sub/b.txt && echo top > top.txt"}, &out)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("step: %v %d %s", err, res.ExitCode, out.String())
	}

	rc, err := b.ArchiveWorkspace(ctx, job, "dist")
	if err != nil {
		t.Fatal(err)
	}
	got := tarNames(t, rc)
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "a.txt,sub/,sub/b.txt" || got["sub/b.txt"] != "two\n" {
		t.Fatalf("archive of dist: %q", names)
	}
	root := tarNames(t, must(b.ArchiveWorkspace(ctx, job, ".")))
	if root["top.txt"] != "top\n" || root["dist/a.txt"] != "one\n" {
		t.Fatalf("archive of the root: %v", root)
	}
	if _, err := b.ArchiveWorkspace(ctx, job, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := b.ArchiveWorkspace(ctx, job, "../etc"); err == nil {
		t.Fatal("a path leaving the workspace was accepted")
	}

	// Extract into a new directory; a step sees the files.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "x/y.txt", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("hello"))
	tw.Close()
	if err := b.ExtractToWorkspace(ctx, job, "restored/deep", &buf); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	res, err = b.RunStep(ctx, job, &backend.Step{ID: "s2", Script: "cat restored/deep/x/y.txt"}, &out)
	if err != nil || res.ExitCode != 0 || out.String() != "hello" {
		t.Fatalf("step after extract: %v %d %q", err, res.ExitCode, out.String())
	}

	// An entry escaping the destination is refused.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "../../evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	if err := b.ExtractToWorkspace(ctx, job, "restored", &buf); err == nil {
		t.Fatal("an escaping entry was accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
