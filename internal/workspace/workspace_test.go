package workspace

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{"", ".", false}, {".", ".", false}, {"a/b/", "a/b", false}, {"./a/../b", "b", false},
		{"/etc", "", true}, {"..", "", true}, {"a/../../b", "", true},
	} {
		got, err := Clean(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("Clean(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := Dir(t.TempDir())
	os.MkdirAll(filepath.Join(string(src), "dist/sub"), 0o755)
	os.WriteFile(filepath.Join(string(src), "dist/a.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(string(src), "dist/sub/b.txt"), []byte("b"), 0o644)
	os.Symlink("a.sh", filepath.Join(string(src), "dist/link"))

	rc, err := src.Archive(ctx, "dist")
	if err != nil {
		t.Fatal(err)
	}
	dst := Dir(t.TempDir())
	if err := dst.Extract(ctx, "out/here", rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	base := filepath.Join(string(dst), "out/here")
	if b, err := os.ReadFile(filepath.Join(base, "sub/b.txt")); err != nil || string(b) != "b" {
		t.Fatalf("b.txt: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(base, "a.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("a.sh lost its mode: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(base, "link")); err != nil || l != "a.sh" {
		t.Fatalf("link: %q %v", l, err)
	}
	if _, err := src.Archive(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	for name, entries := range map[string][]tar.Header{
		"dotdot":   {{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		"absolute": {{Name: "/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		// A link pointing out, then a file written through it.
		"symlink": {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "l/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range entries {
				tw.WriteHeader(&h)
			}
			tw.Close()
			d := Dir(t.TempDir())
			if err := d.Extract(ctx, ".", &buf); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
				t.Fatal("a file was written outside the workspace")
			}
		})
	}
	_ = io.EOF
}
