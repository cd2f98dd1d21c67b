package engine

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/backend"
	"github.com/runnel-ci/runnel/internal/workspace"
)

// jobFiles is the workspace of one job attempt as native actions and
// hashFiles() see it: the backend's Files bound to the job.
type jobFiles struct {
	ctx context.Context
	be  backend.Backend
	job *backend.Job
}

var errNoFiles = errors.New("this backend cannot read or write a job's workspace from outside its steps")

// Archive implements action.Workspace.
func (f *jobFiles) Archive(ctx context.Context, dir string) (io.ReadCloser, error) {
	fb, ok := f.be.(backend.Files)
	if !ok {
		return nil, errNoFiles
	}
	d, err := workspace.Clean(dir)
	if err != nil {
		return nil, err
	}
	return fb.ArchiveWorkspace(ctx, f.job, d)
}

// Extract implements action.Workspace.
func (f *jobFiles) Extract(ctx context.Context, dir string, r io.Reader) error {
	fb, ok := f.be.(backend.Files)
	if !ok {
		return errNoFiles
	}
	d, err := workspace.Clean(dir)
	if err != nil {
		return err
	}
	return fb.ExtractToWorkspace(ctx, f.job, d, r)
}

// HashFiles implements expr.FileHasher: the SHA-256 of the sorted list of
// "path\x00sha256(content)" of every regular file matching a pattern, "" when
// none does. Patterns are globs relative to the workspace; "**" spans
// directories.
func (f *jobFiles) HashFiles(patterns []string) (string, error) {
	files := map[string]string{} // path → content digest
	for _, p := range patterns {
		p = strings.TrimPrefix(path.Clean(strings.TrimSpace(p)), "./")
		if p == "" || path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
			return "", fmt.Errorf("hashFiles: pattern %q must be relative to the workspace", p)
		}
		if !doublestar.ValidatePattern(p) {
			return "", fmt.Errorf("hashFiles: %q is not a valid glob pattern", p)
		}
		base, rest := doublestar.SplitPattern(p)
		if err := f.hashUnder(base, rest, files); err != nil {
			return "", fmt.Errorf("hashFiles(%q): %w", p, err)
		}
	}
	if len(files) == 0 {
		return "", nil
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%s\n", n, files[n])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (f *jobFiles) hashUnder(base, rest string, files map[string]string) error {
	rc, err := f.Archive(f.ctx, base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		// A pattern naming a single file: its directory is the base.
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		if ok, _ := doublestar.Match(rest, name); !ok {
			continue
		}
		d := sha256.New()
		if _, err := io.Copy(d, tr); err != nil {
			return err
		}
		full := name
		if base != "." {
			full = base + "/" + name
		}
		files[full] = hex.EncodeToString(d.Sum(nil))
	}
}

// nativeCall is a step whose action the agent carries out itself.
type nativeCall struct {
	action action.Native
	call   action.Call
	uses   string
}

// afterHook is work a native step registered for after the job's steps.
type afterHook struct {
	step int
	uses string
	fn   func(ctx context.Context, jobSucceeded bool) error
	log  func(line string)
}

// runNative runs a native action as the step: its log lines go through out
// (masked and split like a process's output), its outputs become the step's.
func (x *Executor) runNative(ctx context.Context, req JobRequest, files *jobFiles, nc *nativeCall, step int, out io.Writer, rep JobReporter, clock Clock, after *[]afterHook) (backend.Result, error) {
	logLine := func(line string) {
		io.WriteString(out, strings.TrimRight(line, "\n")+"\n")
	}
	// After-hooks run once the step's writer is flushed: their lines go to
	// the step's log directly, masked.
	hookLog := func(line string) {
		if req.masker != nil {
			line = req.masker.String(line)
		}
		level := LevelInfo
		if strings.HasPrefix(line, "runnel: ") || strings.HasPrefix(line, "warning: ") {
			level = LevelWarn
		}
		rep.StepLog(step, clock.Now(), level, line)
	}
	rt := &action.Runtime{
		Workspace: files,
		Storage:   req.Storage,
		Docker:    x.Docker,
		Log:       logLine,
		Now:       clock.Now,
		After: func(fn func(ctx context.Context, jobSucceeded bool) error) {
			*after = append(*after, afterHook{step: step, uses: nc.uses, fn: fn, log: hookLog})
		},
	}
	outputs, err := nc.action.Run(ctx, nc.call, rt)
	// The step's writer is flushed when the step ends: later lines (from
	// after-hooks) go to the step's log directly.
	rt.Log = hookLog
	if ctx.Err() != nil {
		return backend.Result{ExitCode: -1}, ctx.Err()
	}
	if err != nil {
		return backend.Result{}, err
	}
	return backend.Result{ExitCode: 0, Outputs: outputs}, nil
}

// runAfterHooks runs the registered after-hooks in order. They never change
// the job's outcome: a failure is a warning in the registering step's log.
func (x *Executor) runAfterHooks(hard context.Context, hooks []afterHook, succeeded bool, rep JobReporter, clock Clock) {
	for _, h := range hooks {
		if hard.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(hard, 30*time.Minute)
		err := h.fn(ctx, succeeded)
		cancel()
		if err != nil {
			h.log(fmt.Sprintf("runnel: %s (after the job): %v", h.uses, err))
		}
	}
}
