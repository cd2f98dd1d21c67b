package action

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/workspace"
)

// memStorage keeps artifacts and caches in memory with the semantics of
// Storage, for testing the actions' packing and their use of the contract.
type memStorage struct {
	mu        sync.Mutex
	artifacts map[string][]byte
	owner     map[string]string
	job       string
	caches    map[string][]byte
	order     []string
}

func newMem(job string) *memStorage {
	return &memStorage{artifacts: map[string][]byte{}, owner: map[string]string{}, caches: map[string][]byte{}, job: job}
}

func (m *memStorage) UploadArtifact(ctx context.Context, name string, r io.Reader) (ArtifactInfo, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return ArtifactInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.owner[name]; ok && o != m.job {
		return ArtifactInfo{}, ErrArtifactExists
	}
	m.artifacts[name], m.owner[name] = b, m.job
	d := sha256.Sum256(b)
	return ArtifactInfo{Name: name, Size: int64(len(b)), SHA256: hex.EncodeToString(d[:])}, nil
}

func (m *memStorage) DownloadArtifact(ctx context.Context, name string) (io.ReadCloser, ArtifactInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.artifacts[name]
	if !ok {
		return nil, ArtifactInfo{}, ErrNoArtifact
	}
	return io.NopCloser(bytes.NewReader(b)), ArtifactInfo{Name: name, Size: int64(len(b))}, nil
}

func (m *memStorage) RestoreCache(ctx context.Context, keys []string) (string, io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.caches[keys[0]]; ok {
		return keys[0], io.NopCloser(bytes.NewReader(b)), nil
	}
	for _, p := range keys[1:] {
		for i := len(m.order) - 1; i >= 0; i-- {
			if strings.HasPrefix(m.order[i], p) {
				return m.order[i], io.NopCloser(bytes.NewReader(m.caches[m.order[i]])), nil
			}
		}
	}
	return "", nil, ErrCacheMiss
}

func (m *memStorage) SaveCache(ctx context.Context, key string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.caches[key]; ok {
		return ErrCacheExists
	}
	m.caches[key] = b
	m.order = append(m.order, key)
	return nil
}

type testRT struct {
	Runtime
	lines []string
	after []func(context.Context, bool) error
}

func newRT(dir string, st Storage) *testRT {
	r := &testRT{}
	r.Runtime = Runtime{Workspace: workspace.Dir(dir), Storage: st, Now: time.Now,
		Log:   func(l string) { r.lines = append(r.lines, l) },
		After: func(fn func(context.Context, bool) error) { r.after = append(r.after, fn) }}
	return r
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for n, c := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestArtifactUploadDownload(t *testing.T) {
	ctx := context.Background()
	st := newMem("build")
	src := t.TempDir()
	write(t, src, map[string]string{"dist/app": "binary", "dist/docs/readme.md": "doc", "report.xml": "<x/>", "other.txt": "no"})
	rt := newRT(src, st)
	out, err := ArtifactUpload{}.Run(ctx, Call{Args: map[string]any{"name": "bin", "paths": []any{"dist", "*.xml"}}}, &rt.Runtime)
	if err != nil {
		t.Fatal(err)
	}
	if out["files"] != "3" || out["sha256"] == "" {
		t.Fatalf("outputs %v", out)
	}

	dst := t.TempDir()
	rt2 := newRT(dst, st)
	out, err = ArtifactDownload{}.Run(ctx, Call{Args: map[string]any{"name": "bin", "path": "in"}}, &rt2.Runtime)
	if err != nil || out["files"] != "3" {
		t.Fatalf("download: %v %v", out, err)
	}
	for n, want := range map[string]string{"in/dist/app": "binary", "in/dist/docs/readme.md": "doc", "in/report.xml": "<x/>"} {
		if b, err := os.ReadFile(filepath.Join(dst, n)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", n, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "in/other.txt")); err == nil {
		t.Error("an unmatched file was uploaded")
	}

	// Another job may not take the name; no match is an error by default.
	st.job = "other"
	if _, err := (ArtifactUpload{}).Run(ctx, Call{Args: map[string]any{"name": "bin", "paths": "dist"}}, &rt.Runtime); err == nil || !strings.Contains(err.Error(), "already uploaded") {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := (ArtifactUpload{}).Run(ctx, Call{Args: map[string]any{"name": "none", "paths": "*.nothing"}}, &rt.Runtime); err == nil || !strings.Contains(err.Error(), "no file matches") {
		t.Fatalf("no match: %v", err)
	}
	if _, ok := st.artifacts["none"]; ok {
		t.Fatal("an empty artifact was stored")
	}
	if out, err := (ArtifactUpload{}).Run(ctx, Call{Args: map[string]any{"name": "none", "paths": "*.nothing", "ifNoFilesFound": "ignore"}}, &rt.Runtime); err != nil || out["files"] != "0" {
		t.Fatalf("ignore: %v %v", out, err)
	}
	if _, err := (ArtifactDownload{}).Run(ctx, Call{Args: map[string]any{"name": "missing"}}, &rt2.Runtime); err == nil || !strings.Contains(err.Error(), "no job of this run") {
		t.Fatalf("missing artifact: %v", err)
	}
}

func TestArtifactArgs(t *testing.T) {
	rt := newRT(t.TempDir(), newMem("j"))
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"paths": "x"}, "args.name: required"},
		{map[string]any{"name": "a b", "paths": "x"}, "args.name: must be"},
		{map[string]any{"name": "a", "paths": "../x"}, "stay inside"},
		{map[string]any{"name": "a", "paths": "/etc/passwd"}, "stay inside"},
		{map[string]any{"name": "a", "paths": "x", "ifNoFilesFound": "maybe"}, "args.ifNoFilesFound"},
	} {
		_, err := ArtifactUpload{}.Run(context.Background(), Call{Args: tc.args}, &rt.Runtime)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	rt.Storage = nil
	_, err := ArtifactUpload{}.Run(context.Background(), Call{Args: map[string]any{"name": "a", "paths": "x"}}, &rt.Runtime)
	if err == nil || !strings.Contains(err.Error(), "artifact and cache storage") {
		t.Errorf("no storage: %v", err)
	}
}

func TestCacheRestoreAndSave(t *testing.T) {
	ctx := context.Background()
	st := newMem("j")
	dir := t.TempDir()
	write(t, dir, map[string]string{".deps/a": "A", ".deps/b/c": "C"})
	call := Call{Args: map[string]any{"key": "deps-v2", "restoreKeys": []any{"deps-"}, "paths": ".deps"}}

	// First run: miss, saved after a successful job.
	rt := newRT(dir, st)
	out, err := Cache{}.Run(ctx, call, &rt.Runtime)
	if err != nil || out["hit"] != "false" || len(rt.after) != 1 {
		t.Fatalf("first: %v %v after=%d", out, err, len(rt.after))
	}
	if err := rt.after[0](ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.caches["deps-v2"]; !ok {
		t.Fatal("not saved")
	}

	// Second run in a fresh workspace: exact hit, files back, nothing saved.
	dir2 := t.TempDir()
	rt2 := newRT(dir2, st)
	out, err = Cache{}.Run(ctx, call, &rt2.Runtime)
	if err != nil || out["hit"] != "true" || out["matchedKey"] != "deps-v2" || len(rt2.after) != 0 {
		t.Fatalf("second: %v %v after=%d", out, err, len(rt2.after))
	}
	if b, _ := os.ReadFile(filepath.Join(dir2, ".deps/b/c")); string(b) != "C" {
		t.Fatalf("restored %q", b)
	}

	// A new key restores from the prefix, and saves only on success.
	call.Args["key"] = "deps-v3"
	rt3 := newRT(t.TempDir(), st)
	out, err = Cache{}.Run(ctx, call, &rt3.Runtime)
	if err != nil || out["hit"] != "false" || out["matchedKey"] != "deps-v2" {
		t.Fatalf("prefix: %v %v", out, err)
	}
	if err := rt3.after[0](ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.caches["deps-v3"]; ok {
		t.Fatal("saved after a failed job")
	}
}
