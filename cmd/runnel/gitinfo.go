package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// gitInfo describes the Git checkout a pipeline file lives in, so `runnel exec`
// can fill the trigger context (branch, commit) and let actions/git-checkout@v1
// clone the local repository when the definition names no source.
type gitInfo struct {
	Root   string
	Ref    string
	Branch string
	Commit string
}

// findGit reads .git directly (no git process: exec must start fast).
func findGit(start string) (gitInfo, bool) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return gitInfo{}, false
	}
	for {
		gitDir := filepath.Join(dir, ".git")
		if fi, err := os.Stat(gitDir); err == nil {
			if !fi.IsDir() {
				// A worktree or submodule: "gitdir: PATH".
				b, err := os.ReadFile(gitDir)
				if err != nil {
					return gitInfo{}, false
				}
				p := strings.TrimSpace(strings.TrimPrefix(string(b), "gitdir:"))
				if !filepath.IsAbs(p) {
					p = filepath.Join(dir, p)
				}
				gitDir = p
			}
			info := gitInfo{Root: dir}
			head, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
			if err != nil {
				return info, true
			}
			h := strings.TrimSpace(string(head))
			if ref, ok := strings.CutPrefix(h, "ref: "); ok {
				info.Ref = ref
				info.Branch = strings.TrimPrefix(ref, "refs/heads/")
				info.Commit = resolveRef(gitDir, ref)
			} else {
				info.Commit = h
			}
			return info, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return gitInfo{}, false
		}
		dir = parent
	}
}

func resolveRef(gitDir, ref string) string {
	if b, err := os.ReadFile(filepath.Join(gitDir, filepath.FromSlash(ref))); err == nil {
		return strings.TrimSpace(string(b))
	}
	common := gitDir
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		common = filepath.Join(gitDir, strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile(filepath.Join(common, filepath.FromSlash(ref))); err == nil {
		return strings.TrimSpace(string(b))
	}
	packed, err := os.ReadFile(filepath.Join(common, "packed-refs"))
	if err != nil {
		return ""
	}
	for _, line := range bytes.Split(packed, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) == 2 && f[1] == ref {
			return f[0]
		}
	}
	return ""
}
