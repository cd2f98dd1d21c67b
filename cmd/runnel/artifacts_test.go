package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	dockerclient "github.com/moby/moby/client"

	"github.com/runnel-ci/runnel/internal/testdocker"
)

// TestArtifactsAndCaches: a build stage uploads an artifact and fills a
// cache keyed by hashFiles(); a test stage downloads the artifact. The
// second run of the pipeline restores the cache (an exact hit) instead of
// rebuilding it. The artifact is listed and downloadable through the API.
// Run on the embedded agent with the local backend, and on a remote agent
// (over agent.v1) with jobs in a Docker image.
func TestArtifactsAndCaches(t *testing.T) {
	t.Run("embedded-local", func(t *testing.T) { artifactsAndCaches(t, false) })
	t.Run("remote-docker", func(t *testing.T) {
		testdocker.Connect(t)
		artifactsAndCaches(t, true)
	})
}

func artifactsAndCaches(t *testing.T, remote bool) {
	var srv *proc
	image := ""
	if remote {
		srv = startServerProc(t, "server", "", "--log-level", "info")
		c := &client{t: t, base: "http://" + srv.addr}
		startAgentProc(t, "agent", srv.grpcAddr, c.registrationToken(), "", filepath.Join(t.TempDir(), "a"))
		image = `"image":"` + testdocker.Busybox + `",`
	} else {
		srv = startServerProc(t, "server", "", "--log-level", "info", "--embedded-agent-capacity", "2", "--embedded-agent-backend", "local")
	}
	c := &client{t: t, base: "http://" + srv.addr}

	spec := `{"namespace":"t","stages":[
	 {"name":"build","jobs":[{"name":"compile",` + image + `"steps":[
	  {"name":"source","run":"echo 'dep v1' > deps.lock; mkdir -p dist/docs; echo 'app binary' > dist/app; echo manual > dist/docs/readme"},
	  {"name":"deps-cache","uses":"actions/cache@v1","args":{"key":"deps-${{ hashFiles('deps.lock') }}","restoreKeys":["deps-"],"paths":[".deps"]}},
	  {"name":"deps","run":"if [ -f .deps/lib ]; then echo \"deps: warm $(cat .deps/lib)\"; else mkdir -p .deps && echo built-once > .deps/lib && echo deps: cold; fi"},
	  {"name":"upload","uses":"actions/artifact-upload@v1","args":{"name":"app","paths":"dist"}}]}]},
	 {"name":"test","jobs":[{"name":"check",` + image + `"steps":[
	  {"name":"download","uses":"actions/artifact-download@v1","args":{"name":"app","path":"got"}},
	  {"name":"verify","run":"cat got/dist/app got/dist/docs/readme"}]}]}]}`
	p := c.createPipeline("artifacts", spec)

	runOnce := func() (runJobs, map[string]string) {
		run := c.trigger(p, "")
		c.waitRun(run, 60*time.Second, final)
		d := c.runJobs(run)
		logs := map[string]string{}
		for _, job := range []string{"compile", "check"} {
			for i, st := range d.job(job).Steps {
				logs[fmt.Sprintf("%s/%d", job, i)] = c.stepLog(run, st.StepRunID)
			}
		}
		if d.Status != "success" {
			t.Fatalf("run %s: %+v\nlogs: %v\nserver: %s", run, d, logs, srv.tailLogs(3000))
		}
		return d, logs
	}

	d1, logs := runOnce()
	if !strings.Contains(logs["compile/1"], "cache miss") || !strings.Contains(logs["compile/2"], "deps: cold") {
		t.Errorf("first run should miss the cache: %q / %q", logs["compile/1"], logs["compile/2"])
	}
	if !strings.Contains(logs["compile/1"], "saved cache deps-") {
		t.Errorf("the cache should be saved after the job: %q", logs["compile/1"])
	}
	if !strings.Contains(logs["check/1"], "app binary") || !strings.Contains(logs["check/1"], "manual") {
		t.Errorf("the test stage should read the artifact: %q", logs["check/1"])
	}

	_, logs = runOnce()
	if !strings.Contains(logs["compile/1"], "cache hit") || !strings.Contains(logs["compile/2"], "deps: warm built-once") {
		t.Errorf("second run should hit the cache: %q / %q", logs["compile/1"], logs["compile/2"])
	}

	// The API lists the first run's artifact and serves it.
	var list []struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	if env := c.do("GET", "/api/v1/pipelines/runs/"+d1.RunID+"/artifacts", nil, &list); env.Code != 0 || len(list) != 1 || list[0].Name != "app" {
		raw, _ := json.Marshal(list)
		t.Fatalf("artifacts: %+v %s", env, raw)
	}
	req, _ := http.NewRequest("GET", c.base+"/api/v1/pipelines/runs/"+d1.RunID+"/artifacts/"+list[0].ID, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "app.tar.gz") {
		t.Fatalf("download: %d %v", resp.StatusCode, resp.Header)
	}
	files := untar(t, resp.Body)
	if files["dist/app"] != "app binary\n" || files["dist/docs/readme"] != "manual\n" {
		t.Fatalf("downloaded artifact holds %v", files)
	}
}

func untar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.Typeflag == tar.TypeReg {
			out[h.Name] = string(b)
		}
	}
}

// TestDockerBuildPipeline: a pipeline writes a Dockerfile, builds it with
// actions/docker-build@v1 on the server's embedded agent and pushes it to a
// registry started by the test; the pushed manifest's digest is the step's
// output, and the image's config carries the build's label.
func TestDockerBuildPipeline(t *testing.T) {
	cli := testdocker.Connect(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	repo := fmt.Sprintf("%s/runnel-e2e/app", host)
	t.Cleanup(func() {
		cli.ImageRemove(context.Background(), repo+":1", dockerclient.ImageRemoveOptions{Force: true, PruneChildren: true})
	})

	srv := startServerProc(t, "server", "", "--log-level", "info", "--embedded-agent-capacity", "1", "--embedded-agent-backend", "local")
	c := &client{t: t, base: "http://" + srv.addr}
	spec := `{"namespace":"t","jobs":[{"name":"image","outputs":{"digest":"${{ steps.build.outputs.digest }}"},"steps":[
	  {"name":"files","run":"mkdir -p ctx && printf 'FROM ` + testdocker.Busybox + `\nLABEL io.runnel.e2e=yes\nRUN echo built > /built\n' > ctx/Dockerfile"},
	  {"name":"build","uses":"actions/docker-build@v1","args":{"context":"ctx","tags":"runnel-e2e/app:1","registry":"` + host + `","push":true}}]}]}`
	p := c.createPipeline("image", spec)
	run := c.trigger(p, "")
	c.waitRun(run, 120*time.Second, final)
	d := c.runJobs(run)
	if d.Status != "success" {
		var logs []string
		for _, st := range d.job("image").Steps {
			logs = append(logs, c.stepLog(run, st.StepRunID))
		}
		t.Fatalf("run: %+v\n%s", d, strings.Join(logs, "\n"))
	}
	var detail struct {
		Stages []struct {
			Jobs []struct {
				Outputs map[string]string `json:"outputs"`
			} `json:"jobs"`
		} `json:"stages"`
	}
	c.do("GET", "/api/v1/pipelines/runs/"+run, nil, &detail)
	digest := detail.Stages[0].Jobs[0].Outputs["digest"]
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("digest output: %+v", detail)
	}
	ref, err := name.ParseReference(repo+":1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("the registry has no %s: %v", ref, err)
	}
	got, _ := img.Digest()
	cfg, err := img.ConfigFile()
	if err != nil || got.String() != digest || cfg.Config.Labels["io.runnel.e2e"] != "yes" {
		t.Fatalf("pushed manifest %s (step said %s), labels %v, %v", got, digest, cfg.Config.Labels, err)
	}
}
