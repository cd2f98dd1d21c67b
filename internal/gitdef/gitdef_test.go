package gitdef_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/testgit"
)

const file = ".runnel/pipeline.yaml"

func setup(t *testing.T) (*testgit.Server, gitdef.Repo) {
	t.Helper()
	srv := testgit.New(t)
	url := srv.Init(t, "app", map[string]string{file: "version: v1 # one\n", "README": "hi\n"})
	cred := &runnel.Credential{ID: "cred_test", Kind: "basic", Username: srv.User, Secret: srv.Password}
	return srv, gitdef.Repo{URL: url, Credential: cred}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestReadAtBranchTagAndCommit(t *testing.T) {
	srv, repo := setup(t)
	first := srv.Head(t, "app", "main")
	f, err := repo.Read(ctx(t), gitdef.ReadRequest{Ref: "main", Path: file})
	if err != nil {
		t.Fatal(err)
	}
	if string(f.Content) != "version: v1 # one\n" || f.Commit != first {
		t.Fatalf("Read main = %q at %s, want v1 at %s", f.Content, f.Commit, first)
	}
	second := srv.Commit(t, "app", "main", map[string]string{file: "version: v1 # two\n"}, "second")
	srv.Tag(t, "app", "v1.0", first)

	// The commit of an event whose branch has moved on since.
	f, err = repo.Read(ctx(t), gitdef.ReadRequest{Ref: "refs/heads/main", Commit: first, Path: file})
	if err != nil || string(f.Content) != "version: v1 # one\n" || f.Commit != first {
		t.Fatalf("Read old commit = %+v, %v", f, err)
	}
	// With the server allowing any reachable commit (as the big forges do).
	testgit.Git(t, srv.Bare("app"), "config", "uploadpack.allowReachableSHA1InWant", "true")
	f, err = repo.Read(ctx(t), gitdef.ReadRequest{Ref: "main", Commit: first, Path: file})
	if err != nil || f.Commit != first {
		t.Fatalf("Read old commit (allowReachableSHA1InWant) = %+v, %v", f, err)
	}
	f, err = repo.Read(ctx(t), gitdef.ReadRequest{Ref: "main", Path: file})
	if err != nil || string(f.Content) != "version: v1 # two\n" || f.Commit != second {
		t.Fatalf("Read head = %+v, %v", f, err)
	}
	// An annotated tag peels to its commit.
	f, err = repo.Read(ctx(t), gitdef.ReadRequest{Ref: "refs/tags/v1.0", Path: file})
	if err != nil || f.Commit != first {
		t.Fatalf("Read tag = %+v, %v", f, err)
	}
}

func TestReadErrors(t *testing.T) {
	srv, repo := setup(t)
	for _, tc := range []struct {
		name string
		repo gitdef.Repo
		q    gitdef.ReadRequest
		is   error
		msg  string
	}{
		{"missing file", repo, gitdef.ReadRequest{Ref: "main", Path: "nope.yaml"}, gitdef.ErrNotFound, "nope.yaml at commit"},
		{"missing branch", repo, gitdef.ReadRequest{Ref: "develop", Path: file}, gitdef.ErrNotFound, "has no refs/heads/develop"},
		{"missing repo", gitdef.Repo{URL: srv.URL + "/other.git", Credential: repo.Credential}, gitdef.ReadRequest{Ref: "main", Path: file}, gitdef.ErrNotFound, "not found"},
		{"commit not on branch", repo, gitdef.ReadRequest{Ref: "main", Commit: strings.Repeat("ab", 20), Path: file}, gitdef.ErrNotFound, "is not on refs/heads/main"},
		{"no credential", gitdef.Repo{URL: repo.URL}, gitdef.ReadRequest{Ref: "main", Path: file}, gitdef.ErrAccess, "asks for authentication (no credential)"},
		{"wrong password", gitdef.Repo{URL: repo.URL, Credential: &runnel.Credential{ID: "cred_bad", Kind: "basic", Username: srv.User, Secret: "wrong-password"}},
			gitdef.ReadRequest{Ref: "main", Path: file}, gitdef.ErrAccess, "cred_bad"},
		{"credential for another host", gitdef.Repo{URL: repo.URL, Credential: &runnel.Credential{ID: "cred_gh", Kind: "github", Host: "github.com", Secret: "x"}},
			gitdef.ReadRequest{Ref: "main", Path: file}, nil, "is for github.com"},
		{"directory", repo, gitdef.ReadRequest{Ref: "main", Path: ".runnel"}, nil, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.repo.Read(ctx(t), tc.q)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Read = %v, want an error containing %q (is %v)", err, tc.msg, tc.is)
			}
			if strings.Contains(err.Error(), srv.Password) {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
	// Anonymous reads, when the server allows them, need no credential.
	srv.Anonymous.Store(true)
	if _, err := (gitdef.Repo{URL: repo.URL}).Read(ctx(t), gitdef.ReadRequest{Ref: "main", Path: file}); err != nil {
		t.Fatalf("anonymous read: %v", err)
	}
}

func TestCommitDirect(t *testing.T) {
	srv, repo := setup(t)
	head, err := repo.Head(ctx(t), "main")
	if err != nil || head != srv.Head(t, "app", "main") {
		t.Fatalf("Head = %s, %v", head, err)
	}
	when := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	res, err := repo.Commit(ctx(t), gitdef.CommitRequest{
		Base: "main", Branch: "main", Expected: head, Path: file, Content: []byte("version: v1 # saved\n"),
		Message: "ci: run tests on push", Author: gitdef.Signature{Name: "alice", Email: "alice@example.com"},
		Committer: gitdef.Signature{Name: "Runnel", Email: "runnel@localhost"}, When: when,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Parent != head || res.Commit != srv.Head(t, "app", "main") || res.Unchanged {
		t.Fatalf("Commit = %+v; branch at %s", res, srv.Head(t, "app", "main"))
	}
	if got := srv.Show(t, "app", "main", file); got != "version: v1 # saved" {
		t.Fatalf("file on main = %q", got)
	}
	// Other files are kept; git agrees the repository is sound.
	if got := srv.Show(t, "app", "main", "README"); got != "hi" {
		t.Fatalf("README = %q", got)
	}
	testgit.Git(t, srv.Bare("app"), "fsck", "--strict")
	meta := testgit.Git(t, srv.Bare("app"), "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s|%at", "main")
	if meta != "alice <alice@example.com>|Runnel <runnel@localhost>|ci: run tests on push|"+strconv.FormatInt(when.Unix(), 10) {
		t.Fatalf("commit metadata = %q", meta)
	}

	// A stale expectation is a conflict carrying the current head.
	_, err = repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Branch: "main", Expected: head, Path: file, Content: []byte("x\n"), Message: "m"})
	var moved *gitdef.HeadMovedError
	if !errors.As(err, &moved) || moved.Current != res.Commit {
		t.Fatalf("stale Commit = %v, want HeadMovedError with current %s", err, res.Commit)
	}
	// The same content again changes nothing.
	same, err := repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Branch: "main", Expected: res.Commit, Path: file, Content: []byte("version: v1 # saved\n"), Message: "m"})
	if err != nil || !same.Unchanged || same.Commit != res.Commit {
		t.Fatalf("unchanged Commit = %+v, %v", same, err)
	}
	// A new file in new directories.
	res2, err := repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Branch: "main", Path: "ci/deep/p.yaml", Content: []byte("a\n"), Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Show(t, "app", res2.Commit, "ci/deep/p.yaml"); got != "a" {
		t.Fatalf("new file = %q", got)
	}
	testgit.Git(t, srv.Bare("app"), "fsck", "--strict")
	for _, bad := range []string{"", "/etc/x", "../x", "a/../b", ".git/config", "README/x"} {
		if _, err := repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Branch: "main", Path: bad, Content: []byte("x"), Message: "m"}); err == nil {
			t.Fatalf("Commit to %q succeeded", bad)
		}
	}
}

// Concurrent saves with the same expected head: exactly one wins, the others
// learn the new head; nothing is overwritten.
func TestCommitRace(t *testing.T) {
	srv, repo := setup(t)
	head := srv.Head(t, "app", "main")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Branch: "main", Expected: head, Path: file,
				Content: []byte("version: v1 # writer " + strconv.Itoa(i) + "\n"), Message: "w"})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		var moved *gitdef.HeadMovedError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &moved):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won, want exactly 1 (%v)", wins, errs)
	}
	if n := testgit.Git(t, srv.Bare("app"), "rev-list", "--count", "main"); n != "2" {
		t.Fatalf("main has %s commits, want 2", n)
	}
}

func TestCommitNewBranch(t *testing.T) {
	srv, repo := setup(t)
	head := srv.Head(t, "app", "main")
	res, err := repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Expected: head, Branch: "runnel/edit-1", Path: file, Content: []byte("v: 2\n"), Message: "edit"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Head(t, "app", "main") != head || srv.Head(t, "app", "runnel/edit-1") != res.Commit {
		t.Fatalf("main moved or branch missing: %+v", res)
	}
	_, err = repo.Commit(ctx(t), gitdef.CommitRequest{Base: "main", Branch: "runnel/edit-1", Path: file, Content: []byte("v: 3\n"), Message: "edit"})
	if !gitdef.IsBranchExists(err) {
		t.Fatalf("second push to the branch = %v, want branch exists", err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://github.com/o/r.git", true},
		{"http://127.0.0.1:8080/o/r.git", true},
		{"ssh://git@host:2222/o/r.git", true},
		{"git@github.com:o/r.git", true},
		{"", false},
		{"ftp://host/x", false},
		{"https:///x", false},
		{"https://user:pw@host/x", false},
		{"https://host/a b", false},
		{"/local/path", false},
	} {
		if err := gitdef.CheckURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestResolve(t *testing.T) {
	srv, repo := setup(t)
	first := srv.Head(t, "app", "main")
	second := srv.Commit(t, "app", "main", map[string]string{"README": "two\n"}, "second")
	srv.Tag(t, "app", "v1.0", first) // annotated: its ref names a tag object
	testgit.Git(t, srv.Bare("app"), "tag", "light", second)
	for ref, want := range map[string]string{"refs/heads/main": second, "refs/tags/v1.0": first, "refs/tags/light": second} {
		got, err := repo.Resolve(ctx(t), ref)
		if err != nil || got != want {
			t.Errorf("Resolve(%s) = %s, %v; want %s", ref, got, err, want)
		}
	}
	if _, err := repo.Resolve(ctx(t), "refs/heads/nope"); !errors.Is(err, gitdef.ErrNotFound) || !strings.Contains(err.Error(), "has no refs/heads/nope") {
		t.Errorf("missing branch: %v", err)
	}
	repo.Credential = &runnel.Credential{ID: "cred_bad", Kind: "basic", Username: srv.User, Secret: "wrong"}
	if _, err := repo.Resolve(ctx(t), "refs/heads/main"); !errors.Is(err, gitdef.ErrAccess) {
		t.Errorf("wrong password: %v", err)
	}
}
