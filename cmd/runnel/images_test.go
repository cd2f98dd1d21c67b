package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cdevents "github.com/cdevents/sdk-go/pkg/api"
	cdeventsv05 "github.com/cdevents/sdk-go/pkg/api/v05"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	dockerclient "github.com/moby/moby/client"

	"github.com/runnel-ci/runnel/internal/testdocker"
	"github.com/runnel-ci/runnel/internal/testgit"
)

// seedClient speaks the seed-002 API (/v1/…) with the `Token` scheme its
// clients use.
type seedClient struct {
	t    *testing.T
	base string
}

func (c seedClient) do(method, path string, body any, out any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Token "+testToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, data
}

type seedBuild struct {
	BuildID              string  `json:"build_id"`
	Status               string  `json:"status"`
	CodeHeadCommit       string  `json:"code_head_commit"`
	ImageID              *string `json:"image_id"`
	DockerRepoPath       string  `json:"docker_repo_path"`
	DockerRepoTag        string  `json:"docker_repo_tag"`
	DockerRepoVersionTag *string `json:"docker_repo_version_tag"`
	AutoCreated          bool    `json:"auto_created"`
	CreatedAt            string  `json:"created_at"`
	Detail               string  `json:"detail"`
	IsRemovable          bool    `json:"is_removable"`
}

func (c seedClient) waitBuild(id string, timeout time.Duration) seedBuild {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var b seedBuild
		if code, body := c.do("GET", "/v1/builds/"+id, nil, &b); code != 200 {
			c.t.Fatalf("get build %s: %d %s", id, code, body)
		}
		if b.Status == "S" || b.Status == "F" || b.Status == "C" {
			return b
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("build %s still %s after %s: %s", id, b.Status, timeout, b.Detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildSink records CloudEvents, each validated as a CDEvent.
type buildSink struct {
	t   *testing.T
	url string
	mu  sync.Mutex
	got map[string]cdevents.CDEventReader // by id
}

func newBuildSink(t *testing.T) *buildSink {
	s := &buildSink{t: t, got: map[string]cdevents.CDEventReader{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		receiveCloudEvent(t, w, r, func(ev cloudevents.Event) {
			cd, err := cdeventsv05.NewFromJsonBytes(ev.Data())
			if err != nil {
				t.Errorf("event %s: not a CDEvent: %v", ev.ID(), err)
				return
			}
			if err := cdevents.Validate(cd); err != nil {
				t.Errorf("event %s (%s): invalid: %v", ev.ID(), ev.Type(), err)
			}
			s.mu.Lock()
			s.got[ev.ID()] = cd
			s.mu.Unlock()
		})
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// ids lists the ids of every event received, with their types.
func (s *buildSink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.got))
	for id, ev := range s.got {
		out = append(out, id+" "+ev.GetType().String())
	}
	sort.Strings(out)
	return out
}

// of returns a run's events by short type (build.finished).
func (s *buildSink) of(run string) map[string]cdevents.CDEventReader {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]cdevents.CDEventReader{}
	for id, ev := range s.got {
		if strings.HasPrefix(id, run+"-") {
			// dev.cdevents.build.finished.0.2.0 → build.finished
			parts := strings.Split(strings.TrimPrefix(ev.GetType().String(), "dev.cdevents."), ".")
			out[parts[0]+"."+parts[1]] = ev
		}
	}
	return out
}

// TestImageBuilds: the seed-002 image build service end to end, on real
// Docker, a registry started by the test (requiring the login of the
// server's --registry-credential) and a private Git repository served over
// smart HTTP: a repository with two tag configs is created through /v1, a
// build is triggered by the API and then two by a signed push; the pushed
// manifests carry both tags (time tag and commit tag), each build's image_id
// is the pushed digest, the log window query works, and the build and
// artifact CDEvents reach a sink.
func TestImageBuilds(t *testing.T) {
	cli := testdocker.Connect(t)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	const regUser, regPass = "builder", "registry-pass-1234"
	regSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != regUser || p != regPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer regSrv.Close()
	regHost := strings.TrimPrefix(regSrv.URL, "http://")

	gitSrv := testgit.New(t)
	cloneURL := gitSrv.Init(t, "app", map[string]string{
		"Dockerfile":        "FROM " + testdocker.Busybox + "\nCOPY hello.txt /hello.txt\n",
		"docker/Dockerfile": "FROM " + testdocker.Busybox + "\nCOPY hello.txt /edge.txt\n",
		"hello.txt":         "one\n",
	})
	first := gitSrv.Head(t, "app", "main")
	sink := newBuildSink(t)

	srv := startServerProc(t, "server", "", "--embedded-agent-capacity", "2", "--embedded-agent-backend", "local",
		"--registry", regHost, "--registry-credential", "registry-bot", "--events-sinks", sink.url, "--events-source", "/runnel/test")
	c := &client{t: t, base: "http://" + srv.addr}
	sc := seedClient{t: t, base: c.base}
	image := regHost + "/e2e/app"
	t.Cleanup(func() {
		imgs, _ := cli.ImageList(context.Background(), dockerclient.ImageListOptions{})
		for _, im := range imgs.Items {
			for _, tag := range im.RepoTags {
				if strings.HasPrefix(tag, image+":") {
					cli.ImageRemove(context.Background(), tag, dockerclient.ImageRemoveOptions{Force: true})
				}
			}
		}
	})

	// The credentials: the source's, and the registry's by the name the
	// server was started with.
	var gitCred, regCred struct {
		CredentialID string `json:"credentialId"`
	}
	if env := c.do("POST", "/api/v1/credentials", map[string]any{"name": "git-bot", "kind": "basic",
		"host": strings.TrimPrefix(gitSrv.URL, "http://"), "username": gitSrv.User, "accessToken": gitSrv.Password}, &gitCred); env.Code != 0 {
		t.Fatalf("create git credential: %+v", env)
	}
	if env := c.do("POST", "/api/v1/credentials", map[string]any{"name": "registry-bot", "kind": "basic",
		"host": regHost, "username": regUser, "accessToken": regPass}, &regCred); env.Code != 0 {
		t.Fatalf("create registry credential: %+v", env)
	}

	var repo struct {
		RepoPath    string `json:"repo_path"`
		BuildConfig struct {
			ID          int64  `json:"id"`
			WebhookCode string `json:"code_repo_webhook_code"`
			TagConfigs  []struct {
				ID            int64  `json:"id"`
				DockerRepoTag string `json:"docker_repo_tag"`
			} `json:"tag_configs"`
		} `json:"build_config"`
	}
	code, body := sc.do("POST", "/v1/repositories/e2e", map[string]any{
		"repo_name": "app", "description": "end to end", "full_description": "", "is_public": true,
		"build_config": map[string]any{
			"code_repo_client": "Simple", "code_repo_clone_url": cloneURL, "code_repo_credential": gitCred.CredentialID,
			"build_node": "in", "email_enabled": false,
			"tag_configs": []any{
				map[string]any{"code_repo_type": "branch", "code_repo_type_value": "main", "docker_repo_tag": "latest",
					"dockerfile_location": "/", "build_context_path": "/", "is_active": true, "build_cache_enabled": true, "version_tagging": 1},
				map[string]any{"code_repo_type": "branch", "code_repo_type_value": "main", "docker_repo_tag": "edge",
					"dockerfile_location": "/docker", "build_context_path": "/", "is_active": true, "build_cache_enabled": false, "version_tagging": 2},
				map[string]any{"code_repo_type": "tag", "code_repo_type_value": "v*", "docker_repo_tag": "release",
					"dockerfile_location": "/", "build_context_path": "/", "is_active": true, "version_tagging": 0},
			},
		},
	}, &repo)
	if code != 201 || repo.RepoPath != "e2e/app" || len(repo.BuildConfig.TagConfigs) != 3 || repo.BuildConfig.WebhookCode == "" {
		t.Fatalf("create repository: %d %s", code, body)
	}

	// A build by the API: the head of main, tagged latest and with a time tag.
	var b1 seedBuild
	// The answer is the build as it is then: W until an agent takes it; the
	// in-process agent may already have (B).
	if code, body := sc.do("POST", "/v1/builds", map[string]any{"namespace": "e2e", "repo_name": "app", "tag": "latest"}, &b1); code != 201 || (b1.Status != "W" && b1.Status != "B") {
		t.Fatalf("trigger: %d %s", code, body)
	}
	if b1.CodeHeadCommit != first || b1.DockerRepoVersionTag == nil || !regexp.MustCompile(`^v\d{8}\.\d{6}$`).MatchString(*b1.DockerRepoVersionTag) {
		t.Fatalf("triggered build: %+v (head of main %s)", b1, first)
	}
	created, _ := time.Parse(time.RFC3339, b1.CreatedAt)
	if tagTime, err := time.Parse("v20060102.150405", *b1.DockerRepoVersionTag); err != nil || created.Sub(tagTime) < 0 || created.Sub(tagTime) > 2*time.Second {
		t.Fatalf("version tag %s does not name the build's creation %s (UTC)", *b1.DockerRepoVersionTag, b1.CreatedAt)
	}
	done := sc.waitBuild(b1.BuildID, 3*time.Minute)
	if done.Status != "S" || done.ImageID == nil || done.IsRemovable {
		_, logs := sc.do("GET", "/v1/builds/"+b1.BuildID+"/logs", nil, nil)
		t.Fatalf("build: %+v\n%s", done, logs)
	}
	for _, tag := range []string{"latest", *b1.DockerRepoVersionTag} {
		if d := pushedDigest(t, image+":"+tag, regUser, regPass); d != *done.ImageID {
			t.Fatalf("%s:%s has digest %s in the registry, the build says %s", image, tag, d, *done.ImageID)
		}
	}

	// The build's logs, and a window of them.
	type logLine struct {
		Message string `json:"message"`
		Level   string `json:"level"`
		Time    int64  `json:"time"`
	}
	var logs []logLine
	if code, body := sc.do("GET", "/v1/builds/"+b1.BuildID+"/logs", nil, &logs); code != 200 || len(logs) < 3 {
		t.Fatalf("logs: %d %s", code, body)
	}
	all := ""
	for _, l := range logs {
		all += l.Message + "\n"
		if l.Level == "" || l.Time < created.Unix()-1 {
			t.Fatalf("log line %+v", l)
		}
	}
	if !strings.Contains(all, "checked out "+first) || !strings.Contains(all, "pushed "+image+":latest@"+*done.ImageID) {
		t.Fatalf("the log should show the checkout and the push:\n%s", all)
	}
	mid := logs[len(logs)/2].Time
	want := 0
	for _, l := range logs {
		if l.Time == mid {
			want++
		}
	}
	var window []logLine
	sc.do("GET", fmt.Sprintf("/v1/builds/%s/logs?start_time=%d&end_time=%d", b1.BuildID, mid, mid), nil, &window)
	if len(window) != want || want == 0 {
		t.Fatalf("window [%d, %d]: %d lines, want %d", mid, mid, len(window), want)
	}
	var after []logLine
	sc.do("GET", fmt.Sprintf("/v1/builds/%s/logs?start_time=%d", b1.BuildID, mid+1), nil, &after)
	for _, l := range after {
		if l.Time <= mid {
			t.Fatalf("start_time=%d returned a line at %d", mid+1, l.Time)
		}
	}

	// A signed push to main builds both active branch configs.
	second := gitSrv.Commit(t, "app", "main", map[string]string{"hello.txt": "two\n"}, "second")
	pipeline := repo.BuildConfig.WebhookCode
	var rot struct {
		Secret string `json:"secret"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+pipeline+"/webhook/rotate", nil, &rot); env.Code != 0 {
		t.Fatalf("rotate: %+v", env)
	}
	push := []byte(`{"ref":"refs/heads/main","before":"` + first + `","after":"` + second + `",
		"repository":{"full_name":"e2e/app","clone_url":"` + cloneURL + `"},
		"head_commit":{"id":"` + second + `","message":"second","author":{"name":"Test"}},"commits":[],"pusher":{"name":"test"},"sender":{"login":"test"}}`)
	mac := hmac.New(sha256.New, []byte(rot.Secret))
	mac.Write(push)
	req, _ := http.NewRequest("POST", c.base+"/api/v1/webhooks/github/"+pipeline, bytes.NewReader(push))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "image-e2e-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hookBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || strings.Count(string(hookBody), `"runId"`) != 2 {
		t.Fatalf("push delivery: %d %s", resp.StatusCode, hookBody)
	}

	var list struct {
		Count    int         `json:"count"`
		Next     *string     `json:"next"`
		Previous *string     `json:"previous"`
		Results  []seedBuild `json:"results"`
	}
	if code, body := sc.do("GET", "/v1/builds?namespace=e2e&repo_name=app", nil, &list); code != 200 || list.Count != 3 || len(list.Results) != 3 || list.Next != nil || list.Previous != nil {
		t.Fatalf("builds: %d %s", code, body)
	}
	byTag := map[string]seedBuild{}
	for _, b := range list.Results[:2] {
		if !b.AutoCreated || b.CodeHeadCommit != second {
			t.Fatalf("pushed build %+v", b)
		}
		byTag[b.DockerRepoTag] = sc.waitBuild(b.BuildID, 3*time.Minute)
	}
	if list.Results[2].BuildID != b1.BuildID {
		t.Fatalf("builds are not newest first: %+v", list.Results)
	}
	edge, latest := byTag["edge"], byTag["latest"]
	if edge.Status != "S" || latest.Status != "S" || edge.DockerRepoVersionTag == nil || *edge.DockerRepoVersionTag != second {
		t.Fatalf("pushed builds: edge %+v, latest %+v", edge, latest)
	}
	if d := pushedDigest(t, image+":"+second, regUser, regPass); d != *edge.ImageID || pushedDigest(t, image+":edge", regUser, regPass) != d {
		t.Fatalf("%s:%s is %s, the edge build says %s", image, second, d, *edge.ImageID)
	}
	if d := pushedDigest(t, image+":latest", regUser, regPass); d != *latest.ImageID || d == *done.ImageID {
		t.Fatalf("latest is %s in the registry; the pushed build says %s (the first build pushed %s)", d, *latest.ImageID, *done.ImageID)
	}
	ref, _ := name.ParseReference(image+":edge", name.Insecure)
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := img.ConfigFile(); err != nil || cfg.Config.Labels["org.opencontainers.image.revision"] != second {
		t.Fatalf("the edge image should be labelled with its commit: %+v %v", cfg, err)
	}

	// The build is a run like any other.
	d := c.runJobs(b1.BuildID)
	if d.Status != "success" {
		t.Fatalf("run of build %s: %+v", b1.BuildID, d)
	}

	// Build and artifact CDEvents, besides the pipelinerun ones.
	// Delivery is asynchronous and retried with backoff while the sink is
	// slow (the race detector and a loaded machine make the sink's schema
	// checks slow): allow for a retry or two, and say what is missing.
	wanted := []string{"build.queued", "build.started", "build.finished", "artifact.packaged", "artifact.published", "pipelinerun.finished"}
	missing := func() []string {
		got := sink.of(b1.BuildID)
		var out []string
		for _, k := range wanted {
			if got[k] == nil {
				out = append(out, k)
			}
		}
		return out
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("the build's CDEvents: %v missing after 2m; the sink has %v", m, sink.ids())
	}
	got := sink.of(b1.BuildID)
	fin, ok := got["build.finished"].(*cdeventsv05.BuildFinishedEvent)
	if !ok || !strings.Contains(fin.Subject.Content.ArtifactId, "@"+*done.ImageID) {
		t.Fatalf("build.finished: %+v", got["build.finished"])
	}
	if pub := got["artifact.published"]; pub.GetSubjectId() != fin.Subject.Content.ArtifactId {
		t.Fatalf("artifact.published names %s, build.finished %s", pub.GetSubjectId(), fin.Subject.Content.ArtifactId)
	}
}

// pushedDigest reads a tag's manifest digest from the registry.
func pushedDigest(t *testing.T, ref, user, pass string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	if err != nil {
		t.Fatalf("the registry has no %s: %v", ref, err)
	}
	return desc.Digest.String()
}
