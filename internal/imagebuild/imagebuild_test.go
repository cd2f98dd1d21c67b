package imagebuild

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func ptr[T any](v T) *T { return &v }

func TestCheckTagConfigs(t *testing.T) {
	ok := TagConfigInput{CodeRepoType: "branch", CodeRepoTypeValue: "master", DockerRepoTag: "latest"}
	with := func(f func(*TagConfigInput)) TagConfigInput { c := ok; f(&c); return c }
	tests := []struct {
		name string
		in   []TagConfigInput
		bcID int64
		err  string // "" ok; else the error must contain it
	}{
		{"defaults", []TagConfigInput{ok}, 0, ""},
		{"none", nil, 0, "build_config.tag_configs: at least one tag config is required"},
		{"no type", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoType = "" })}, 0, "tag_configs[0].code_repo_type: required: branch or tag"},
		{"bad type", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoType = "commit" })}, 0, `tag_configs[0].code_repo_type: must be branch or tag, got "commit"`},
		{"no value", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoTypeValue = "" })}, 0, "tag_configs[0].code_repo_type_value: required"},
		{"refs value", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoTypeValue = "refs/heads/main" })}, 0, "without refs/"},
		{"dotdot value", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoTypeValue = "a..b" })}, 0, "code_repo_type_value: must be a valid branch name"},
		{"bad glob", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoTypeValue = "release/[" })}, 0, "is not a valid glob"},
		{"glob", []TagConfigInput{with(func(c *TagConfigInput) { c.CodeRepoTypeValue = "release/**" })}, 0, ""},
		{"no tag", []TagConfigInput{with(func(c *TagConfigInput) { c.DockerRepoTag = "" })}, 0, "tag_configs[0].docker_repo_tag: required"},
		{"bad tag", []TagConfigInput{with(func(c *TagConfigInput) { c.DockerRepoTag = ".hidden" })}, 0, "docker_repo_tag: must be an image tag"},
		{"long tag", []TagConfigInput{with(func(c *TagConfigInput) { c.DockerRepoTag = strings.Repeat("a", 129) })}, 0, "docker_repo_tag: must be an image tag"},
		{"dup tag", []TagConfigInput{ok, ok}, 0, `tag_configs[1].docker_repo_tag: "latest" is already built by build_config.tag_configs[0]`},
		{"version 3", []TagConfigInput{with(func(c *TagConfigInput) { c.VersionTagging = ptr(3) })}, 0, "tag_configs[0].version_tagging: must be 0"},
		{"escape", []TagConfigInput{with(func(c *TagConfigInput) { c.DockerfileLocation = "/../etc" })}, 0, "dockerfile_location: must stay inside the repository"},
		{"ctx ctrl", []TagConfigInput{with(func(c *TagConfigInput) { c.BuildContextPath = "/a\nb" })}, 0, "build_context_path: must be a path"},
		{"dup id", []TagConfigInput{with(func(c *TagConfigInput) { c.ID = 4 }), with(func(c *TagConfigInput) { c.ID = 4; c.DockerRepoTag = "x" })}, 3, "tag_configs[1].id: tag config 4 is listed twice"},
		{"bc id on create", []TagConfigInput{with(func(c *TagConfigInput) { c.BuildConfigID = 9 })}, 0, "docker_build_config_id: is assigned by the server"},
		{"bc id mismatch", []TagConfigInput{with(func(c *TagConfigInput) { c.BuildConfigID = 9 })}, 3, "must be this repository's build config id 3"},
		{"bc id match", []TagConfigInput{with(func(c *TagConfigInput) { c.BuildConfigID = 3 })}, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := CheckTagConfigs("build_config.tag_configs", tt.in, tt.bcID)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(out) != len(tt.in) {
					t.Fatalf("got %d configs", len(out))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want it to contain %q", err, tt.err)
			}
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
	out, _ := CheckTagConfigs("x", []TagConfigInput{ok}, 0)
	if c := out[0]; c.DockerfileLocation != "/" || c.BuildContextPath != "/" || !c.BuildCacheEnabled || c.VersionTagging != 0 || c.IsActive {
		t.Fatalf("defaults: %+v", c)
	}
	out, _ = CheckTagConfigs("x", []TagConfigInput{with(func(c *TagConfigInput) {
		c.DockerfileLocation, c.BuildContextPath, c.BuildCacheEnabled = "docker/", "/./app//", ptr(false)
	})}, 0)
	if c := out[0]; c.DockerfileLocation != "/docker" || c.BuildContextPath != "/app" || c.BuildCacheEnabled {
		t.Fatalf("normalised: %+v", c)
	}
}

func TestCheckSource(t *testing.T) {
	tests := []struct {
		name string
		in   store.ImageSource
		err  string
		want string // clone URL
	}{
		{"github", store.ImageSource{Client: "GitHub", Namespace: "o", Name: "r.git"}, "", "https://github.com/o/r.git"},
		{"gitlab subgroup", store.ImageSource{Client: "GitLab", Namespace: "g/sub", Name: "r"}, "", "https://gitlab.com/g/sub/r.git"},
		{"gitea host", store.ImageSource{Client: "Gitea", Namespace: "o", Name: "r", Host: "Git.Example.com:3000"}, "", "https://git.example.com:3000/o/r.git"},
		{"gitea no host", store.ImageSource{Client: "Gitea", Namespace: "o", Name: "r"}, "build_config.code_repo_host: required with code_repo_client Gitea", ""},
		{"simple", store.ImageSource{Client: "Simple", CloneURL: "http://git.example.com/a.git"}, "", "http://git.example.com/a.git"},
		{"simple no url", store.ImageSource{Client: "Simple"}, "build_config.code_repo_clone_url: required with code_repo_client Simple", ""},
		{"simple ns", store.ImageSource{Client: "Simple", CloneURL: "http://h/a.git", Namespace: "x"}, "build_config.code_repo_namespace: not used", ""},
		{"simple password", store.ImageSource{Client: "Simple", CloneURL: "https://u:p@h/a.git"}, "must not carry a password", ""},
		{"simple file", store.ImageSource{Client: "Simple", CloneURL: "file:///etc"}, "must be an http(s):// or ssh:// repository URL", ""},
		{"simple ftp", store.ImageSource{Client: "Simple", CloneURL: "ftp://h/x"}, "got scheme \"ftp\"", ""},
		{"forge url", store.ImageSource{Client: "GitHub", Namespace: "o", Name: "r", CloneURL: "https://x"}, "code_repo_clone_url: only used with code_repo_client Simple", ""},
		{"forge no ns", store.ImageSource{Client: "GitHub", Name: "r"}, "code_repo_namespace: required", ""},
		{"forge bad name", store.ImageSource{Client: "GitHub", Namespace: "o", Name: "a/b"}, "code_repo_name: must be a repository name", ""},
		{"oschina", store.ImageSource{Client: "OSChina"}, `code_repo_client: "OSChina" is not supported; accepted: GitHub, Bitbucket, GitLab, Gitea, Simple`, ""},
		{"no client", store.ImageSource{}, "code_repo_client: required", ""},
		{"bad credential", store.ImageSource{Client: "GitHub", Namespace: "o", Name: "r", CredentialID: "x"}, "code_repo_credential: must be a credential id", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.in
			err := CheckSource("build_config", &s)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := CloneURL(s); got != tt.want {
				t.Fatalf("clone URL %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSourceURLs(t *testing.T) {
	sha := "552819d5c903472a36696e8ac620ac250e49829d"
	tests := []struct {
		src                       store.ImageSource
		path, web, commit, branch string
	}{
		{store.ImageSource{Client: "Bitbucket", Namespace: "alauda", Name: "buildtest"}, "alauda/buildtest", "https://bitbucket.org/alauda/buildtest",
			"https://bitbucket.org/alauda/buildtest/commits/" + sha, "https://bitbucket.org/alauda/buildtest/branch/master"},
		{store.ImageSource{Client: "GitHub", Namespace: "o", Name: "r"}, "o/r", "https://github.com/o/r", "https://github.com/o/r/commit/" + sha, "https://github.com/o/r/tree/master"},
		{store.ImageSource{Client: "GitLab", Namespace: "o", Name: "r"}, "o/r", "https://gitlab.com/o/r", "https://gitlab.com/o/r/-/commit/" + sha, "https://gitlab.com/o/r/-/tree/master"},
		{store.ImageSource{Client: "Gitea", Namespace: "o", Name: "r", Host: "g.example"}, "o/r", "https://g.example/o/r", "https://g.example/o/r/commit/" + sha, "https://g.example/o/r/src/branch/master"},
		{store.ImageSource{Client: "Simple", CloneURL: "https://bot@git.example.com/team/app.git"}, "git.example.com/team/app", "", "", ""},
	}
	for _, tt := range tests {
		if got := RepoPath(tt.src); got != tt.path {
			t.Errorf("%s: path %s, want %s", tt.src.Client, got, tt.path)
		}
		if got := WebURL(tt.src); got != tt.web {
			t.Errorf("%s: web %s, want %s", tt.src.Client, got, tt.web)
		}
		if got := CommitURL(tt.src, sha); got != tt.commit {
			t.Errorf("%s: commit %s, want %s", tt.src.Client, got, tt.commit)
		}
		if got := RefURL(tt.src, "branch", "master"); got != tt.branch {
			t.Errorf("%s: branch %s, want %s", tt.src.Client, got, tt.branch)
		}
	}
	if got := ShownCloneURL(store.ImageSource{Client: "Simple", CloneURL: "https://bot@git.example.com/a.git"}); strings.Contains(got, "bot") {
		t.Errorf("shown clone URL keeps the user: %s", got)
	}
	if RefURL(store.ImageSource{Client: "GitHub", Namespace: "o", Name: "r"}, "branch", "release/*") != "" {
		t.Error("a glob has no page")
	}
}

func TestNames(t *testing.T) {
	for _, v := range []string{"alauda", "a", "team-1", "a.b", "a__b", "docker_images_test"} {
		if CheckNamespace("namespace", v) != nil || CheckRepoName("repo_name", v) != nil {
			t.Errorf("%q should be accepted", v)
		}
	}
	for _, v := range []string{"", "Upper", "-a", "a-", "a..b", "a/b", "a b", strings.Repeat("a", 65)} {
		if CheckNamespace("namespace", v) == nil {
			t.Errorf("namespace %q should be refused", v)
		}
	}
	for _, v := range []string{"127.0.0.1:5000", "registry.example.com", "localhost", "localhost:5000", "r.example.com:443", "[::1]:5000"} {
		if err := CheckRegistry(v); err != nil {
			t.Errorf("registry %q: %v", v, err)
		}
	}
	for _, v := range []string{"", "myregistry", "https://r.example.com", "r.example.com/path", "r example.com"} {
		if CheckRegistry(v) == nil {
			t.Errorf("registry %q should be refused", v)
		}
	}
}

func TestPaths(t *testing.T) {
	for in, want := range map[string]string{
		"/": "Dockerfile", "/aa": "aa/Dockerfile", "/docker/": "docker/Dockerfile", "/Dockerfile": "Dockerfile",
		"/build/app.Dockerfile": "build/app.Dockerfile", "/x/Dockerfile.prod": "x/Dockerfile.prod",
	} {
		if got := DockerfilePath(in); got != want {
			t.Errorf("DockerfilePath(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"/": ".", "/aa": "aa", "/a/b": "a/b"} {
		if got := ContextPath(in); got != want {
			t.Errorf("ContextPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVersionTagAndStatus(t *testing.T) {
	at := time.Date(2015, 9, 2, 16, 17, 42, 581e6, time.FixedZone("CST", 8*3600))
	if got := VersionTag(VersionTagTime, at, "abc"); got != "v20150902.081742" {
		t.Errorf("time tag %s (the seed's example: v20150902.081742 in UTC)", got)
	}
	if VersionTag(VersionTagCommit, at, "abc") != "abc" || VersionTag(VersionTagNone, at, "abc") != "" {
		t.Error("commit / none tags")
	}
	for _, tt := range []struct {
		status  string
		started bool
		want    string
	}{
		{"pending", false, "W"}, {"running", true, "B"}, {"success", true, "S"}, {"partial", true, "S"},
		{"failed", true, "F"}, {"failed", false, "F"}, {"cancelled", false, "C"}, {"paused", false, "W"}, {"paused", true, "B"},
	} {
		if got := StatusLetter(tt.status, tt.started); got != tt.want {
			t.Errorf("StatusLetter(%s, %v) = %s, want %s", tt.status, tt.started, got, tt.want)
		}
	}
}

func TestBuildFromRun(t *testing.T) {
	repo := &store.ImageRepository{ID: 3, Namespace: "alauda", Name: "app", Source: store.ImageSource{Client: "GitHub", Namespace: "o", Name: "r"}}
	started := time.Now()
	code := 2
	tree := &store.RunTree{
		Run: &store.Run{ID: "run_x", PipelineID: "pl_x", Number: 4, Status: "failed", TriggerType: "event", TriggeredBy: "webhook:github",
			StartedAt: &started, Variables: map[string]string{VarTagConfigID: "7", VarTag: "latest", VarVersionTag: "v1", VarCommit: "abc",
				VarCache: "false", VarCodeRepoType: "branch", VarCodeRepoValue: "main", VarDockerfileLoc: "/", VarContextPath: "/"}},
		Jobs: []*store.JobRun{{ID: "jr_1", Status: "failed"}},
		Steps: map[string][]*store.StepRun{"jr_1": {
			{ID: "sr_1", Name: "checkout", Status: "success"},
			{ID: "sr_2", Name: "image", Status: "failed", ExitCode: &code},
		}},
	}
	b := buildFrom(repo, tree)
	if b.Status != "F" || b.TagConfigID != 7 || !b.AutoCreated || b.BuildCacheEnabled || b.StepAt != 2 || b.Removable() ||
		b.Detail != "build failed: step image failed with exit code 2" || b.ImageID != "" {
		t.Fatalf("build %+v", b)
	}
	tree.Run.Status = "success"
	tree.Jobs[0].Status, tree.Jobs[0].Outputs = "success", map[string]string{"digest": "sha256:abc"}
	tree.Steps["jr_1"][1].Status = "success"
	if b = buildFrom(repo, tree); b.Status != "S" || b.ImageID != "sha256:abc" || b.Detail != "build succeeded." {
		t.Fatalf("build %+v", b)
	}
	tree.Run.Status, tree.Run.StartedAt = "pending", nil
	tree.Jobs[0].Status, tree.Jobs[0].Outputs, tree.Jobs[0].Reason = "queued", nil, "no agent online"
	for _, st := range tree.Steps["jr_1"] {
		st.Status = "pending"
	}
	if b = buildFrom(repo, tree); b.Status != "W" || b.StepAt != 1 || !b.Removable() || !strings.Contains(b.Detail, "no agent online") {
		t.Fatalf("build %+v", b)
	}
}
