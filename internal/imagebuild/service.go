// Package imagebuild is the image build service (seed 002): image
// repositories (a source repository and tag configs saying which branches or
// tags become which image tags) and their builds.
//
// It is built on the engine rather than beside it. Each repository has a
// pipeline the service manages (project = the namespace, metadata
// ManagedKey); its definition is generated from the build config (a job that
// checks the commit out with actions/git-checkout@v1 and builds and pushes
// the image with actions/docker-build@v1 to the server's registry) and saved
// as a new spec version whenever it changes. A build is a run of that
// pipeline whose variables record the tag config it was made from (the
// image tags, Dockerfile, context, cache, commit), so everything the engine
// offers — agents, leases, logs, events, stop — applies, and the build's
// record cannot drift from the run: it is the run.
package imagebuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/webhook"
)

// ManagedKey is the pipeline metadata key marking an image repository's
// pipeline; its value is "namespace/name".
const ManagedKey = "runnel.imageRepository"

// Run variables of a build (declared by the generated definition).
const (
	VarTagConfigID    = "tag_config_id"
	VarCodeRepoType   = "code_repo_type"
	VarCodeRepoValue  = "code_repo_type_value"
	VarCommit         = "code_head_commit"
	VarTag            = "docker_repo_tag"
	VarVersionTag     = "docker_repo_version_tag"
	VarDockerfileLoc  = "dockerfile_location"
	VarContextPath    = "build_context_path"
	VarCache          = "build_cache_enabled"
	VarDockerfile     = "dockerfile"
	VarContext        = "context"
	VarTags           = "tags"
	buildJobOutputDig = "digest"
)

// Store is what the service needs of the store.
type Store interface {
	store.ImageRepositories
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
	DeletePipeline(ctx context.Context, id string) error
	SaveSpec(ctx context.Context, sv *store.SpecVersion, expectedHead string) (*store.SpecVersion, bool, error)
	GetRun(ctx context.Context, id string) (*store.Run, error)
	GetRunTree(ctx context.Context, id string) (*store.RunTree, error)
	ListLogs(ctx context.Context, stepRunID string, q store.LogQuery) ([]store.LogLine, error)
	GetCredential(ctx context.Context, id string) (*store.Credential, error)
	ListCredentials(ctx context.Context, projectID string) ([]*store.Credential, error)
}

// Runs starts runs (the scheduler).
type Runs interface {
	Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error)
}

// Options configure a Service.
type Options struct {
	Store Store
	Runs  Runs
	// Catalog resolves `uses` when the generated definition is checked.
	Catalog spec.ActionCatalog
	// Registry is where images are pushed, host[:port] ("": builds are
	// refused with ErrNoRegistry).
	Registry string
	// RegistryCredential is the credential (id or name) the push logs in
	// with ("": anonymous). A name is looked up when a build starts, so the
	// credential may be created after the server.
	RegistryCredential string
	// Credentials opens a repository's source credential to resolve a
	// branch's head (nil: only public repositories resolve).
	Credentials gitdef.CredentialOpener
	// GitTimeout bounds resolving a branch or tag (default 60s).
	GitTimeout time.Duration
	// Access filters lists to the namespaces (projects) the caller may see
	// and checks builds' triggers; Projects makes sure a new repository's
	// namespace is a project the caller maintains. nil: no checks.
	Access   *access.Policy
	Projects interface {
		Ensure(ctx context.Context, field, id string, need access.Role, action string) error
	}
	Clock func() time.Time
}

// within is the namespaces the caller may see (nil: all).
func (s *Service) within(ctx context.Context) ([]string, error) {
	if s.o.Access == nil {
		return nil, nil
	}
	v, err := s.o.Access.ViewOf(ctx)
	if err != nil || v.All {
		return nil, err
	}
	return v.Projects(), nil
}

// Service manages image repositories and their builds. Safe for concurrent
// use; it keeps no state of its own (every replica can serve every call).
type Service struct {
	o Options
}

// ErrNoRegistry: the server has no registry to push to.
var ErrNoRegistry = errors.New("image builds need a registry: start the server with --registry HOST[:PORT] (RUNNEL_REGISTRY)")

// registryError is a registry credential the server names but that cannot
// be used; it is a server configuration problem like ErrNoRegistry.
type registryError struct{ msg string }

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return ErrNoRegistry }

// registryCredential resolves Options.RegistryCredential to an id.
func (s *Service) registryCredential(ctx context.Context) (string, error) {
	want := s.o.RegistryCredential
	if want == "" {
		return "", nil
	}
	c, err := s.o.Store.GetCredential(ctx, want)
	if err == nil {
		return c.ID, s.checkRegistryCredential(c)
	}
	if !errors.Is(err, runnel.ErrNotFound) {
		return "", err
	}
	all, err := s.o.Store.ListCredentials(ctx, "")
	if err != nil {
		return "", err
	}
	for _, c := range all {
		if c.Name == want {
			return c.ID, s.checkRegistryCredential(c)
		}
	}
	return "", &registryError{msg: fmt.Sprintf("the registry credential %q (--registry-credential) does not exist: create it with POST /api/v1/credentials (kind basic, host %s)", want, s.o.Registry)}
}

func (s *Service) checkRegistryCredential(c *store.Credential) error {
	if c.ProjectID != "" {
		return &registryError{msg: fmt.Sprintf("the registry credential %s (--registry-credential) is limited to project %s: image builds of every namespace use it, so it must not be limited to a project", c.ID, c.ProjectID)}
	}
	if c.Kind == "ssh" {
		return &registryError{msg: fmt.Sprintf("the registry credential %s (--registry-credential) is an SSH key: a registry needs a user name and password or token (kind basic)", c.ID)}
	}
	return nil
}

// New returns a Service.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.GitTimeout <= 0 {
		o.GitTimeout = 60 * time.Second
	}
	return &Service{o: o}
}

// Registry is the registry images are pushed to ("" none).
func (s *Service) Registry() string { return s.o.Registry }

// RepositoryInput creates a repository.
type RepositoryInput struct {
	Namespace       string
	Name            string
	Description     string
	FullDescription string
	IsPublic        bool
	Source          store.ImageSource
	BuildNode       string
	EmailEnabled    bool
	TagConfigs      []TagConfigInput
	CreatedBy       string
}

// Paths of the fields named in errors.
const (
	fieldBuildConfig = "build_config"
	fieldTagConfigs  = "build_config.tag_configs"
)

// CreateRepository validates in and stores the repository with its
// pipeline.
func (s *Service) CreateRepository(ctx context.Context, in RepositoryInput) (*store.ImageRepository, error) {
	if err := CheckNamespace("namespace", in.Namespace); err != nil {
		return nil, err
	}
	if err := CheckRepoName("repo_name", in.Name); err != nil {
		return nil, err
	}
	if err := checkText("description", in.Description, maxDescription, false); err != nil {
		return nil, err
	}
	if err := checkText("full_description", in.FullDescription, maxFullDesc, true); err != nil {
		return nil, err
	}
	if err := checkText(fieldBuildConfig+".build_node", in.BuildNode, 64, false); err != nil {
		return nil, err
	}
	if s.o.Projects != nil {
		if err := s.o.Projects.Ensure(ctx, "namespace", in.Namespace, access.Maintainer, "creating an image repository in namespace "+in.Namespace); err != nil {
			return nil, err
		}
	}
	src := in.Source
	if err := CheckSource(fieldBuildConfig, &src); err != nil {
		return nil, err
	}
	if err := s.checkCredential(ctx, fieldBuildConfig+".code_repo_credential", src.CredentialID, in.Namespace); err != nil {
		return nil, err
	}
	configs, err := CheckTagConfigs(fieldTagConfigs, in.TagConfigs, 0)
	if err != nil {
		return nil, err
	}
	for i, c := range configs {
		if c.ID != 0 {
			return nil, fieldErr(fmt.Sprintf("%s[%d].id", fieldTagConfigs, i), "is assigned by the server: leave it out when creating a repository")
		}
	}
	now := s.o.Clock().UTC()
	full := in.Namespace + "/" + in.Name
	p := &store.Pipeline{
		ID: runnel.NewID("pl"), ProjectID: in.Namespace, Name: "image build " + in.Name,
		Description: "Builds the image " + full + " (managed by the image build service: change it through its build config)",
		Metadata:    map[string]any{ManagedKey: full}, CreatedBy: in.CreatedBy, CreatedAt: now, UpdatedAt: now,
	}
	r := &store.ImageRepository{
		Namespace: in.Namespace, Name: in.Name, Description: in.Description, FullDescription: in.FullDescription,
		IsPublic: in.IsPublic, Source: src, BuildNode: in.BuildNode, EmailEnabled: in.EmailEnabled,
		TagConfigs: configs, CreatedBy: in.CreatedBy, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.o.Store.CreateImageRepository(ctx, r, p); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			if _, gerr := s.o.Store.GetImageRepository(ctx, in.Namespace, in.Name); gerr == nil {
				return nil, fmt.Errorf("image repository %s already exists: %w", full, runnel.ErrConflict)
			}
			return nil, fmt.Errorf("namespace %s already has a pipeline named %q (image repositories keep their builds in one): rename it or choose another repo_name: %w", in.Namespace, p.Name, runnel.ErrConflict)
		}
		return nil, err
	}
	// The definition is saved now so that the pipeline shows it at once; a
	// failure here is repaired by the first build, which saves it too.
	if err := s.ensureSpec(ctx, r); err != nil && !errors.Is(err, ErrNoRegistry) {
		return nil, fmt.Errorf("save the build definition of %s: %w", full, err)
	}
	return r, nil
}

// checkCredential checks that a source credential exists and may be used in
// the namespace's project.
func (s *Service) checkCredential(ctx context.Context, field, id, namespace string) error {
	if id == "" {
		return nil
	}
	c, err := s.o.Store.GetCredential(ctx, id)
	if errors.Is(err, runnel.ErrNotFound) {
		return fieldErr(field, "credential %s does not exist", id)
	}
	if err != nil {
		return err
	}
	if c.ProjectID != "" && c.ProjectID != namespace {
		return fieldErr(field, "credential %s is limited to project %s, not %s", id, c.ProjectID, namespace)
	}
	return nil
}

// GetRepository returns a repository.
func (s *Service) GetRepository(ctx context.Context, namespace, name string) (*store.ImageRepository, error) {
	r, err := s.o.Store.GetImageRepository(ctx, namespace, name)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, notFoundRepo(namespace, name)
	}
	return r, err
}

func notFoundRepo(namespace, name string) error {
	return fmt.Errorf("image repository %s/%s not found: %w", namespace, name, runnel.ErrNotFound)
}

// ListRepositories lists repositories ("" every namespace).
func (s *Service) ListRepositories(ctx context.Context, namespace string) ([]*store.ImageRepository, error) {
	if namespace != "" {
		if err := CheckNamespace("namespace", namespace); err != nil {
			return nil, err
		}
	}
	list, err := s.o.Store.ListImageRepositories(ctx, namespace)
	if err != nil {
		return nil, err
	}
	within, err := s.within(ctx)
	if err != nil || within == nil {
		return list, err
	}
	out := list[:0]
	for _, r := range list {
		if slices.Contains(within, r.Namespace) {
			out = append(out, r)
		}
	}
	return out, nil
}

// UpdateBuildConfig replaces a repository's tag configs (and its build
// node when buildNode is not nil): entries with an id keep it, new ones get
// one, missing ones are removed. Errors name fields under "tag_configs".
func (s *Service) UpdateBuildConfig(ctx context.Context, namespace, name string, buildNode *string, in []TagConfigInput) (*store.ImageRepository, error) {
	r, err := s.GetRepository(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	configs, err := CheckTagConfigs("tag_configs", in, r.ID)
	if err != nil {
		return nil, err
	}
	known := map[int64]bool{}
	var ids []string
	for _, c := range r.TagConfigs {
		known[c.ID] = true
		ids = append(ids, strconv.FormatInt(c.ID, 10))
	}
	for i, c := range configs {
		if c.ID != 0 && !known[c.ID] {
			list := "none"
			if len(ids) > 0 {
				list = strings.Join(ids, ", ")
			}
			return nil, fieldErr(fmt.Sprintf("tag_configs[%d].id", i), "%d is not one of this repository's tag configs (%s); leave id out to add a new one", c.ID, list)
		}
	}
	node := r.BuildNode
	if buildNode != nil {
		if err := checkText("build_node", *buildNode, 64, false); err != nil {
			return nil, err
		}
		node = *buildNode
	}
	updated, err := s.o.Store.UpdateImageBuildConfig(ctx, r.ID, node, configs, s.o.Clock().UTC())
	if err != nil {
		return nil, err
	}
	if err := s.ensureSpec(ctx, updated); err != nil && !errors.Is(err, ErrNoRegistry) {
		return nil, fmt.Errorf("save the build definition of %s/%s: %w", namespace, name, err)
	}
	return updated, nil
}

// DeleteRepository removes a repository with its pipeline and builds; a
// build still active → runnel.ErrConflict.
func (s *Service) DeleteRepository(ctx context.Context, namespace, name string) error {
	r, err := s.GetRepository(ctx, namespace, name)
	if err != nil {
		return err
	}
	if err := s.o.Store.DeletePipeline(ctx, r.PipelineID); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return fmt.Errorf("image repository %s/%s has a build in progress: stop it or wait for it to end: %w", namespace, name, runnel.ErrConflict)
		}
		return err
	}
	return nil
}

// definition is the generated pipeline definition of a repository.
func (s *Service) definition(r *store.ImageRepository, registryCred string) ([]byte, error) {
	if s.o.Registry == "" {
		return nil, ErrNoRegistry
	}
	type variable struct {
		Default     string   `json:"default"`
		Description string   `json:"description,omitempty"`
		Required    bool     `json:"required,omitempty"`
		Options     []string `json:"options,omitempty"`
	}
	checkout := map[string]any{"repo": CloneURL(r.Source), "ref": "${{ variables." + VarCommit + " }}"}
	if r.Source.CredentialID != "" {
		checkout["credential"] = r.Source.CredentialID
	}
	build := map[string]any{
		"dockerfile": "${{ variables." + VarDockerfile + " }}",
		"context":    "${{ variables." + VarContext + " }}",
		"tags":       "${{ variables." + VarTags + " }}",
		"cache":      "${{ variables." + VarCache + " }}",
		"registry":   s.o.Registry,
		"push":       true,
		"labels": map[string]string{
			"org.opencontainers.image.revision": "${{ variables." + VarCommit + " }}",
			"org.opencontainers.image.source":   ShownCloneURL(r.Source),
		},
	}
	if registryCred != "" {
		build["credential"] = registryCred
	}
	def := map[string]any{
		"namespace": r.Namespace + "." + r.Name,
		"version":   "v1",
		"variables": map[string]variable{
			VarTagConfigID:   {Description: "the tag config the build was made from"},
			VarCodeRepoType:  {Default: "branch", Options: []string{"branch", "tag"}, Description: "what the tag config follows"},
			VarCodeRepoValue: {Description: "the branch or tag (or glob) the tag config follows"},
			VarCommit:        {Required: true, Description: "the commit to build"},
			VarTag:           {Required: true, Description: "the image tag"},
			VarVersionTag:    {Description: "the extra version tag (time or commit), if any"},
			VarDockerfileLoc: {Default: "/", Description: "dockerfile_location of the tag config"},
			VarContextPath:   {Default: "/", Description: "build_context_path of the tag config"},
			VarCache:         {Default: "true", Options: []string{"true", "false"}, Description: "use the engine's layer cache"},
			VarDockerfile:    {Default: "Dockerfile", Description: "the Dockerfile, relative to the checkout"},
			VarContext:       {Default: ".", Description: "the build context, relative to the checkout"},
			VarTags:          {Required: true, Description: "the image references pushed"},
		},
		"stages": []any{map[string]any{
			"name": "build",
			"jobs": []any{map[string]any{
				"name": "image",
				"outputs": map[string]string{
					buildJobOutputDig: "${{ steps.image.outputs.digest }}",
					"image_id":        "${{ steps.image.outputs.imageId }}",
					"commit":          "${{ steps.checkout.outputs.commit }}",
				},
				"steps": []any{
					map[string]any{"name": "checkout", "uses": "actions/git-checkout@v1", "args": checkout},
					map[string]any{"name": "image", "uses": "actions/docker-build@v1", "args": build},
				},
			}},
		}},
	}
	return json.Marshal(def)
}

// ensureSpec saves the repository's generated definition as its pipeline's
// head unless the head already is that definition.
func (s *Service) ensureSpec(ctx context.Context, r *store.ImageRepository) error {
	if s.o.Registry == "" {
		return ErrNoRegistry
	}
	cred, err := s.registryCredential(ctx)
	if err != nil {
		return err
	}
	text, err := s.definition(r, cred)
	if err != nil {
		return err
	}
	def, err := spec.Parse(text, spec.Options{File: "image build definition", Catalog: s.o.Catalog})
	if err != nil {
		return fmt.Errorf("the generated definition is not valid (a bug): %w", err)
	}
	canonical, sha, err := spec.Canonical(def)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		p, err := s.o.Store.GetPipeline(ctx, r.PipelineID)
		if err != nil {
			return err
		}
		if p.HeadVersion > 0 && p.HeadCommitSHA == sha {
			return nil
		}
		_, _, err = s.o.Store.SaveSpec(ctx, &store.SpecVersion{
			PipelineID: r.PipelineID, CommitSHA: sha, Spec: canonical, Format: "json",
			CommitMessage: "build config of image repository " + r.Namespace + "/" + r.Name,
			Editor:        "runnel", CreatedAt: s.o.Clock().UTC(),
		}, p.HeadCommitSHA)
		var head *store.HeadConflictError
		if errors.As(err, &head) && attempt < 3 {
			continue // another replica saved meanwhile: look again
		}
		return err
	}
}

// BuildRequest triggers a build by hand.
type BuildRequest struct {
	Namespace string
	RepoName  string
	// Tag is the docker_repo_tag of the tag config to build.
	Tag string
	// Commit to build (full id); "" builds the head of the config's branch
	// or its tag.
	Commit string
	By     string
	// RequestID makes the trigger idempotent ("" none).
	RequestID string
}

var commitPattern = func(v string) bool {
	if len(v) != 40 && len(v) != 64 {
		return false
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// TriggerBuild starts a build of one tag config.
func (s *Service) TriggerBuild(ctx context.Context, req BuildRequest) (*Build, error) {
	if err := CheckNamespace("namespace", req.Namespace); err != nil {
		return nil, err
	}
	if err := CheckRepoName("repo_name", req.RepoName); err != nil {
		return nil, err
	}
	if req.Tag == "" {
		return nil, fieldErr("tag", "required: the docker_repo_tag of the tag config to build")
	}
	if req.Commit != "" && !commitPattern(strings.ToLower(req.Commit)) {
		return nil, fieldErr("code_commit_id", "must be a full commit id (40 or 64 hexadecimal digits), got %q", req.Commit)
	}
	req.Commit = strings.ToLower(req.Commit)
	if s.o.Access != nil {
		if err := s.o.Access.Require(ctx, req.Namespace, access.Developer, access.Target{Noun: "image repository", ID: req.Namespace + "/" + req.RepoName}, "building an image of namespace "+req.Namespace); err != nil {
			return nil, err
		}
	}
	if s.o.Registry == "" {
		return nil, ErrNoRegistry
	}
	r, err := s.GetRepository(ctx, req.Namespace, req.RepoName)
	if err != nil {
		return nil, err
	}
	var tc *store.ImageTagConfig
	var tags []string
	for _, c := range r.TagConfigs {
		tags = append(tags, c.DockerRepoTag)
		if c.DockerRepoTag == req.Tag {
			tc = c
		}
	}
	if tc == nil {
		return nil, fmt.Errorf("tag: image repository %s/%s has no tag config for tag %q (its tags: %s): %w",
			r.Namespace, r.Name, req.Tag, strings.Join(tags, ", "), runnel.ErrNotFound)
	}
	t := runnel.Trigger{}
	if req.Commit != "" {
		t.Commit = req.Commit
		if !IsPattern(tc.CodeRepoTypeValue) {
			setRef(&t, tc.CodeRepoType, tc.CodeRepoTypeValue)
		}
	} else {
		if IsPattern(tc.CodeRepoTypeValue) {
			return nil, fieldErr("code_commit_id", "required for tag %q: its tag config follows the %s pattern %q, so there is no single %s to build; name the commit",
				req.Tag, tc.CodeRepoType, tc.CodeRepoTypeValue, tc.CodeRepoType)
		}
		setRef(&t, tc.CodeRepoType, tc.CodeRepoTypeValue)
		sha, err := s.resolve(ctx, r, t.Ref)
		if err != nil {
			return nil, err
		}
		t.Commit = sha
	}
	return s.start(ctx, r, tc, t, runnel.TriggerManual, req.By, req.RequestID)
}

func setRef(t *runnel.Trigger, kind, name string) {
	if kind == "tag" {
		t.Ref, t.Tag = "refs/tags/"+name, name
	} else {
		t.Ref, t.Branch = "refs/heads/"+name, name
	}
}

// ResolveError is a branch or tag that could not be resolved in the source
// repository: the repository answered (not found, access refused) or did
// not (unreachable). NotFound tells which.
type ResolveError struct {
	Err      error
	NotFound bool
	Access   bool
}

func (e *ResolveError) Error() string { return e.Err.Error() }
func (e *ResolveError) Unwrap() error { return e.Err }

// resolve finds the commit a ref of the repository's source points at.
func (s *Service) resolve(ctx context.Context, r *store.ImageRepository, ref string) (string, error) {
	repo := gitdef.Repo{URL: CloneURL(r.Source)}
	if r.Source.CredentialID != "" {
		if s.o.Credentials == nil {
			return "", &ResolveError{Err: fmt.Errorf("credential %s: this server cannot open credentials (no secrets key configured)", r.Source.CredentialID), Access: true}
		}
		c, err := s.o.Credentials(ctx, r.PipelineID, r.Source.CredentialID)
		if err != nil {
			return "", &ResolveError{Err: err, Access: true}
		}
		repo.Credential = c
	}
	rctx, cancel := context.WithTimeout(ctx, s.o.GitTimeout)
	defer cancel()
	sha, err := repo.Resolve(rctx, ref)
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("resolving %s of %s: no answer within %s", ref, ShownCloneURL(r.Source), s.o.GitTimeout)
		}
		return "", &ResolveError{Err: err, NotFound: errors.Is(err, gitdef.ErrNotFound), Access: errors.Is(err, gitdef.ErrAccess)}
	}
	return sha, nil
}

// VersionTag is the extra tag a build pushes ("" none): a time tag
// vYYYYMMDD.hhmmss (UTC) or the commit id.
func VersionTag(mode int, created time.Time, commit string) string {
	switch mode {
	case VersionTagTime:
		return "v" + created.UTC().Format("20060102.150405")
	case VersionTagCommit:
		return commit
	}
	return ""
}

// start triggers the run of one build.
func (s *Service) start(ctx context.Context, r *store.ImageRepository, tc *store.ImageTagConfig, t runnel.Trigger, typ, by, requestID string) (*Build, error) {
	if err := s.ensureSpec(ctx, r); err != nil {
		return nil, err
	}
	now := s.o.Clock().UTC()
	version := VersionTag(tc.VersionTagging, now, t.Commit)
	image := r.Namespace + "/" + r.Name
	refs := []string{image + ":" + tc.DockerRepoTag}
	if version != "" && version != tc.DockerRepoTag {
		refs = append(refs, image+":"+version)
	}
	vars := map[string]string{
		VarTagConfigID:   strconv.FormatInt(tc.ID, 10),
		VarCodeRepoType:  tc.CodeRepoType,
		VarCodeRepoValue: tc.CodeRepoTypeValue,
		VarCommit:        t.Commit,
		VarTag:           tc.DockerRepoTag,
		VarVersionTag:    version,
		VarDockerfileLoc: tc.DockerfileLocation,
		VarContextPath:   tc.BuildContextPath,
		VarCache:         strconv.FormatBool(tc.BuildCacheEnabled),
		VarDockerfile:    DockerfilePath(tc.DockerfileLocation),
		VarContext:       ContextPath(tc.BuildContextPath),
		VarTags:          strings.Join(refs, " "),
	}
	run, _, err := s.o.Runs.Trigger(ctx, r.PipelineID, runnel.TriggerRequest{
		Variables: vars, TriggeredBy: by, RequestID: requestID, TriggerType: typ, Trigger: &t,
	})
	if err != nil {
		return nil, err
	}
	return s.buildOf(ctx, r, run)
}

// PushResult is what a webhook delivery to a repository's pipeline did.
type PushResult struct {
	// Builds started (or found again, for a redelivery).
	Builds []*Build
	// Reason says why nothing was built.
	Reason string
}

// Push handles a verified push delivered to pipeline pipelineID's webhook
// URL. managed is false when the pipeline is not an image repository's (the
// caller handles the delivery as any pipeline's). Every active tag config
// whose branch or tag matches starts a build; a redelivery (same provider
// and delivery id) starts none again.
func (s *Service) Push(ctx context.Context, pipelineID string, ev *webhook.Event, provider, deliveryID string) (res *PushResult, managed bool, err error) {
	r, err := s.o.Store.ImageRepositoryByPipeline(ctx, pipelineID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	t := ev.Trigger
	kind, name := "branch", t.Branch
	switch {
	case t.PullRequest.Number != 0 || ev.Kind == "pull_request":
		return &PushResult{Reason: "image builds follow pushes of branches and tags; pull requests build nothing"}, true, nil
	case t.Tag != "":
		kind, name = "tag", t.Tag
	case t.Branch == "":
		return &PushResult{Reason: "the event names no branch or tag"}, true, nil
	}
	if t.Commit == "" {
		return &PushResult{Reason: "the event names no commit"}, true, nil
	}
	res = &PushResult{}
	var inactive []string
	for _, tc := range r.TagConfigs {
		if tc.CodeRepoType != kind {
			continue
		}
		if ok, _ := doublestar.Match(tc.CodeRepoTypeValue, name); !ok {
			continue
		}
		if !tc.IsActive {
			inactive = append(inactive, tc.DockerRepoTag)
			continue
		}
		bt := runnel.Trigger{Commit: t.Commit, Provider: t.Provider, Actor: t.Actor, Author: t.Author, Message: t.Message,
			Before: t.Before, After: t.After, Event: t.Event}
		setRef(&bt, kind, name)
		b, err := s.start(ctx, r, tc, bt, runnel.TriggerEvent, "webhook:"+provider,
			fmt.Sprintf("webhook:%s:%s:%d", provider, deliveryID, tc.ID))
		if err != nil {
			return nil, true, fmt.Errorf("build tag %s of %s/%s: %w", tc.DockerRepoTag, r.Namespace, r.Name, err)
		}
		res.Builds = append(res.Builds, b)
	}
	if len(res.Builds) == 0 {
		res.Reason = fmt.Sprintf("no active tag config of %s/%s follows %s %q", r.Namespace, r.Name, kind, name)
		if len(inactive) > 0 {
			res.Reason += fmt.Sprintf(" (tags %s follow it but are not active: set is_active to build on push)", strings.Join(inactive, ", "))
		}
	}
	return res, true, nil
}

// Build is an image build as both APIs show it.
type Build struct {
	ID         string // the run's id
	PipelineID string
	RunNumber  int64
	Repository *store.ImageRepository
	// TagConfigID is the config it was made from (0 unknown).
	TagConfigID        int64
	CodeRepoType       string
	CodeRepoTypeValue  string
	Commit             string
	CreatedBy          string
	AutoCreated        bool
	ImageID            string // the pushed digest ("" not pushed)
	DockerRepoTag      string
	DockerRepoVersion  string
	DockerfileLocation string
	BuildContextPath   string
	BuildCacheEnabled  bool
	// Status is the seed's letter: W B S F C.
	Status string
	// RunStatus is the run's status.
	RunStatus string
	Detail    string
	StepAt    int
	CreatedAt time.Time
	StartedAt *time.Time
	EndedAt   *time.Time
	// Steps are the build's steps, in order (for logs).
	Steps []*store.StepRun
}

// Image is the pushed image's name with the registry.
func (b *Build) Image(registry string) string {
	if registry == "" {
		return b.Repository.Namespace + "/" + b.Repository.Name
	}
	return registry + "/" + b.Repository.Namespace + "/" + b.Repository.Name
}

// Removable: the build can still be stopped (it has not ended).
func (b *Build) Removable() bool { return b.Status == StatusWaiting || b.Status == StatusBuilding }

// The seed's status letters.
const (
	StatusWaiting   = "W"
	StatusBuilding  = "B"
	StatusSuccess   = "S"
	StatusFailed    = "F"
	StatusCancelled = "C"
)

// StatusLetter maps a run's status to the seed's letter: pending → W,
// running → B, success and partial → S, failed → F, cancelled → C; a paused
// run is B once started, W before.
func StatusLetter(status string, started bool) string {
	switch runnel.RunStatus(status) {
	case runnel.RunRunning:
		return StatusBuilding
	case runnel.RunSuccess, runnel.RunPartial:
		return StatusSuccess
	case runnel.RunFailed:
		return StatusFailed
	case runnel.RunCancelled:
		return StatusCancelled
	case runnel.RunPaused:
		if started {
			return StatusBuilding
		}
	}
	return StatusWaiting
}

// buildOf reads a build from its run.
func (s *Service) buildOf(ctx context.Context, r *store.ImageRepository, run *store.Run) (*Build, error) {
	tree, err := s.o.Store.GetRunTree(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	return buildFrom(r, tree), nil
}

func buildFrom(r *store.ImageRepository, tree *store.RunTree) *Build {
	run := tree.Run
	v := run.Variables
	b := &Build{
		ID: run.ID, PipelineID: run.PipelineID, RunNumber: run.Number, Repository: r,
		CodeRepoType: v[VarCodeRepoType], CodeRepoTypeValue: v[VarCodeRepoValue], Commit: v[VarCommit],
		CreatedBy: run.TriggeredBy, AutoCreated: run.TriggerType == runnel.TriggerEvent || run.TriggerType == runnel.TriggerCron,
		DockerRepoTag: v[VarTag], DockerRepoVersion: v[VarVersionTag], DockerfileLocation: v[VarDockerfileLoc],
		BuildContextPath: v[VarContextPath], BuildCacheEnabled: v[VarCache] != "false",
		RunStatus: string(run.Status), CreatedAt: run.CreatedAt, EndedAt: run.EndedAt,
	}
	b.TagConfigID, _ = strconv.ParseInt(v[VarTagConfigID], 10, 64)
	if b.Commit == "" {
		b.Commit = run.Commit
	}
	// The run is running as soon as it is planned; the build only once an
	// agent took its job (a claim it acknowledged, or one that ended).
	var started *time.Time
	for _, j := range tree.Jobs {
		if j.StartedAt != nil && (j.Acked || (j.Status != runnel.JobRunning && j.Status != runnel.JobQueued && j.Status != runnel.JobPending)) {
			if started == nil || j.StartedAt.Before(*started) {
				started = j.StartedAt
			}
		}
	}
	b.StartedAt = started
	status := run.Status
	if status == runnel.RunRunning && started == nil {
		status = runnel.RunPending
	}
	b.Status = StatusLetter(string(status), started != nil)
	total, at := 0, 0
	var failure string
	for _, j := range tree.Jobs {
		if d := j.Outputs[buildJobOutputDig]; d != "" {
			b.ImageID = d
		}
		if c := j.Outputs["commit"]; c != "" && b.Commit == "" {
			b.Commit = c
		}
		for _, st := range tree.Steps[j.ID] {
			b.Steps = append(b.Steps, st)
			total++
			if st.Status != runnel.StepPending && st.Status != runnel.StepQueued {
				at = total
			}
			if failure == "" && (st.Status == runnel.StepFailed || st.Status == runnel.StepTimeout) {
				failure = st.Name + ": " + st.Error
				if st.Error == "" {
					failure = fmt.Sprintf("step %s failed", st.Name)
					if st.ExitCode != nil {
						failure += fmt.Sprintf(" with exit code %d", *st.ExitCode)
					}
				}
			}
		}
		if failure == "" && j.Status == runnel.JobFailed && j.Reason != "" {
			failure = j.Reason
		}
	}
	b.StepAt = max(at, 1)
	switch b.Status {
	case StatusWaiting:
		b.Detail = "build request was created."
		if len(tree.Jobs) > 0 && tree.Jobs[0].Reason != "" {
			b.Detail += " " + tree.Jobs[0].Reason
		}
	case StatusBuilding:
		b.Detail = "building"
		if b.StepAt > 0 && b.StepAt <= len(b.Steps) {
			b.Detail += ": " + b.Steps[b.StepAt-1].Name
		}
	case StatusSuccess:
		b.Detail = "build succeeded."
	case StatusFailed:
		b.Detail = "build failed"
		switch {
		case run.Reason != "":
			b.Detail += ": " + run.Reason
		case failure != "":
			b.Detail += ": " + failure
		}
	case StatusCancelled:
		b.Detail = "build was cancelled"
		if run.Reason != "" {
			b.Detail += ": " + run.Reason
		}
	}
	return b
}

// GetBuild returns a build by id (the run's id); a run that is not an image
// build is not found.
func (s *Service) GetBuild(ctx context.Context, id string) (*Build, error) {
	tree, err := s.o.Store.GetRunTree(ctx, id)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, fmt.Errorf("build %s not found: %w", id, runnel.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	r, err := s.o.Store.ImageRepositoryByPipeline(ctx, tree.Run.PipelineID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, fmt.Errorf("build %s not found (run %s is not an image build): %w", id, id, runnel.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return buildFrom(r, tree), nil
}

// ListBuilds lists builds newest first, with the number matching in all.
// An unknown namespace or repository (when named) → runnel.ErrNotFound.
func (s *Service) ListBuilds(ctx context.Context, f store.ImageBuildFilter) ([]*Build, int, error) {
	if f.Namespace != "" {
		if err := CheckNamespace("namespace", f.Namespace); err != nil {
			return nil, 0, err
		}
	}
	if f.RepoName != "" {
		if err := CheckRepoName("repo_name", f.RepoName); err != nil {
			return nil, 0, err
		}
	}
	within, err := s.within(ctx)
	if err != nil {
		return nil, 0, err
	}
	if within != nil {
		if f.Namespace != "" && !slices.Contains(within, f.Namespace) {
			return nil, 0, fmt.Errorf("namespace %s has no image repositories: %w", f.Namespace, runnel.ErrNotFound)
		}
		f.Within = within
	}
	repos := map[int64]*store.ImageRepository{}
	switch {
	case f.Namespace != "" && f.RepoName != "":
		r, err := s.GetRepository(ctx, f.Namespace, f.RepoName)
		if err != nil {
			return nil, 0, err
		}
		repos[r.ID] = r
	case f.Namespace != "" || f.RepoName != "":
		list, err := s.o.Store.ListImageRepositories(ctx, f.Namespace)
		if err != nil {
			return nil, 0, err
		}
		n := 0
		for _, r := range list {
			if f.RepoName == "" || r.Name == f.RepoName {
				repos[r.ID] = r
				n++
			}
		}
		if n == 0 {
			if f.RepoName == "" {
				return nil, 0, fmt.Errorf("namespace %s has no image repositories: %w", f.Namespace, runnel.ErrNotFound)
			}
			return nil, 0, fmt.Errorf("no image repository is named %s: %w", f.RepoName, runnel.ErrNotFound)
		}
	}
	runs, total, err := s.o.Store.ListImageBuilds(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	out := make([]*Build, 0, len(runs))
	for _, br := range runs {
		r := repos[br.RepositoryID]
		if r == nil {
			if r, err = s.o.Store.GetImageRepository(ctx, br.Namespace, br.RepoName); err != nil {
				return nil, 0, err
			}
			repos[r.ID] = r
		}
		b, err := s.buildOf(ctx, r, br.Run)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, b)
	}
	return out, total, nil
}

// MaxLogLines bounds one build log answer.
const MaxLogLines = 100_000

// LogLine is a line of a build's log and the step that wrote it.
type LogLine struct {
	Step *store.StepRun
	store.LogLine
}

// BuildLogs returns a build's log lines, every step's in order, whose time
// is within [start, end] (zero: no bound), at most MaxLogLines.
func (s *Service) BuildLogs(ctx context.Context, id string, start, end time.Time) ([]LogLine, error) {
	b, err := s.GetBuild(ctx, id)
	if err != nil {
		return nil, err
	}
	const page = 5000
	var out []LogLine
	for _, st := range b.Steps {
		var after int64
		for {
			lines, err := s.o.Store.ListLogs(ctx, st.ID, store.LogQuery{AfterSeq: after, Start: start, End: end, Limit: page})
			if err != nil {
				return nil, fmt.Errorf("list logs of step run %s: %w", st.ID, err)
			}
			for _, l := range lines {
				out = append(out, LogLine{Step: st, LogLine: l})
			}
			if len(out) >= MaxLogLines {
				return out[:MaxLogLines], nil
			}
			if len(lines) < page {
				break
			}
			after = lines[len(lines)-1].Seq
		}
	}
	return out, nil
}

// SkipManaged wraps a definition source so that image repositories'
// pipelines always run their stored (generated) definition: neither a
// configuration extension nor a repository file replaces it.
func SkipManaged(next scheduler.DefinitionSource) scheduler.DefinitionSource {
	return skipManaged{next}
}

type skipManaged struct{ next scheduler.DefinitionSource }

func (s skipManaged) Definition(ctx context.Context, p *store.Pipeline, t runnel.Trigger, vars map[string]string) (*store.RunDefinition, error) {
	if _, ok := p.Metadata[ManagedKey]; ok {
		return nil, nil
	}
	return s.next.Definition(ctx, p, t, vars)
}

// Managed reports whether a pipeline is an image repository's, and whose.
func Managed(p *store.Pipeline) (string, bool) {
	v, ok := p.Metadata[ManagedKey].(string)
	return v, ok
}

// RouteDelivery is Push for the webhook service: the runs of the builds a
// delivery started, or why none.
func (s *Service) RouteDelivery(ctx context.Context, pipelineID string, ev *webhook.Event, provider, deliveryID string) ([]webhook.Run, string, bool, error) {
	res, managed, err := s.Push(ctx, pipelineID, ev, provider, deliveryID)
	if err != nil || !managed {
		return nil, "", managed, err
	}
	runs := make([]webhook.Run, 0, len(res.Builds))
	for _, b := range res.Builds {
		runs = append(runs, webhook.Run{ID: b.ID, Number: b.RunNumber})
	}
	return runs, res.Reason, true, nil
}
