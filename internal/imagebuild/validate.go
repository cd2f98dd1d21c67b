package imagebuild

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/store"
)

// Source clients (code_repo_client).
const (
	ClientGitHub    = "GitHub"
	ClientBitbucket = "Bitbucket"
	ClientGitLab    = "GitLab"
	ClientGitea     = "Gitea"
	ClientSimple    = "Simple"
)

// Clients lists the accepted code_repo_client values.
var Clients = []string{ClientGitHub, ClientBitbucket, ClientGitLab, ClientGitea, ClientSimple}

// Version tagging (version_tagging).
const (
	VersionTagNone   = 0
	VersionTagTime   = 1
	VersionTagCommit = 2
)

// Limits.
const (
	MaxTagConfigs   = 100
	maxDescription  = 1000
	maxFullDesc     = 100_000
	maxPathLen      = 1024
	maxRefValueLen  = 255
	maxHostLen      = 255
	maxCloneURLLen  = 2048
	maxNamespaceLen = 64
	maxRepoNameLen  = 100
)

// FieldError is bad input: Field is where, in the seed's snake_case names
// (build_config.tag_configs[1].docker_repo_tag), Msg what is wrong and what
// is accepted. It wraps runnel.ErrInvalid.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func (e *FieldError) Unwrap() error { return runnel.ErrInvalid }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Docker's rule for a path component of an image name, lower case.
var (
	componentPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`) })
	tagPattern       = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`) })
	forgeNamePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`) })
	hostPattern      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$`) })
)

// CheckNamespace checks a namespace: it is the first path component of the
// image name and the project of the repository's pipeline.
func CheckNamespace(field, v string) error {
	if v == "" {
		return fieldErr(field, "required")
	}
	if len(v) > maxNamespaceLen || !componentPattern().MatchString(v) {
		return fieldErr(field, "must be 1 to %d lower-case letters and digits, separated by single '.', '_', '__' or dashes (it is part of the image name); got %q", maxNamespaceLen, v)
	}
	return nil
}

// CheckRepoName checks a repository name (the image name's last component).
func CheckRepoName(field, v string) error {
	if v == "" {
		return fieldErr(field, "required")
	}
	if len(v) > maxRepoNameLen || !componentPattern().MatchString(v) {
		return fieldErr(field, "must be 1 to %d lower-case letters and digits, separated by single '.', '_', '__' or dashes (it is part of the image name); got %q", maxRepoNameLen, v)
	}
	return nil
}

func checkText(field, v string, max int, multiline bool) error {
	if !utf8.ValidString(v) {
		return fieldErr(field, "must be valid UTF-8")
	}
	if utf8.RuneCountInString(v) > max {
		return fieldErr(field, "must be at most %d characters, got %d", max, utf8.RuneCountInString(v))
	}
	for _, r := range v {
		if r == 0 || (r < ' ' && !(multiline && (r == '\n' || r == '\r' || r == '\t'))) {
			return fieldErr(field, "must not contain control characters")
		}
	}
	return nil
}

// CheckSource checks and normalises a build config's source; prefix is the
// build config's path ("build_config").
func CheckSource(prefix string, s *store.ImageSource) error {
	f := func(name string) string { return prefix + "." + name }
	switch s.Client {
	case "":
		return fieldErr(f("code_repo_client"), "required: one of %s", strings.Join(Clients, ", "))
	case ClientSimple:
		if s.Namespace != "" || s.Name != "" || s.Host != "" {
			which := "code_repo_namespace"
			if s.Namespace == "" {
				which = "code_repo_name"
				if s.Name == "" {
					which = "code_repo_host"
				}
			}
			return fieldErr(f(which), "not used with code_repo_client Simple: give the repository as code_repo_clone_url")
		}
		if s.CloneURL == "" {
			return fieldErr(f("code_repo_clone_url"), "required with code_repo_client Simple")
		}
		if err := checkCloneURL(f("code_repo_clone_url"), s.CloneURL); err != nil {
			return err
		}
	case ClientGitHub, ClientBitbucket, ClientGitLab, ClientGitea:
		if s.CloneURL != "" {
			return fieldErr(f("code_repo_clone_url"), "only used with code_repo_client Simple; %s repositories are named by code_repo_namespace and code_repo_name", s.Client)
		}
		if s.Namespace == "" {
			return fieldErr(f("code_repo_namespace"), "required with code_repo_client %s: the user or group owning the repository", s.Client)
		}
		if len(s.Namespace) > 255 || !forgeNamePattern().MatchString(s.Namespace) || strings.Contains(s.Namespace, "..") {
			return fieldErr(f("code_repo_namespace"), "must be a user or group name (letters, digits, '.', '_', '-', and '/' between subgroups); got %q", s.Namespace)
		}
		if s.Name == "" {
			return fieldErr(f("code_repo_name"), "required with code_repo_client %s: the repository's name", s.Client)
		}
		s.Name = strings.TrimSuffix(s.Name, ".git")
		if len(s.Name) > 255 || !forgeNamePattern().MatchString(s.Name) || strings.Contains(s.Name, "/") || strings.Contains(s.Name, "..") {
			return fieldErr(f("code_repo_name"), "must be a repository name (letters, digits, '.', '_', '-'); got %q", s.Name)
		}
		if s.Host != "" {
			h := strings.ToLower(s.Host)
			if len(h) > maxHostLen || !hostPattern().MatchString(h) {
				return fieldErr(f("code_repo_host"), "must be a host name with an optional port (no scheme, no path), e.g. git.example.com; got %q", s.Host)
			}
			s.Host = h
		} else if s.Client == ClientGitea {
			return fieldErr(f("code_repo_host"), "required with code_repo_client Gitea: the host of your Gitea server, e.g. gitea.example.com")
		}
	default:
		return fieldErr(f("code_repo_client"), "%q is not supported; accepted: %s", s.Client, strings.Join(Clients, ", "))
	}
	if s.CredentialID != "" && !credentialPattern().MatchString(s.CredentialID) {
		return fieldErr(f("code_repo_credential"), "must be a credential id (cred_…, from /api/v1/credentials); got %q", s.CredentialID)
	}
	return nil
}

var credentialPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^cred_[a-z0-9]{10,40}$`) })

func checkCloneURL(field, raw string) error {
	if len(raw) > maxCloneURLLen || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fieldErr(field, "must be a repository URL without spaces or control characters")
	}
	if strings.HasPrefix(raw, "-") {
		return fieldErr(field, "must be a repository URL, got %q", raw)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fieldErr(field, "must be an http(s):// or ssh:// repository URL, got %q", safeurl.Redact(raw))
	}
	switch u.Scheme {
	case "http", "https", "ssh", "git":
	default:
		return fieldErr(field, "must be an http(s):// or ssh:// repository URL, got scheme %q", u.Scheme)
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return fieldErr(field, "must not carry a password: store it as a credential (/api/v1/credentials) and name it in code_repo_credential")
	}
	return nil
}

// TagConfigInput is a tag config as a request gives it; nil fields take
// their defaults.
type TagConfigInput struct {
	// ID names an existing config to keep (0: a new one).
	ID int64
	// BuildConfigID, when not 0, must be the repository's build config id.
	BuildConfigID      int64
	CodeRepoType       string
	CodeRepoTypeValue  string
	DockerRepoTag      string
	DockerfileLocation string
	BuildContextPath   string
	IsActive           bool
	BuildCacheEnabled  *bool // default true
	VersionTagging     *int  // default 0
}

// CheckTagConfigs validates and normalises tag configs; prefix is their
// path ("build_config.tag_configs" or "tag_configs"); buildConfigID the
// repository's (0 when creating).
func CheckTagConfigs(prefix string, in []TagConfigInput, buildConfigID int64) ([]*store.ImageTagConfig, error) {
	if len(in) == 0 {
		return nil, fieldErr(prefix, "at least one tag config is required: which branch or tag builds which image tag")
	}
	if len(in) > MaxTagConfigs {
		return nil, fieldErr(prefix, "at most %d tag configs, got %d", MaxTagConfigs, len(in))
	}
	out := make([]*store.ImageTagConfig, 0, len(in))
	tags := map[string]int{}
	ids := map[int64]int{}
	for i, c := range in {
		f := func(name string) string { return fmt.Sprintf("%s[%d].%s", prefix, i, name) }
		if c.ID < 0 {
			return nil, fieldErr(f("id"), "must be the id of one of the repository's tag configs, or left out for a new one; got %d", c.ID)
		}
		if c.ID != 0 {
			if j, dup := ids[c.ID]; dup {
				return nil, fieldErr(f("id"), "tag config %d is listed twice (also at %s[%d])", c.ID, prefix, j)
			}
			ids[c.ID] = i
		}
		if c.BuildConfigID != 0 && c.BuildConfigID != buildConfigID {
			if buildConfigID == 0 {
				return nil, fieldErr(f("docker_build_config_id"), "is assigned by the server: leave it out when creating a repository")
			}
			return nil, fieldErr(f("docker_build_config_id"), "must be this repository's build config id %d (or left out), got %d", buildConfigID, c.BuildConfigID)
		}
		tc := &store.ImageTagConfig{ID: c.ID, IsActive: c.IsActive, BuildCacheEnabled: true}
		switch c.CodeRepoType {
		case "branch", "tag":
			tc.CodeRepoType = c.CodeRepoType
		case "":
			return nil, fieldErr(f("code_repo_type"), "required: branch or tag")
		default:
			return nil, fieldErr(f("code_repo_type"), "must be branch or tag, got %q", c.CodeRepoType)
		}
		if err := checkRefPattern(f("code_repo_type_value"), c.CodeRepoType, c.CodeRepoTypeValue); err != nil {
			return nil, err
		}
		tc.CodeRepoTypeValue = c.CodeRepoTypeValue
		if c.DockerRepoTag == "" {
			return nil, fieldErr(f("docker_repo_tag"), "required: the image tag this config builds, e.g. latest")
		}
		if !tagPattern().MatchString(c.DockerRepoTag) {
			return nil, fieldErr(f("docker_repo_tag"), "must be an image tag: 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'; got %q", c.DockerRepoTag)
		}
		if j, dup := tags[c.DockerRepoTag]; dup {
			return nil, fieldErr(f("docker_repo_tag"), "%q is already built by %s[%d]: each tag config builds its own image tag", c.DockerRepoTag, prefix, j)
		}
		tags[c.DockerRepoTag] = i
		tc.DockerRepoTag = c.DockerRepoTag
		var err error
		if tc.DockerfileLocation, err = cleanRepoPath(f("dockerfile_location"), c.DockerfileLocation); err != nil {
			return nil, err
		}
		if tc.BuildContextPath, err = cleanRepoPath(f("build_context_path"), c.BuildContextPath); err != nil {
			return nil, err
		}
		if c.BuildCacheEnabled != nil {
			tc.BuildCacheEnabled = *c.BuildCacheEnabled
		}
		if c.VersionTagging != nil {
			v := *c.VersionTagging
			if v != VersionTagNone && v != VersionTagTime && v != VersionTagCommit {
				return nil, fieldErr(f("version_tagging"), "must be 0 (no extra tag), 1 (a time tag, vYYYYMMDD.hhmmss in UTC) or 2 (the commit id); got %d", v)
			}
			tc.VersionTagging = v
		}
		out = append(out, tc)
	}
	return out, nil
}

// checkRefPattern accepts a branch or tag name, or a glob of them
// (doublestar: * within a path element, ** across).
func checkRefPattern(field, kind, v string) error {
	if v == "" {
		return fieldErr(field, "required: the %s name (or a glob such as release/*) this config builds", kind)
	}
	if len(v) > maxRefValueLen {
		return fieldErr(field, "must be at most %d characters", maxRefValueLen)
	}
	if strings.HasPrefix(v, "refs/") {
		return fieldErr(field, "give the %s name without refs/…, got %q", kind, v)
	}
	if strings.HasPrefix(v, "-") || strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.Contains(v, "..") ||
		strings.Contains(v, "//") || strings.HasSuffix(v, ".lock") ||
		strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '~' || r == '^' || r == ':' || r == '\\' }) {
		return fieldErr(field, "must be a valid %s name or glob (no spaces, control characters, '..', '~', '^', ':', '\\', no leading '-' or '/'); got %q", kind, v)
	}
	if !doublestar.ValidatePattern(v) {
		return fieldErr(field, "is not a valid glob: %q", v)
	}
	return nil
}

// IsPattern reports whether a code_repo_type_value is a glob rather than a
// name.
func IsPattern(v string) bool { return strings.ContainsAny(v, "*?[{") }

// cleanRepoPath normalises a path in the repository to "/a/b" ("" → "/").
func cleanRepoPath(field, v string) (string, error) {
	if v == "" {
		return "/", nil
	}
	if len(v) > maxPathLen || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) {
		return "", fieldErr(field, "must be a path in the repository such as / or /docker/app, without control characters or '\\'")
	}
	rel := strings.TrimPrefix(v, "/")
	for _, seg := range strings.Split(rel, "/") {
		if seg == ".." {
			return "", fieldErr(field, "must stay inside the repository (no '..'), got %q", v)
		}
	}
	return path.Clean("/" + rel), nil
}

// DockerfilePath is the Dockerfile's path relative to the checkout: a
// dockerfile_location naming a directory (as the seed's "/" does) holds
// "Dockerfile"; one whose last element is a Dockerfile's name (Dockerfile,
// Dockerfile.x, x.Dockerfile, x.dockerfile) is the file itself.
func DockerfilePath(location string) string {
	rel := strings.TrimPrefix(path.Clean("/"+location), "/")
	base := path.Base("/" + rel)
	lower := strings.ToLower(base)
	if rel != "" && (lower == "dockerfile" || strings.HasPrefix(lower, "dockerfile.") || strings.HasSuffix(lower, ".dockerfile")) {
		return rel
	}
	if rel == "" {
		return "Dockerfile"
	}
	return rel + "/Dockerfile"
}

// ContextPath is the build context relative to the checkout ("." for the
// root).
func ContextPath(p string) string {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return "."
	}
	return rel
}

var registryPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)
})

// CheckRegistry checks the server's registry: host[:port] without scheme or
// path, where the host has a dot or a port, or is localhost (what Docker
// takes as a registry in an image reference).
func CheckRegistry(v string) error {
	host, _, hasPort := strings.Cut(v, ":")
	if strings.HasPrefix(v, "[") {
		hasPort = strings.Contains(v, "]:")
	}
	if !registryPattern().MatchString(v) || !(hasPort || strings.Contains(host, ".") || host == "localhost" || strings.HasPrefix(v, "[")) {
		return fmt.Errorf("must be a registry host[:port] without scheme or path, such as registry.example.com or 127.0.0.1:5000, got %q", v)
	}
	return nil
}
