package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/runnel-ci/runnel/internal/action"
)

// Dir keeps artifacts and caches in a local directory, for `runnel exec`,
// which runs without a server: artifacts live as long as the directory (one
// run), caches as long as the directory is kept (a --workdir). It is safe for
// concurrent use by the jobs of a run.
type Dir struct {
	// Artifacts holds the run's artifacts; Caches the cache entries.
	Artifacts string
	Caches    string

	mu     sync.Mutex
	owners map[string]string // artifact name → job id
}

// Bind returns the Storage of one job of the run.
func (d *Dir) Bind(jobID string) action.Storage { return &dirJob{d: d, job: jobID} }

type dirJob struct {
	d   *Dir
	job string
}

func (j *dirJob) artifactPath(name string) string {
	return filepath.Join(j.d.Artifacts, name+".tar.gz")
}

// writeFile streams r into path through a temporary file renamed at the end,
// so a reader never sees half a file.
func writeFile(path string, r io.Reader) (int64, string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return 0, "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func (j *dirJob) UploadArtifact(ctx context.Context, name string, r io.Reader) (action.ArtifactInfo, error) {
	if strings.ContainsAny(name, `/\`) || name == "" || name == "." || name == ".." {
		return action.ArtifactInfo{}, fmt.Errorf("artifact name %q: %w", name, action.ErrNoArtifact)
	}
	j.d.mu.Lock()
	if j.d.owners == nil {
		j.d.owners = map[string]string{}
	}
	if o, ok := j.d.owners[name]; ok && o != j.job {
		j.d.mu.Unlock()
		return action.ArtifactInfo{}, action.ErrArtifactExists
	}
	j.d.owners[name] = j.job
	j.d.mu.Unlock()
	n, sum, err := writeFile(j.artifactPath(name), r)
	if err != nil {
		return action.ArtifactInfo{}, fmt.Errorf("store artifact %s: %w", name, err)
	}
	return action.ArtifactInfo{Name: name, Size: n, SHA256: sum}, nil
}

func (j *dirJob) DownloadArtifact(ctx context.Context, name string) (io.ReadCloser, action.ArtifactInfo, error) {
	if strings.ContainsAny(name, `/\`) {
		return nil, action.ArtifactInfo{}, action.ErrNoArtifact
	}
	f, err := os.Open(j.artifactPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, action.ArtifactInfo{}, action.ErrNoArtifact
	}
	if err != nil {
		return nil, action.ArtifactInfo{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, action.ArtifactInfo{}, err
	}
	return f, action.ArtifactInfo{Name: name, Size: fi.Size()}, nil
}

// Cache entries are files named by the hex of their key.
func (j *dirJob) cacheDir() string { return j.d.Caches }

func (j *dirJob) RestoreCache(ctx context.Context, keys []string) (string, io.ReadCloser, error) {
	if len(keys) == 0 {
		return "", nil, action.ErrCacheMiss
	}
	open := func(key string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(j.cacheDir(), hex.EncodeToString([]byte(key))))
	}
	if f, err := open(keys[0]); err == nil {
		return keys[0], f, nil
	}
	entries, err := os.ReadDir(j.cacheDir())
	if err != nil {
		return "", nil, action.ErrCacheMiss
	}
	type entry struct {
		key string
		mod int64
	}
	var all []entry
	for _, e := range entries {
		k, err := hex.DecodeString(e.Name())
		if err != nil {
			continue
		}
		if fi, err := e.Info(); err == nil {
			all = append(all, entry{string(k), fi.ModTime().UnixNano()})
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].mod > all[b].mod })
	for _, prefix := range keys[1:] {
		for _, e := range all {
			if strings.HasPrefix(e.key, prefix) {
				if f, err := open(e.key); err == nil {
					return e.key, f, nil
				}
			}
		}
	}
	return "", nil, action.ErrCacheMiss
}

func (j *dirJob) SaveCache(ctx context.Context, key string, r io.Reader) error {
	path := filepath.Join(j.cacheDir(), hex.EncodeToString([]byte(key)))
	if _, err := os.Stat(path); err == nil {
		return action.ErrCacheExists
	}
	_, _, err := writeFile(path, r)
	return err
}
