package action

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/client"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/testdocker"
	"github.com/runnel-ci/runnel/internal/workspace"
)

func TestDockerBuildArgs(t *testing.T) {
	creds := map[string]runnel.Credential{
		"cred_ghcr":   {ID: "cred_ghcr", Kind: "basic", Host: "ghcr.io", Username: "u", Secret: "s"},
		"cred_nohost": {ID: "cred_nohost", Kind: "basic", Username: "u", Secret: "s"},
		"cred_ssh":    {ID: "cred_ssh", Kind: "ssh", Secret: "KEY"},
	}
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"missing tags", map[string]any{}, "args.tags: required by actions/docker-build@v1"},
		{"empty tags", map[string]any{"tags": ""}, "args.tags: must not be empty"},
		{"only commas", map[string]any{"tags": ","}, "args.tags: needs at least one image reference"},
		{"tags not strings", map[string]any{"tags": []any{1}}, "args.tags[0]: must be a string"},
		{"upper-case name", map[string]any{"tags": "example.com/App:1"}, `args.tags[0]: "example.com/App:1" is not a valid image reference`},
		{"bad tag", map[string]any{"tags": []any{"app:1", "app:-x"}}, `args.tags[1]: "app:-x" is not a valid image reference`},
		{"digest", map[string]any{"tags": "app@sha256:" + strings.Repeat("a", 64)}, "args.tags[0]: \"app@sha256:" + strings.Repeat("a", 64) + "\" has a digest"},
		{"scheme", map[string]any{"tags": "http://example.com/app"}, "args.tags[0]: \"http://example.com/app\" is not a valid image reference"},
		{"dockerfile outside", map[string]any{"tags": "app", "dockerfile": "../x"}, `args.dockerfile: must be a path relative to the workspace that stays inside it, got "../x"`},
		{"dockerfile absolute", map[string]any{"tags": "app", "dockerfile": "/etc/passwd"}, `args.dockerfile: must be a path relative to the workspace that stays inside it`},
		{"dockerfile root", map[string]any{"tags": "app", "dockerfile": "."}, `args.dockerfile: must be the path of a file`},
		{"context outside", map[string]any{"tags": "app", "context": "a/../../b"}, `args.context: must be a path relative to the workspace that stays inside it, got "a/../../b"`},
		{"context number", map[string]any{"tags": "app", "context": 1.5}, "args.context: must be a string (quote it in YAML), got number 1.5"},
		{"registry scheme", map[string]any{"tags": "app", "registry": "https://r.example.com"}, `args.registry: must be a registry host[:port] without scheme or path`},
		{"registry no dot", map[string]any{"tags": "app", "registry": "myregistry"}, `args.registry: must be a registry host[:port]`},
		{"cache not bool", map[string]any{"tags": "app", "cache": "maybe"}, `args.cache: must be true or false, got "maybe"`},
		{"push number", map[string]any{"tags": "app", "push": 1}, `args.push: must be true or false, got number 1`},
		{"buildArgs list", map[string]any{"tags": "app", "buildArgs": []any{"A=1"}}, "args.buildArgs: must be a map of names to strings, got a list"},
		{"buildArgs number", map[string]any{"tags": "app", "buildArgs": map[string]any{"V": 1.10}}, "args.buildArgs.V: must be a string (quote it in YAML), got number 1.1"},
		{"buildArgs name", map[string]any{"tags": "app", "buildArgs": map[string]any{"A=B": "x"}}, `args.buildArgs: "A=B" is not a build argument name`},
		{"labels bool", map[string]any{"tags": "app", "labels": map[string]any{"x": true}}, "args.labels.x: must be a string (quote it in YAML), got boolean true"},
		{"target flag", map[string]any{"tags": "app", "target": "--x"}, `args.target: must be the name of a stage`},
		{"unknown arg", map[string]any{"tags": "app", "tag": "x"}, "args.tag: unknown argument of actions/docker-build@v1"},
		{"unknown credential", map[string]any{"tags": "app", "credential": "cred_x"}, `args.credential: "cred_x" is not a credential this job may use`},
		{"ssh credential", map[string]any{"tags": "ghcr.io/o/app", "credential": "cred_ssh"}, "args.credential: credential cred_ssh is an SSH key"},
		{"credential host mismatch", map[string]any{"tags": "app:1", "registry": "127.0.0.1:5000", "push": true, "credential": "cred_ghcr"},
			"args.credential: credential cred_ghcr is for ghcr.io, but tag 127.0.0.1:5000/app:1 would be pushed to 127.0.0.1:5000"},
		{"credential host mismatch, second tag", map[string]any{"tags": []any{"ghcr.io/o/app:1", "quay.io/o/app:1"}, "push": "true", "credential": "cred_ghcr"},
			"args.credential: credential cred_ghcr is for ghcr.io, but tag quay.io/o/app:1 would be pushed to quay.io"},
		{"credential without host, two registries", map[string]any{"tags": "ghcr.io/o/app quay.io/o/app", "push": true, "credential": "cred_nohost"},
			"args.credential: credential cred_nohost names no host and the tags are on several registries (ghcr.io, quay.io)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A Docker engine that would fail the test if the arguments
			// were not refused first.
			rt := &Runtime{Docker: func() (*client.Client, error) {
				t.Fatal("Docker opened for invalid arguments")
				return nil, nil
			}}
			_, err := DockerBuild{}.Run(context.Background(), Call{Args: tt.args, Credentials: creds}, rt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDockerBuildNormalisedTags(t *testing.T) {
	p, err := DockerBuild{}.plan(Call{Args: map[string]any{
		"tags":     "app, team/app:2 ghcr.io/o/x:3 app",
		"registry": "127.0.0.1:5000",
		"context":  "./src/",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:5000/app:latest", "127.0.0.1:5000/team/app:2", "ghcr.io/o/x:3"}
	if strings.Join(p.tags, " ") != strings.Join(want, " ") {
		t.Errorf("tags = %v, want %v", p.tags, want)
	}
	if p.context != "src" || p.dockerfile != "src/Dockerfile" || p.inContext != "Dockerfile" {
		t.Errorf("context %q dockerfile %q inContext %q", p.context, p.dockerfile, p.inContext)
	}
	p, err = DockerBuild{}.plan(Call{Args: map[string]any{"tags": []any{"app"}, "dockerfile": "build/app.Dockerfile", "context": "src"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.tags[0] != "docker.io/library/app:latest" || p.inContext != "" {
		t.Errorf("tags %v inContext %q; want docker.io/library/app:latest and a Dockerfile outside the context", p.tags, p.inContext)
	}
	// A credential for a host without a port is good for every port of it.
	creds := map[string]runnel.Credential{"c": {Kind: "basic", Host: "127.0.0.1", Username: "u", Secret: "s"}}
	p, err = DockerBuild{}.plan(Call{Args: map[string]any{"tags": "app", "registry": "127.0.0.1:5000", "push": true, "credential": "c"}, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	// The login goes to the registry of the tags, with its port.
	if a := p.authConfig("127.0.0.1:5000"); a.Username != "u" || a.Password != "s" || a.ServerAddress != "127.0.0.1:5000" || strings.Join(p.authHosts, ",") != "127.0.0.1:5000" {
		t.Errorf("auth = %+v for %v", a, p.authHosts)
	}
	if a := p.authConfig("docker.io"); a.ServerAddress != "https://index.docker.io/v1/" {
		t.Errorf("Docker Hub's server address = %q", a.ServerAddress)
	}
}

func TestDockerBuildPrepareAndNoDocker(t *testing.T) {
	if _, err := (DockerBuild{}).Prepare(Call{Args: map[string]any{"tags": "app"}}); err == nil || !strings.Contains(err.Error(), "runs natively") {
		t.Errorf("Prepare: err = %v, want a native-action error", err)
	}
	_, err := DockerBuild{}.Run(context.Background(), Call{Args: map[string]any{"tags": "app"}}, &Runtime{Workspace: workspace.Dir(t.TempDir())})
	if want := "actions/docker-build@v1 needs a Docker engine: the agent has none configured"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// dockerBuildEnv is a real Docker engine and a workspace for one test.
type dockerBuildEnv struct {
	t   *testing.T
	cli *client.Client
	ws  string
	mu  sync.Mutex
	log []string
}

func newDockerBuildEnv(t *testing.T) *dockerBuildEnv {
	return &dockerBuildEnv{t: t, cli: testdocker.Connect(t), ws: t.TempDir()}
}

func (e *dockerBuildEnv) write(files map[string]string) {
	e.t.Helper()
	for p, content := range files {
		f := filepath.Join(e.ws, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
}

// run runs the action; the images it built are removed when the test ends.
func (e *dockerBuildEnv) run(args map[string]any, creds map[string]runnel.Credential) (map[string]string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return e.runCtx(ctx, args, creds, nil)
}

// runCtx runs the action with ctx, calling onLine (when not nil) with each
// log line.
func (e *dockerBuildEnv) runCtx(ctx context.Context, args map[string]any, creds map[string]runnel.Credential, onLine func(string)) (map[string]string, error) {
	e.t.Helper()
	e.mu.Lock()
	e.log = nil
	e.mu.Unlock()
	rt := &Runtime{
		Workspace: workspace.Dir(e.ws),
		Docker:    func() (*client.Client, error) { return e.cli, nil },
		Log: func(line string) {
			if strings.Contains(line, "\n") {
				e.t.Errorf("log line with a newline: %q", line)
			}
			e.mu.Lock()
			e.log = append(e.log, line)
			e.mu.Unlock()
			if onLine != nil {
				onLine(line)
			}
		},
		Now: time.Now,
	}
	out, err := DockerBuild{}.Run(ctx, Call{Args: args, Credentials: creds}, rt)
	if id := out["imageId"]; id != "" {
		e.t.Cleanup(func() { removeImage(e.t, e.cli, id) })
	}
	return out, err
}

func (e *dockerBuildEnv) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.log, "\n")
}

func removeImage(t *testing.T, cli *client.Client, ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove image %s: %v", ref, err)
	}
}

func randomName(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// basicAuthRegistry is an OCI registry on 127.0.0.1 (which Docker reaches
// over plain HTTP) that requires HTTP basic authentication, unless open.
type basicAuthRegistry struct {
	host          string
	user, pass    string
	manifestsPuts atomic.Int32
	refused       atomic.Int32
}

func newBasicAuthRegistry(t *testing.T, open bool) *basicAuthRegistry {
	r := &basicAuthRegistry{user: "builder", pass: "s3cret-" + randomName(t)}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !open && (!ok || u != r.user || p != r.pass) {
			if ok {
				r.refused.Add(1)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="runnel-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") {
			r.manifestsPuts.Add(1)
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// image reads a pushed image back from the registry.
func (r *basicAuthRegistry) image(t *testing.T, ref string) (digest string, labels map[string]string, files map[string]string) {
	t.Helper()
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(n, remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass}))
	if err != nil {
		t.Fatalf("get %s from the registry: %v", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	files = map[string]string{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.TrimPrefix(h.Name, "./"); strings.HasPrefix(n, "out/") && h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[n] = string(b)
		}
	}
	return desc.Digest.String(), cfg.Config.Labels, files
}

// dockerBuildFiles is a workspace whose Dockerfile lies outside the
// context, has two stages (the second fails), a build argument, and copies
// the context, which has a .dockerignore.
var dockerBuildFiles = map[string]string{
	"docker/app.Dockerfile": `FROM ` + testdocker.Busybox + ` AS final
ARG GREETING=unset
COPY . /src/
RUN mkdir /out && echo "$GREETING" > /out/greeting.txt && cd /src && find . -type f | sort > /out/listing.txt
FROM ` + testdocker.Busybox + ` AS broken
RUN exit 7
`,
	"app/hello.txt":     "hello\n",
	"app/sub/keep.txt":  "keep\n",
	"app/secret.env":    "TOKEN=do-not-ship\n",
	"app/.dockerignore": "# local files\nsecret.env\n",
}

func TestDockerBuildPush(t *testing.T) {
	e := newDockerBuildEnv(t)
	reg := newBasicAuthRegistry(t, false)
	e.write(dockerBuildFiles)
	repo := "runnel-docker-build-" + randomName(t)
	creds := map[string]runnel.Credential{
		// A host without a port: good for every port of it.
		"cred_reg": {ID: "cred_reg", Kind: "basic", Host: "127.0.0.1", Username: reg.user, Secret: reg.pass},
		"cred_bad": {ID: "cred_bad", Kind: "basic", Host: reg.host, Username: reg.user, Secret: "wrong"},
	}
	args := map[string]any{
		"context":    "app",
		"dockerfile": "docker/app.Dockerfile",
		"tags":       []any{repo + ":1.0", repo},
		"registry":   reg.host,
		"buildArgs":  map[string]any{"GREETING": "hi from runnel"},
		"labels":     map[string]any{"org.example.built-by": "runnel"},
		"target":     "final",
		"cache":      false,
		"push":       true,
		"credential": "cred_reg",
	}
	out, err := e.run(args, creds)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, e.logText())
	}
	logText := e.logText()
	t.Logf("log:\n%s", logText)

	wantTags := reg.host + "/" + repo + ":1.0," + reg.host + "/" + repo + ":latest"
	if out["tags"] != wantTags {
		t.Errorf("outputs.tags = %q, want %q", out["tags"], wantTags)
	}
	ins, err := e.cli.ImageInspect(context.Background(), reg.host+"/"+repo+":1.0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out["imageId"], "sha256:") || out["imageId"] != ins.ID {
		t.Errorf("outputs.imageId = %q, want the built image %s", out["imageId"], ins.ID)
	}
	for _, ref := range []string{repo + ":1.0", repo + ":latest"} {
		digest, labels, files := reg.image(t, reg.host+"/"+ref)
		if digest != out["digest"] {
			t.Errorf("%s: registry has digest %s, outputs.digest = %q", ref, digest, out["digest"])
		}
		if labels["org.example.built-by"] != "runnel" {
			t.Errorf("%s: labels = %v, want org.example.built-by=runnel", ref, labels)
		}
		if files["out/greeting.txt"] != "hi from runnel\n" {
			t.Errorf("%s: /out/greeting.txt = %q, want the build argument", ref, files["out/greeting.txt"])
		}
		// The context: .dockerignore honoured, the Dockerfile from outside
		// not visible, nothing else of the workspace.
		if want := "./.dockerignore\n./hello.txt\n./sub/keep.txt\n"; files["out/listing.txt"] != want {
			t.Errorf("%s: files in the context = %q, want %q", ref, files["out/listing.txt"], want)
		}
	}
	if reg.manifestsPuts.Load() == 0 {
		t.Error("no authenticated manifest upload reached the registry")
	}
	for _, want := range []string{"Step 1/", "Successfully built", "pushing " + reg.host + "/" + repo + ":1.0", "digest: " + out["digest"]} {
		if !strings.Contains(logText, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(logText, reg.pass) {
		t.Error("the registry password appears in the log")
	}
	if strings.Contains(logText, "exit 7") {
		t.Error("the stage after the target was built")
	}

	// A wrong password fails the step and says so.
	args["credential"] = "cred_bad"
	args["cache"] = true
	_, err = e.run(args, creds)
	if err == nil {
		t.Fatalf("push with a wrong password succeeded\nlog:\n%s", e.logText())
	}
	t.Logf("wrong password: %v", err)
	if want := "args.credential: logging in to " + reg.host + " with credential cred_bad failed"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("err = %v shows the password", err)
	}
	if reg.refused.Load() == 0 {
		t.Error("the registry saw no attempt with the wrong password")
	}
}

func TestDockerBuildPushAnonymous(t *testing.T) {
	e := newDockerBuildEnv(t)
	reg := newBasicAuthRegistry(t, true)
	e.write(map[string]string{
		"Dockerfile":   "FROM " + testdocker.Busybox + "\nCOPY . /src/\nRUN mkdir /out && cd /src && find . | sort > /out/listing.txt\n",
		"ctx/data.txt": "data\n",
	})
	ref := reg.host + "/anon/app:1"
	out, err := e.run(map[string]any{"tags": ref, "context": "ctx", "dockerfile": "Dockerfile", "push": true}, nil)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, e.logText())
	}
	digest, _, files := reg.image(t, ref)
	if digest != out["digest"] || out["tags"] != ref {
		t.Errorf("outputs = %v, registry has digest %s", out, digest)
	}
	// Neither the Dockerfile from outside nor the .dockerignore that keeps
	// it out are visible to the build.
	if want := ".\n./data.txt\n"; files["out/listing.txt"] != want {
		t.Errorf("context seen by the build = %q, want %q", files["out/listing.txt"], want)
	}
}

func TestDockerBuildLocal(t *testing.T) {
	e := newDockerBuildEnv(t)
	repo := "runnel-test/docker-build-" + randomName(t)
	e.write(map[string]string{
		"build/Dockerfile": "FROM " + testdocker.Busybox + "\nCOPY build/msg.txt /msg.txt\nRUN echo built; echo line two\n",
		"build/msg.txt":    "local\n",
		// A file of the reserved name is sent as any other when the
		// Dockerfile is in the context.
		".runnel-dockerfile": "not a Dockerfile",
	})
	out, err := e.run(map[string]any{"tags": repo + ":dev", "dockerfile": "build/Dockerfile"}, nil)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, e.logText())
	}
	if out["digest"] != "" || out["tags"] != "docker.io/"+repo+":dev" {
		t.Errorf("outputs = %v, want no digest and tags docker.io/%s:dev", out, repo)
	}
	ins, err := e.cli.ImageInspect(context.Background(), repo+":dev")
	if err != nil {
		t.Fatalf("the tag was not created: %v", err)
	}
	if ins.ID != out["imageId"] {
		t.Errorf("imageId %q, tag points to %s", out["imageId"], ins.ID)
	}
	lines := strings.Split(e.logText(), "\n")
	var built, two bool
	for _, l := range lines {
		built = built || l == "built"
		two = two || l == "line two"
	}
	if !built || !two {
		t.Errorf("the RUN output is not in the log line by line:\n%s", e.logText())
	}
}

func TestDockerBuildFailures(t *testing.T) {
	e := newDockerBuildEnv(t)
	e.write(map[string]string{
		"Dockerfile":     "FROM " + testdocker.Busybox + "\nRUN echo about to fail && exit 3\n",
		"ctx/Dockerfile": "FROM " + testdocker.Busybox + "\n",
		"ctx/data.txt":   "x",
	})
	tag := "runnel-test/docker-build-fail-" + randomName(t)
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"step fails", map[string]any{"tags": tag}, "returned a non-zero code: 3"},
		{"missing dockerfile in context", map[string]any{"tags": tag, "context": "ctx", "dockerfile": "ctx/nope.Dockerfile"}, `args.dockerfile: "ctx/nope.Dockerfile" not found in the workspace`},
		{"missing dockerfile outside context", map[string]any{"tags": tag, "context": "ctx", "dockerfile": "nope/Dockerfile"}, `args.dockerfile: "nope/Dockerfile" not found in the workspace`},
		{"dockerfile is a directory", map[string]any{"tags": tag, "dockerfile": "ctx"}, `args.dockerfile: "ctx" is a directory`},
		{"missing context", map[string]any{"tags": tag, "context": "nope"}, `args.context: directory "nope" does not exist in the workspace`},
		{"unknown target", map[string]any{"tags": tag, "context": "ctx", "target": "nostage"}, "nostage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.run(tt.args, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q\nlog:\n%s", err, tt.want, e.logText())
			}
			if tt.name == "step fails" && !strings.Contains(e.logText(), "about to fail") {
				t.Errorf("the failing step's output is not in the log:\n%s", e.logText())
			}
		})
	}
	if _, err := e.cli.ImageInspect(context.Background(), tag); !cerrdefs.IsNotFound(err) {
		removeImage(t, e.cli, tag)
		t.Errorf("a failed build left the tag %s: %v", tag, err)
	}
}

func TestDockerBuildCancel(t *testing.T) {
	e := newDockerBuildEnv(t)
	e.write(map[string]string{"Dockerfile": "FROM " + testdocker.Busybox + "\nRUN echo sleeping && sleep 120\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled atomic.Int64
	start := time.Now()
	_, err := e.runCtx(ctx, map[string]any{"tags": "runnel-test/docker-build-cancel-" + randomName(t), "cache": false}, nil, func(line string) {
		if line == "sleeping" {
			cancelled.Store(int64(time.Since(start)))
			cancel()
		}
	})
	if cancelled.Load() == 0 {
		t.Fatalf("the build never reached its RUN step: %v\nlog:\n%s", err, e.logText())
	}
	if err == nil {
		t.Fatal("a cancelled build succeeded")
	}
	if d := time.Since(start) - time.Duration(cancelled.Load()); d > 15*time.Second {
		t.Errorf("Run returned %v after the cancellation", d)
	}
}
