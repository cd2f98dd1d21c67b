// Package gitdef reads and writes pipeline definitions kept in Git
// repositories: the file at a branch, tag or commit (for a run), the head of a
// branch (for the compare-and-swap of a save), and a commit of a new version
// pushed to a branch. It speaks Git's smart protocols through go-git, in
// memory: the server needs no git binary and no working copy, and fetches only
// the commit it needs (depth 1) unless that commit is not a branch head.
package gitdef

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// MaxFileSize bounds a definition file read from a repository.
const MaxFileSize = 4 << 20

// Errors callers tell apart.
var (
	// ErrNotFound: the branch, tag, commit or file does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAccess: the repository refused the credential (or asked for one).
	ErrAccess = errors.New("access denied")
)

// HeadMovedError: the branch head is not the commit the caller expected.
type HeadMovedError struct {
	Branch   string
	Expected string
	Current  string
}

func (e *HeadMovedError) Error() string {
	return fmt.Sprintf("branch %s is at %s, not at the expected %s: someone pushed since the definition was read",
		e.Branch, e.Current, e.Expected)
}

// Repo is a repository and the credential to reach it with (nil: none).
type Repo struct {
	URL        string
	Credential *runnel.Credential
}

func (r Repo) auth() (transport.AuthMethod, error) {
	c := r.Credential
	if c == nil {
		return nil, nil
	}
	if c.Kind == "ssh" || isSSH(r.URL) {
		if c.Kind != "ssh" {
			return nil, fmt.Errorf("credential %s holds an access token (kind %s); the SSH URL %s needs a credential of kind ssh", c.ID, c.Kind, r.URL)
		}
		user := c.Username
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, []byte(c.Secret), "")
		if err != nil {
			return nil, fmt.Errorf("credential %s: the private key cannot be used: %v", c.ID, err)
		}
		// Host keys are checked against known_hosts (SSH_KNOWN_HOSTS or
		// ~/.ssh/known_hosts): a server that has never been seen is refused,
		// not trusted on first use.
		return keys, nil
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "file" || u.Scheme == "git" {
		return nil, fmt.Errorf("credential %s: nothing is sent over %s:// URLs; remove the credential or use an https:// URL", c.ID, u.Scheme)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("refusing to send credential %s over plain http:// to %s; use an https:// URL", c.ID, u.Host)
	}
	if c.Host != "" && !strings.EqualFold(c.Host, u.Host) && !strings.EqualFold(c.Host, u.Hostname()) {
		return nil, fmt.Errorf("credential %s is for %s, but the repository is on %s", c.ID, c.Host, u.Host)
	}
	user := c.Username
	if user == "" {
		user = "git"
	}
	return &githttp.BasicAuth{Username: user, Password: c.Secret}, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

func isSSH(u string) bool {
	if strings.HasPrefix(u, "ssh://") {
		return true
	}
	if strings.Contains(u, "://") {
		return false
	}
	// scp-like: user@host:path
	at, colon := strings.Index(u, "@"), strings.Index(u, ":")
	return colon > 0 && (at < 0 || at < colon)
}

// CheckURL validates a repository URL: http(s), ssh:// or scp-like.
func CheckURL(raw string) error {
	if raw == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return errors.New("must not contain white space")
	}
	if isSSH(raw) {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return fmt.Errorf("scheme %q: use https://, http://, ssh:// or user@host:path", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if u.User != nil {
		return errors.New("must not carry a user or password; set credentialId instead")
	}
	return nil
}

// BranchRef turns a branch name into refs/heads/NAME; a full ref is kept.
func BranchRef(name string) string {
	if strings.HasPrefix(name, "refs/") {
		return name
	}
	return "refs/heads/" + name
}

func (r Repo) remote(st *memory.Storage) *git.Remote {
	return git.NewRemote(st, &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
}

// wrap turns go-git's transport errors into messages that say what to do,
// and into ErrNotFound / ErrAccess.
func (r Repo) wrap(what string, err error) error {
	cred := "no credential"
	if r.Credential != nil {
		cred = "credential " + r.Credential.ID
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: timed out", what, r.URL)
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return fmt.Errorf("%s %s: the repository asks for authentication (%s): %w", what, r.URL, cred, ErrAccess)
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("%s %s: the repository refused %s: %w", what, r.URL, cred, ErrAccess)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("%s %s: repository not found (or %s may not see it): %w", what, r.URL, cred, ErrNotFound)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("%s %s: the repository is empty: %w", what, r.URL, ErrNotFound)
	}
	return fmt.Errorf("%s %s: %v", what, r.URL, err)
}

// Heads lists the remote's refs (ls-remote): full ref name → commit.
func (r Repo) Heads(ctx context.Context) (map[string]string, error) {
	auth, err := r.auth()
	if err != nil {
		return nil, err
	}
	refs, err := r.remote(memory.NewStorage()).ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return nil, r.wrap("list refs of", err)
	}
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		if ref.Type() == plumbing.HashReference {
			out[ref.Name().String()] = ref.Hash().String()
		}
	}
	return out, nil
}

// Head returns the commit a branch points at.
func (r Repo) Head(ctx context.Context, branch string) (string, error) {
	refs, err := r.Heads(ctx)
	if err != nil {
		return "", err
	}
	sha, ok := refs[BranchRef(branch)]
	if !ok {
		return "", fmt.Errorf("repository %s has no branch %s: %w", r.URL, branch, ErrNotFound)
	}
	return sha, nil
}

// Resolve returns the commit a full ref (refs/heads/x, refs/tags/v1) points
// at, an annotated tag peeled to its commit.
func (r Repo) Resolve(ctx context.Context, ref string) (string, error) {
	auth, err := r.auth()
	if err != nil {
		return "", err
	}
	refs, err := r.remote(memory.NewStorage()).ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", r.wrap("list refs of", err)
	}
	var direct string
	for _, x := range refs {
		if x.Type() != plumbing.HashReference {
			continue
		}
		switch x.Name().String() {
		case ref + "^{}":
			return x.Hash().String(), nil // the commit an annotated tag points at
		case ref:
			direct = x.Hash().String()
		}
	}
	if direct == "" {
		return "", fmt.Errorf("repository %s has no %s: %w", safeurl.Redact(r.URL), ref, ErrNotFound)
	}
	return direct, nil
}

// File is a definition read from Git.
type File struct {
	Path    string
	Commit  string
	Content []byte
}

// ReadRequest says what to read: Path at Commit if given (fetched through
// Ref, which should contain it), else at the head of Ref.
type ReadRequest struct {
	// Ref: a branch name or a full ref (refs/heads/x, refs/tags/v1,
	// refs/pull/7/head).
	Ref    string
	Commit string
	Path   string
}

const fetchedRef = "refs/runnel/fetched"

// Read returns the file at the requested commit.
func (r Repo) Read(ctx context.Context, q ReadRequest) (*File, error) {
	auth, err := r.auth()
	if err != nil {
		return nil, err
	}
	ref := BranchRef(q.Ref)
	st := memory.NewStorage()
	commit, err := r.fetch(ctx, st, auth, ref, q.Commit)
	if err != nil {
		return nil, err
	}
	c, err := object.GetCommit(st, commit)
	if err != nil {
		return nil, fmt.Errorf("read %s: commit %s: %v", r.URL, commit, err)
	}
	content, err := readFile(c, q.Path)
	if err != nil {
		return nil, fmt.Errorf("%s at commit %s (%s of %s): %w", q.Path, short(commit), ref, r.URL, err)
	}
	return &File{Path: q.Path, Commit: commit.String(), Content: content}, nil
}

// fetch brings the wanted commit into st: the ref's head at depth 1 first
// (the usual case: a push event read while its commit is still the head),
// then the commit itself at depth 1 (servers that allow fetching reachable
// commits), then the ref's whole history.
func (r Repo) fetch(ctx context.Context, st *memory.Storage, auth transport.AuthMethod, ref, want string) (plumbing.Hash, error) {
	rem := r.remote(st)
	spec := config.RefSpec("+" + ref + ":" + fetchedRef)
	err := rem.FetchContext(ctx, &git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Depth: 1, Auth: auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		var noRef git.NoMatchingRefSpecError
		if errors.As(err, &noRef) {
			return plumbing.ZeroHash, fmt.Errorf("repository %s has no %s: %w", r.URL, ref, ErrNotFound)
		}
		return plumbing.ZeroHash, r.wrap("fetch "+ref+" from", err)
	}
	head, err := peel(st, fetchedRef)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("fetch %s from %s: %v", ref, r.URL, err)
	}
	if want == "" || head.String() == want {
		return head, nil
	}
	wantHash := plumbing.NewHash(want)
	if len(want) != 40 || wantHash.String() != want {
		return plumbing.ZeroHash, fmt.Errorf("commit %q: must be a full 40-character lowercase SHA-1", want)
	}
	// The ref moved on since the event: fetch the commit itself.
	st2 := memory.NewStorage()
	err = r.remote(st2).FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{config.RefSpec(want + ":" + fetchedRef)}, Depth: 1, Auth: auth, Tags: git.NoTags,
	})
	if err == nil {
		if _, err := object.GetCommit(st2, wantHash); err == nil {
			*st = *st2
			return wantHash, nil
		}
	}
	// Servers that refuse to send an object by id: walk the ref's history.
	st3 := memory.NewStorage()
	err = r.remote(st3).FetchContext(ctx, &git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Auth: auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return plumbing.ZeroHash, r.wrap("fetch "+ref+" from", err)
	}
	if _, err := object.GetCommit(st3, wantHash); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s is not on %s of %s: %w", want, ref, r.URL, ErrNotFound)
	}
	*st = *st3
	return wantHash, nil
}

// peel resolves a ref to a commit, through annotated tags.
func peel(st *memory.Storage, name string) (plumbing.Hash, error) {
	ref, err := st.Reference(plumbing.ReferenceName(name))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	h := ref.Hash()
	for range 10 {
		obj, err := st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if obj.Type() != plumbing.TagObject {
			return h, nil
		}
		tag, err := object.DecodeTag(st, obj)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		h = tag.Target
	}
	return plumbing.ZeroHash, errors.New("tag chain too long")
}

func readFile(c *object.Commit, p string) ([]byte, error) {
	f, err := c.File(p)
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, plumbing.ErrObjectNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		if t, terr := c.Tree(); terr == nil {
			if _, derr := t.Tree(p); derr == nil {
				return nil, errors.New("a directory, not a regular file")
			}
		}
		return nil, fmt.Errorf("no such file: %w", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if f.Mode == filemode.Submodule || f.Mode == filemode.Dir {
		return nil, errors.New("not a regular file")
	}
	if f.Size > MaxFileSize {
		return nil, fmt.Errorf("%d bytes; definitions are limited to %d MiB", f.Size, MaxFileSize>>20)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(io.LimitReader(rd, MaxFileSize+1))
}

func short(h plumbing.Hash) string { return h.String()[:12] }

// Signature names a commit's author or committer.
type Signature struct {
	Name  string
	Email string
}

// CommitRequest writes one file in a new commit on top of Base's head and
// pushes it to Branch.
type CommitRequest struct {
	// Base is the branch the commit starts from; Expected, when set, must be
	// its head.
	Base     string
	Expected string
	// Branch is pushed: Base itself (a fast-forward, compare-and-swap on the
	// head that was read) or a new branch (it must not exist).
	Branch    string
	Path      string
	Content   []byte
	Message   string
	Author    Signature
	Committer Signature
	When      time.Time
}

// CommitResult says what was pushed.
type CommitResult struct {
	Commit string
	Parent string
	// Unchanged: the file already had this content; nothing was pushed and
	// Commit is the head.
	Unchanged bool
}

// Commit writes the file and pushes. A head that moved (before or during the
// push) is a *HeadMovedError carrying the current head.
func (r Repo) Commit(ctx context.Context, q CommitRequest) (*CommitResult, error) {
	if err := checkPath(q.Path); err != nil {
		return nil, fmt.Errorf("path %q: %v", q.Path, err)
	}
	auth, err := r.auth()
	if err != nil {
		return nil, err
	}
	baseRef := BranchRef(q.Base)
	st := memory.NewStorage()
	head, err := r.fetch(ctx, st, auth, baseRef, "")
	if err != nil {
		return nil, err
	}
	if q.Expected != "" && q.Expected != head.String() {
		return nil, &HeadMovedError{Branch: q.Base, Expected: q.Expected, Current: head.String()}
	}
	parent, err := object.GetCommit(st, head)
	if err != nil {
		return nil, fmt.Errorf("commit to %s: %v", r.URL, err)
	}
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, err := blob.Writer()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(q.Content); err != nil {
		return nil, err
	}
	_ = w.Close()
	blobHash, err := st.SetEncodedObject(blob)
	if err != nil {
		return nil, err
	}
	tree, err := setPath(st, parent.TreeHash, strings.Split(q.Path, "/"), blobHash)
	if err != nil {
		return nil, fmt.Errorf("commit %s to %s: %v", q.Path, r.URL, err)
	}
	target := BranchRef(q.Branch)
	if tree == parent.TreeHash && target == baseRef {
		return &CommitResult{Commit: head.String(), Parent: head.String(), Unchanged: true}, nil
	}
	when := q.When
	if when.IsZero() {
		when = time.Now()
	}
	c := &object.Commit{
		Author:       object.Signature{Name: q.Author.Name, Email: q.Author.Email, When: when},
		Committer:    object.Signature{Name: q.Committer.Name, Email: q.Committer.Email, When: when},
		Message:      strings.TrimRight(q.Message, "\n") + "\n",
		TreeHash:     tree,
		ParentHashes: []plumbing.Hash{head},
	}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return nil, err
	}
	newHash, err := st.SetEncodedObject(obj)
	if err != nil {
		return nil, err
	}
	const local = "refs/heads/runnel-save"
	if err := st.SetReference(plumbing.NewHashReference(local, newHash)); err != nil {
		return nil, err
	}
	opts := &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(local + ":" + target)},
		Auth:       auth,
	}
	if target == baseRef {
		// Compare-and-swap: the push carries the head read above as the old
		// value, and the server updates the ref only from that value.
		opts.RequireRemoteRefs = []config.RefSpec{config.RefSpec(head.String() + ":" + target)}
	}
	err = r.remote(st).PushContext(ctx, opts)
	if err != nil {
		if target == baseRef && isRejected(err) {
			cur, herr := r.Head(ctx, q.Base)
			if herr == nil && cur != head.String() {
				return nil, &HeadMovedError{Branch: q.Base, Expected: head.String(), Current: cur}
			}
		}
		if target != baseRef && isRejected(err) {
			return nil, fmt.Errorf("push to %s: branch %s already exists: %w", r.URL, q.Branch, errBranchExists)
		}
		return nil, r.wrap("push to", err)
	}
	return &CommitResult{Commit: newHash.String(), Parent: head.String()}, nil
}

var errBranchExists = errors.New("branch exists")

func isRejected(err error) bool {
	s := err.Error()
	return strings.Contains(s, "non-fast-forward") || strings.Contains(s, "rejected") ||
		strings.Contains(s, "remote ref") || strings.Contains(s, "fetch first") ||
		strings.Contains(s, "already exists") || strings.Contains(s, "failed to update ref") ||
		strings.Contains(s, "cannot lock ref")
}

func checkPath(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." || p == "." {
		return errors.New("must be a clean relative path inside the repository")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".git" {
			return errors.New("must not be inside .git")
		}
	}
	return nil
}

// setPath returns the hash of tree with parts set to the blob (creating
// directories as needed), writing the changed trees into st.
func setPath(st *memory.Storage, treeHash plumbing.Hash, parts []string, blob plumbing.Hash) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if !treeHash.IsZero() {
		t, err := object.GetTree(st, treeHash)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, t.Entries...)
	}
	name := parts[0]
	idx := -1
	for i, e := range entries {
		if e.Name == name {
			idx = i
		}
	}
	var entry object.TreeEntry
	if len(parts) == 1 {
		if idx >= 0 && entries[idx].Mode == filemode.Dir {
			return plumbing.ZeroHash, fmt.Errorf("%s is a directory", name)
		}
		mode := filemode.Regular
		if idx >= 0 && entries[idx].Mode == filemode.Executable {
			mode = filemode.Executable
		}
		entry = object.TreeEntry{Name: name, Mode: mode, Hash: blob}
	} else {
		sub := plumbing.ZeroHash
		if idx >= 0 {
			if entries[idx].Mode != filemode.Dir {
				return plumbing.ZeroHash, fmt.Errorf("%s is a file, not a directory", name)
			}
			sub = entries[idx].Hash
		}
		h, err := setPath(st, sub, parts[1:], blob)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entry = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
	}
	if idx >= 0 {
		entries[idx] = entry
	} else {
		entries = append(entries, entry)
	}
	sortEntries(entries)
	t := &object.Tree{Entries: entries}
	obj := st.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// sortEntries orders tree entries as Git does: by name, with directories
// compared as if their name ended in "/".
func sortEntries(es []object.TreeEntry) {
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && key(es[j]) < key(es[j-1]); j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// IsBranchExists reports a push to a new branch that already existed.
func IsBranchExists(err error) bool { return errors.Is(err, errBranchExists) }
