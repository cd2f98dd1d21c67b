package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/store"
)

const testRegistry = "127.0.0.1:5000"

// withImages wires a real image build service (on the env's store and a
// real scheduler: no agent runs, so builds stay W).
func withImages(c *Config) {
	sched := scheduler.New(scheduler.Options{Store: c.Store, Catalog: action.Builtins(), Now: c.Clock})
	c.Images = imagebuild.New(imagebuild.Options{
		Store: c.Store, Runs: sched, Catalog: action.Builtins(), Registry: testRegistry, Clock: c.Clock,
	})
}

func newImageEnv(t testing.TB) (*env, *imagebuild.Service) {
	e := newEnvWith(t, withImages).asSiteAdmin()
	return e, e.srv.images.(*imagebuild.Service)
}

// seedBody is the seed's create example.
func seedBody() map[string]any {
	return map[string]any{
		"repo_name":        "docker_images_test",
		"description":      "docker images",
		"full_description": "",
		"is_public":        true,
		"build_config": map[string]any{
			"code_repo_client":    "GitHub",
			"code_repo_namespace": "yournamespace",
			"code_repo_name":      "Docker-image",
			"build_node":          "in",
			"email_enabled":       false,
			"tag_configs": []any{map[string]any{
				"code_repo_type":       "branch",
				"code_repo_type_value": "master",
				"docker_repo_tag":      "latest",
				"build_context_path":   "/",
				"dockerfile_location":  "/",
				"is_active":            false,
				"build_cache_enabled":  true,
				"version_tagging":      1,
			}},
		},
	}
}

func tagConfig(tag, kind, value string, versioning int) map[string]any {
	return map[string]any{"code_repo_type": kind, "code_repo_type_value": value, "docker_repo_tag": tag, "version_tagging": versioning}
}

func seedErr(t testing.TB, r *resp, status int, code, field, fragment string) {
	t.Helper()
	r.must(t, status)
	errs, _ := r.env["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors = %s", r.body)
	}
	first := errs[0].(map[string]any)
	if first["code"] != code {
		t.Fatalf("code %v, want %s: %s", first["code"], code, r.body)
	}
	if field != "" && first["field"] != field {
		t.Fatalf("field %v, want %s: %s", first["field"], field, r.body)
	}
	if !strings.Contains(fmt.Sprint(first["message"]), fragment) {
		t.Fatalf("message %v does not contain %q", first["message"], fragment)
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func wantKeys(t testing.TB, what string, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keysOf(m); !slices.Equal(got, want) {
		t.Errorf("%s keys:\n got %v\nwant %v", what, got, want)
	}
}

func TestImageSeedRepository(t *testing.T) {
	e, _ := newImageEnv(t)
	r := e.do("POST", "/v1/repositories/alauda", seedBody()).must(t, 201)
	repo := r.env
	wantKeys(t, "repository", repo, "repo_starred_count", "namespace", "logo_file", "repo_path", "repo_name", "description",
		"full_description", "created_by", "created_at", "updated_at", "is_public", "is_automated", "download", "upload",
		"pulled_at", "pushed_at", "build_config", "pipeline_id")
	want := map[string]any{
		"repo_starred_count": 0.0, "namespace": "alauda", "logo_file": "/static/images/user/default-logo.png",
		"repo_path": "alauda/docker_images_test", "repo_name": "docker_images_test", "description": "docker images",
		"full_description": "", "created_by": "user_alice", "created_at": "2026-03-02T10:00:00.000Z",
		"updated_at": "2026-03-02T10:00:00.000Z", "is_public": true, "is_automated": false, "download": 0.0, "upload": 0.0,
		"pulled_at": nil, "pushed_at": nil,
	}
	for k, v := range want {
		if repo[k] != v {
			t.Errorf("%s = %#v, want %#v", k, repo[k], v)
		}
	}
	pid, _ := repo["pipeline_id"].(string)
	if !strings.HasPrefix(pid, "pl_") {
		t.Errorf("pipeline_id %q", pid)
	}
	bc := repo["build_config"].(map[string]any)
	wantKeys(t, "build_config", bc, "id", "docker_repo_path", "code_repo_client", "code_repo_path", "code_repo_webhook_code",
		"code_repo_public_key", "created_by", "build_node", "email_enabled", "code_repo_path_url", "deploy_url",
		"code_repo_namespace", "code_repo_name", "tag_configs")
	wantBC := map[string]any{
		"docker_repo_path": "alauda/docker_images_test", "code_repo_client": "GitHub", "code_repo_path": "yournamespace/Docker-image",
		"code_repo_webhook_code": pid, "code_repo_public_key": nil, "created_by": "user_alice", "build_node": "in",
		"email_enabled": false, "code_repo_path_url": "https://github.com/yournamespace/Docker-image", "deploy_url": nil,
		"code_repo_namespace": "yournamespace", "code_repo_name": "Docker-image",
	}
	for k, v := range wantBC {
		if bc[k] != v {
			t.Errorf("build_config.%s = %#v, want %#v", k, bc[k], v)
		}
	}
	bcID, _ := bc["id"].(float64)
	if bcID <= 0 {
		t.Errorf("build_config.id %v", bc["id"])
	}
	tcs := bc["tag_configs"].([]any)
	if len(tcs) != 1 {
		t.Fatalf("tag_configs %v", tcs)
	}
	tc := tcs[0].(map[string]any)
	wantKeys(t, "tag config", tc, "id", "docker_build_config_id", "docker_repo_tag", "dockerfile_location", "code_repo_type",
		"code_repo_type_value", "is_active", "version_tagging", "build_context_path", "build_cache_enabled")
	if id, _ := tc["id"].(float64); id <= 0 || tc["docker_build_config_id"] != bcID || tc["docker_repo_tag"] != "latest" ||
		tc["version_tagging"] != 1.0 || tc["build_cache_enabled"] != true || tc["dockerfile_location"] != "/" {
		t.Errorf("tag config %v", tc)
	}

	// The same shape on GET; Token works as the scheme.
	got := e.do("GET", "/v1/repositories/alauda/docker_images_test", nil, withHeader("Authorization", "Token "+e.token)).must(t, 200)
	if string(got.body) != string(r.body) {
		t.Errorf("GET differs from the create answer:\n%s\n%s", got.body, r.body)
	}

	// Duplicate.
	seedErr(t, e.do("POST", "/v1/repositories/alauda", seedBody()), 409, "resource_already_exist", "repo_name", "already exists")

	// Bad input names the field.
	mutate := func(f func(b map[string]any, tcs []any)) map[string]any {
		b := seedBody()
		b["repo_name"] = "other"
		bc := b["build_config"].(map[string]any)
		f(b, bc["tag_configs"].([]any))
		return b
	}
	tests := []struct {
		name, field, fragment string
		body                  map[string]any
	}{
		{"missing tag", "build_config.tag_configs[0].docker_repo_tag", "required", mutate(func(_ map[string]any, tcs []any) {
			delete(tcs[0].(map[string]any), "docker_repo_tag")
		})},
		{"bad type", "build_config.tag_configs[0].code_repo_type", "must be branch or tag", mutate(func(_ map[string]any, tcs []any) {
			tcs[0].(map[string]any)["code_repo_type"] = "commit"
		})},
		{"bad versioning", "build_config.tag_configs[0].version_tagging", "must be 0", mutate(func(_ map[string]any, tcs []any) {
			tcs[0].(map[string]any)["version_tagging"] = 3
		})},
		{"duplicate tag", "build_config.tag_configs[1].docker_repo_tag", "already built by", mutate(func(b map[string]any, tcs []any) {
			b["build_config"].(map[string]any)["tag_configs"] = append(tcs, tagConfig("latest", "branch", "dev", 0))
		})},
		{"unknown nested", "build_config.tag_configs[1].dockr_repo_tag",
			"build_config.tag_configs[1].dockr_repo_tag: unknown field; did you mean docker_repo_tag?",
			mutate(func(b map[string]any, tcs []any) {
				b["build_config"].(map[string]any)["tag_configs"] = append(tcs, map[string]any{"code_repo_type": "branch", "dockr_repo_tag": "x"})
			})},
		{"nested type", "build_config.tag_configs[0].is_active", "must be true or false", mutate(func(_ map[string]any, tcs []any) {
			tcs[0].(map[string]any)["is_active"] = "yes"
		})},
		{"unknown top", "repo_nmae", "did you mean repo_name?", mutate(func(b map[string]any, _ []any) {
			b["repo_nmae"] = "x"
		})},
		{"no build config", "build_config", "required", mutate(func(b map[string]any, _ []any) {
			delete(b, "build_config")
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seedErr(t, e.do("POST", "/v1/repositories/alauda", tt.body), 400, "invalid_args", tt.field, tt.fragment)
		})
	}
	seedErr(t, e.do("POST", "/v1/repositories/Bad_NS", seedBody()), 400, "invalid_args", "namespace", "lower-case")

	// Not found, unauthenticated, unmatched.
	seedErr(t, e.do("GET", "/v1/repositories/alauda/nothing", nil), 404, "resource_not_exist", "", "not found")
	r401 := e.do("GET", "/v1/repositories/alauda/docker_images_test", nil, withToken(""))
	seedErr(t, r401, 401, "not_authenticated", "", "header Authorization")
	seedErr(t, e.do("GET", "/v1/nothing/here", nil), 404, "resource_not_exist", "", "no route")
	seedErr(t, e.do("PATCH", "/v1/builds", nil), 405, "method_not_allowed", "", "not allowed")

	// Delete.
	e.do("DELETE", "/v1/repositories/alauda/docker_images_test", nil).must(t, 204)
	seedErr(t, e.do("GET", "/v1/repositories/alauda/docker_images_test", nil), 404, "resource_not_exist", "", "not found")
}

func TestImageSeedBuildConfig(t *testing.T) {
	e, _ := newImageEnv(t)
	b := seedBody()
	bc := b["build_config"].(map[string]any)
	bc["tag_configs"] = append(bc["tag_configs"].([]any), tagConfig("release", "branch", "release/*", 0))
	repo := e.do("POST", "/v1/repositories/team", b).must(t, 201).env
	tcs := repo["build_config"].(map[string]any)["tag_configs"].([]any)
	keep, drop := tcs[0].(map[string]any)["id"], tcs[1].(map[string]any)["id"]

	kept := tagConfig("latest", "branch", "main", 2)
	kept["id"] = keep
	kept["docker_build_config_id"] = repo["build_config"].(map[string]any)["id"]
	kept["dockerfile_location"] = "/docker"
	out := e.do("PUT", "/v1/repositories/team/docker_images_test/build-config", map[string]any{
		"build_node": "out", "tag_configs": []any{kept, tagConfig("dev", "branch", "develop", 0)},
	}).must(t, 200).env
	if out["build_node"] != "out" || out["docker_repo_path"] != "team/docker_images_test" {
		t.Errorf("build config %v", out)
	}
	got := out["tag_configs"].([]any)
	if len(got) != 2 {
		t.Fatalf("tag_configs %v", got)
	}
	first, second := got[0].(map[string]any), got[1].(map[string]any)
	if first["id"] != keep || first["dockerfile_location"] != "/docker" || first["version_tagging"] != 2.0 {
		t.Errorf("kept config %v (want id %v)", first, keep)
	}
	if id, _ := second["id"].(float64); id <= 0 || second["id"] == keep || second["id"] == drop || second["docker_repo_tag"] != "dev" {
		t.Errorf("new config %v", second)
	}
	again := e.do("GET", "/v1/repositories/team/docker_images_test", nil).must(t, 200).env
	if n := len(again["build_config"].(map[string]any)["tag_configs"].([]any)); n != 2 {
		t.Errorf("after the update: %d tag configs", n)
	}
	// An id that is not one of the repository's.
	bad := tagConfig("x", "branch", "x", 0)
	bad["id"] = 999999
	seedErr(t, e.do("PUT", "/v1/repositories/team/docker_images_test/build-config", map[string]any{"tag_configs": []any{bad}}),
		400, "invalid_args", "tag_configs[0].id", "is not one of this repository's tag configs")
	seedErr(t, e.do("PUT", "/v1/repositories/team/nothing/build-config", map[string]any{"tag_configs": []any{tagConfig("x", "branch", "x", 0)}}),
		404, "resource_not_exist", "", "not found")
}

const commitA = "552819d5c903472a36696e8ac620ac250e49829d"

func TestImageSeedTrigger(t *testing.T) {
	e, _ := newImageEnv(t)
	b := seedBody()
	b["repo_name"] = "app"
	b["build_config"].(map[string]any)["tag_configs"] = []any{
		tagConfig("latest", "branch", "master", 1), tagConfig("sha", "branch", "main", 2), tagConfig("rel", "branch", "release/*", 0),
	}
	e.do("POST", "/v1/repositories/acme", b).must(t, 201)
	e.clock.Advance(1500 * time.Millisecond)

	out := e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "app", "tag": "latest", "code_commit_id": commitA}).must(t, 201).env
	wantKeys(t, "build", out, "build_id", "created_at", "started_at", "ended_at", "code_head_commit", "code_repo_client",
		"code_repo_path", "code_repo_type", "code_repo_type_value", "created_by", "detail", "image_id", "docker_repo_path",
		"docker_repo_tag", "docker_repo_version_tag", "dockerfile_location", "status", "auto_created", "step_at", "build_node",
		"build_context_path", "build_cache_enabled", "code_repo_http_url", "code_commit_http_url", "code_repo_branch_url",
		"is_removable", "namespace", "repo_name", "run_id", "run_number", "pipeline_id", "image")
	id, _ := out["build_id"].(string)
	want := map[string]any{
		"ended_at": nil, "image_id": nil, "code_head_commit": commitA,
		"code_repo_client": "GitHub", "code_repo_path": "yournamespace/Docker-image", "code_repo_type": "branch",
		"code_repo_type_value": "master", "created_by": "user_alice", "docker_repo_path": "acme/app", "docker_repo_tag": "latest",
		"docker_repo_version_tag": "v20260302.100001", "created_at": "2026-03-02T10:00:01.500Z", "auto_created": false,
		"is_removable": true, "build_node": "in", "image": testRegistry + "/acme/app", "run_id": id, "namespace": "acme",
		"repo_name": "app", "run_number": 1.0,
		"code_repo_http_url":   "https://github.com/yournamespace/Docker-image",
		"code_commit_http_url": "https://github.com/yournamespace/Docker-image/commit/" + commitA,
		"code_repo_branch_url": "https://github.com/yournamespace/Docker-image/tree/master",
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %#v, want %#v", k, out[k], v)
		}
	}
	// The seed shows W with started_at null: no agent took the job yet
	// (the run itself is already running once planned).
	if st := out["status"]; st != "W" || out["started_at"] != nil {
		t.Errorf("status %v, started_at %v: want W and null", st, out["started_at"])
	}
	if !regexp.MustCompile(`^v\d{8}\.\d{6}$`).MatchString(fmt.Sprint(out["docker_repo_version_tag"])) || !strings.HasPrefix(id, "run_") {
		t.Errorf("version tag %v, id %s", out["docker_repo_version_tag"], id)
	}
	got := e.do("GET", "/v1/builds/"+id, nil).must(t, 200).env
	if got["build_id"] != id || got["status"] != out["status"] {
		t.Errorf("GET build %v", got)
	}

	sha := e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "app", "tag": "sha", "code_commit_id": commitA}).must(t, 201).env
	if sha["docker_repo_version_tag"] != commitA {
		t.Errorf("version tag %v, want the commit", sha["docker_repo_version_tag"])
	}
	seedErr(t, e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "app", "tag": "nope", "code_commit_id": commitA}),
		404, "resource_not_exist", "", "no tag config for tag")
	seedErr(t, e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "app", "tag": "rel"}),
		400, "invalid_args", "code_commit_id", "pattern")
	seedErr(t, e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "app", "tag": "latest", "code_commit_id": "abc"}),
		400, "invalid_args", "code_commit_id", "full commit id")
	seedErr(t, e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "app", "tg": "latest"}),
		400, "invalid_args", "tg", "did you mean tag?")
	// Text encoding/json would store as U+FFFD, and deep nesting, are refused.
	seedErr(t, e.do("POST", "/v1/builds", rawBody(`{"namespace": "acme", "repo_name": "app\ud800", "tag": "latest"}`)),
		400, "invalid_args", "", "must be valid UTF-8 text")
	seedErr(t, e.do("POST", "/v1/builds", rawBody(`{"namespace": "acme", "x": `+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`)),
		400, "invalid_args", "", "nested 41 levels deep, at most 32")
	seedErr(t, e.do("GET", "/v1/builds/run_zzzzzzzzzzzzzzzzzzzz", nil), 404, "resource_not_exist", "", "not found")
	seedErr(t, e.do("GET", "/v1/builds/5709f780-e8fb-4b52", nil), 404, "resource_not_exist", "", "not found")
}

func TestImageSeedBuildPages(t *testing.T) {
	e, svc := newImageEnv(t)
	ctx := context.Background()
	last := map[int]string{}
	sizes := []int{0, 1, 20, 21, 41}
	for _, n := range sizes {
		b := seedBody()
		b["repo_name"] = fmt.Sprintf("r%d", n)
		e.do("POST", "/v1/repositories/pg", b).must(t, 201)
		for i := range n {
			e.clock.Advance(time.Second)
			build, err := svc.TriggerBuild(ctx, imagebuild.BuildRequest{
				Namespace: "pg", RepoName: b["repo_name"].(string), Tag: "latest", Commit: fmt.Sprintf("%040x", n*1000+i+1),
			})
			if err != nil {
				t.Fatal(err)
			}
			last[n] = build.ID
		}
	}
	base := e.http.URL
	for _, n := range sizes {
		pages := max(1, (n+19)/20)
		link := func(p int) any {
			return fmt.Sprintf("%s/v1/builds?namespace=pg&page=%d&repo_name=r%d", base, p, n)
		}
		for p := 1; p <= pages; p++ {
			out := e.do("GET", fmt.Sprintf("/v1/builds?namespace=pg&repo_name=r%d&page=%d", n, p), nil).must(t, 200).env
			results := out["results"].([]any)
			wantLen := min(20, max(0, n-(p-1)*20))
			if out["count"] != float64(n) || len(results) != wantLen {
				t.Errorf("n=%d page %d: count %v, %d results, want %d", n, p, out["count"], len(results), wantLen)
			}
			var next, prev any
			if p < pages {
				next = link(p + 1)
			}
			if p > 1 {
				prev = link(p - 1)
			}
			if out["next"] != next || out["previous"] != prev {
				t.Errorf("n=%d page %d: next %v previous %v, want %v %v", n, p, out["next"], out["previous"], next, prev)
			}
			if p == 1 && n > 0 && results[0].(map[string]any)["build_id"] != last[n] {
				t.Errorf("n=%d: first result %v, want the newest %s", n, results[0].(map[string]any)["build_id"], last[n])
			}
			for i := 1; i < len(results); i++ {
				a, b := results[i-1].(map[string]any)["created_at"].(string), results[i].(map[string]any)["created_at"].(string)
				if a < b {
					t.Errorf("n=%d page %d: not newest first at %d: %s < %s", n, p, i, a, b)
				}
			}
		}
		seedErr(t, e.do("GET", fmt.Sprintf("/v1/builds?namespace=pg&repo_name=r%d&page=%d", n, pages+1), nil), 404, "resource_not_exist", "page",
			fmt.Sprintf("page %d is out of range: there are %d pages of builds", pages+1, (n+19)/20))
	}
	// Without the page parameter: page 1.
	out := e.do("GET", "/v1/builds?namespace=pg&repo_name=r21", nil).must(t, 200).env
	if out["previous"] != nil || out["next"] != fmt.Sprintf("%s/v1/builds?namespace=pg&page=2&repo_name=r21", base) {
		t.Errorf("default page: %v %v", out["previous"], out["next"])
	}
	// Every build.
	all := e.do("GET", "/v1/builds", nil).must(t, 200).env
	if all["count"] != 83.0 || all["next"] != base+"/v1/builds?page=2" {
		t.Errorf("all builds: count %v next %v", all["count"], all["next"])
	}
	seedErr(t, e.do("GET", "/v1/builds?page=0", nil), 400, "invalid_args", "page", "positive integer")
	seedErr(t, e.do("GET", "/v1/builds?page=x", nil), 400, "invalid_args", "page", "positive integer")
	seedErr(t, e.do("GET", "/v1/builds?namespace=nothing", nil), 404, "resource_not_exist", "", "")
	seedErr(t, e.do("GET", "/v1/builds?namespace=pg&repo_name=nothing", nil), 404, "resource_not_exist", "", "not found")
	seedErr(t, e.do("GET", "/v1/builds?repo_name=nothing", nil), 404, "resource_not_exist", "", "")
	seedErr(t, e.do("GET", "/v1/builds?namespce=pg", nil), 400, "invalid_args", "", "did you mean")
}

func TestImageBuildLogs(t *testing.T) {
	e, _ := newImageEnv(t)
	b := seedBody()
	b["repo_name"] = "logs"
	e.do("POST", "/v1/repositories/acme", b).must(t, 201)
	id := e.do("POST", "/v1/builds", map[string]any{"namespace": "acme", "repo_name": "logs", "tag": "latest", "code_commit_id": commitA}).
		must(t, 201).env["build_id"].(string)
	tree, err := e.st.GetRunTree(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var steps []*store.StepRun
	for _, j := range tree.Jobs {
		steps = append(steps, tree.Steps[j.ID]...)
	}
	if len(steps) != 2 {
		t.Fatalf("steps %d", len(steps))
	}
	t0 := e.clock.Now().Truncate(time.Second)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	append1 := func(sid string, lines ...store.LogLine) {
		if _, err := e.st.AppendLogs(context.Background(), sid, lines, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	append1(steps[0].ID, store.LogLine{Time: at(0), Level: "info", Message: "a"}, store.LogLine{Time: at(999), Level: "info", Message: "b"},
		store.LogLine{Time: at(1500), Level: "warn", Message: "c"})
	append1(steps[1].ID, store.LogLine{Time: at(2000), Level: "info", Message: "d"}, store.LogLine{Time: at(3200), Level: "error", Message: "e"})
	T := t0.Unix()
	get := func(q string) string {
		t.Helper()
		r := e.do("GET", "/v1/builds/"+id+"/logs"+q, nil).must(t, 200)
		var parts []string
		for _, x := range r.env2(t) {
			l := x.(map[string]any)
			parts = append(parts, fmt.Sprintf("%s/%s/%d", l["message"], l["level"], int64(l["time"].(float64))-T))
		}
		return strings.Join(parts, " ")
	}
	cases := map[string]string{
		"":                                 "a/INFO/0 b/INFO/0 c/WARN/1 d/INFO/2 e/ERROR/3",
		fmt.Sprintf("?start_time=%d", T+1): "c/WARN/1 d/INFO/2 e/ERROR/3",
		fmt.Sprintf("?end_time=%d", T+1):   "a/INFO/0 b/INFO/0 c/WARN/1",
		fmt.Sprintf("?start_time=%d&end_time=%d", T+2, T+2): "d/INFO/2",
		fmt.Sprintf("?start_time=%d", T+4):                  "",
	}
	for q, want := range cases {
		if got := get(q); got != want {
			t.Errorf("logs%s = %q, want %q", q, got, want)
		}
	}
	seedErr(t, e.do("GET", "/v1/builds/"+id+"/logs?start_time=-1", nil), 400, "invalid_args", "start_time", "Unix seconds")
	seedErr(t, e.do("GET", "/v1/builds/"+id+"/logs?end_time=soon", nil), 400, "invalid_args", "end_time", "Unix seconds")
	seedErr(t, e.do("GET", fmt.Sprintf("/v1/builds/%s/logs?start_time=%d&end_time=%d", id, T+2, T+1), nil), 400, "invalid_args", "end_time", "before")
	seedErr(t, e.do("GET", "/v1/builds/run_zzzzzzzzzzzzzzzzzzzz/logs", nil), 404, "resource_not_exist", "", "not found")

	// Runnel's API: the lines with their step.
	var lines []map[string]any
	e.do("GET", fmt.Sprintf("/api/v1/image-builds/%s/logs?startTime=%d", id, T+1), nil).must(t, 200).into(t, &lines)
	if len(lines) != 3 || lines[0]["message"] != "c" || lines[0]["stepName"] != steps[0].Name || lines[1]["stepName"] != steps[1].Name ||
		lines[0]["time"] != "2026-03-02T10:00:01.500Z" {
		t.Errorf("native logs %v", lines)
	}
	e.do("GET", fmt.Sprintf("/api/v1/image-builds/%s/logs?startTime=%d&endTime=%d", id, T+2, T+1), nil).
		mustErr(t, 400, "query parameter endTime")
}

// env2 is an answer that is a JSON array.
func (r *resp) env2(t testing.TB) []any {
	t.Helper()
	var v []any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("not an array: %s", r.body)
	}
	return v
}

func TestImageNativeAPI(t *testing.T) {
	e, _ := newImageEnv(t)
	body := map[string]any{
		"namespace": "acme", "repoName": "web", "description": "site", "isPublic": false,
		"buildConfig": map[string]any{
			"codeRepoClient": "Simple", "codeRepoCloneUrl": "https://git.example.com/team/web.git",
			"tagConfigs": []any{map[string]any{"codeRepoType": "branch", "codeRepoTypeValue": "main", "dockerRepoTag": "latest", "versionTagging": 2, "isActive": true}},
		},
	}
	r := e.do("POST", "/api/v1/image-repositories", body).must(t, 201)
	d := r.detail()
	bc := d["buildConfig"].(map[string]any)
	if d["repoName"] != "web" || d["repoPath"] != "acme/web" || d["isAutomated"] != true || d["pushedAt"] != nil ||
		bc["codeRepoCloneUrl"] != "https://git.example.com/team/web.git" || bc["codeRepoPath"] != "git.example.com/team/web" ||
		bc["codeRepoPathUrl"] != "https://git.example.com/team/web.git" || bc["codeRepoWebhookCode"] != d["pipelineId"] {
		t.Errorf("created %s", r.body)
	}
	if _, ok := bc["codeRepoNamespace"]; ok {
		t.Errorf("Simple repository with codeRepoNamespace: %s", r.body)
	}
	tc := bc["tagConfigs"].([]any)[0].(map[string]any)
	if tc["dockerBuildConfigId"] != bc["id"] || tc["codeRepoTypeValue"] != "main" {
		t.Errorf("tag config %v", tc)
	}
	if r.header.Get("Location") != "/api/v1/image-repositories/acme/web" {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	e.do("GET", "/api/v1/image-repositories/acme/web", nil).must(t, 200)
	list := e.do("GET", "/api/v1/image-repositories?namespace=acme", nil).must(t, 200).detail()
	if list["total"] != 1.0 || len(list["items"].([]any)) != 1 {
		t.Errorf("list %v", list)
	}
	e.do("GET", "/api/v1/image-repositories/acme/nothing", nil).mustErr(t, 404, "not found")
	e.do("GET", "/api/v1/image-repositories/Acme/web", nil).mustErr(t, 400, "path parameter namespace")

	b := e.do("POST", "/api/v1/image-builds", map[string]any{"namespace": "acme", "repoName": "web", "tag": "latest", "codeCommitId": commitA}).must(t, 201).detail()
	id, _ := b["buildId"].(string)
	if b["status"] != "W" || b["dockerRepoVersionTag"] != commitA || b["codeRepoHttpUrl"] != "https://git.example.com/team/web.git" ||
		b["codeCommitHttpUrl"] != nil || b["codeRepoBranchUrl"] != nil || b["runId"] != id || b["isRemovable"] != true {
		t.Errorf("build %v", b)
	}
	got := e.do("GET", "/api/v1/image-builds/"+id, nil).must(t, 200).detail()
	if got["buildId"] != id {
		t.Errorf("get build %v", got)
	}
	builds := e.do("GET", "/api/v1/image-builds?namespace=acme&repoName=web", nil).must(t, 200).detail()
	if builds["total"] != 1.0 || len(builds["items"].([]any)) != 1 || builds["pageSize"] != 20.0 {
		t.Errorf("builds %v", builds)
	}
	e.do("GET", "/api/v1/image-builds?namespace=nothing", nil).mustErr(t, 404)
	e.do("GET", "/api/v1/image-builds/nope", nil).mustErr(t, 404, "not found")

	// Field errors in camelCase.
	bad := func(f func(tc map[string]any)) map[string]any {
		tc := map[string]any{"codeRepoType": "branch", "codeRepoTypeValue": "main", "dockerRepoTag": "latest"}
		f(tc)
		return map[string]any{"namespace": "acme", "repoName": "other",
			"buildConfig": map[string]any{"codeRepoClient": "GitHub", "codeRepoNamespace": "o", "codeRepoName": "r", "tagConfigs": []any{tc}}}
	}
	e.do("POST", "/api/v1/image-repositories", bad(func(tc map[string]any) { tc["versionTagging"] = 3 })).
		mustErr(t, 400, "body.buildConfig.tagConfigs[0].versionTagging: must be 0")
	e.do("POST", "/api/v1/image-repositories", bad(func(tc map[string]any) { tc["dockrRepoTag"] = "x" })).
		mustErr(t, 400, "body.buildConfig.tagConfigs[0].dockrRepoTag: unknown field; did you mean dockerRepoTag?")
	e.do("POST", "/api/v1/image-repositories", bad(func(tc map[string]any) { tc["docker_repo_tag"] = "x" })).
		mustErr(t, 400, "did you mean dockerRepoTag?")
	e.do("POST", "/api/v1/image-repositories", body).mustErr(t, 409, "already exists")
	e.do("PUT", "/api/v1/image-repositories/acme/web/build-config", map[string]any{"tagConfigs": []any{}}).
		mustErr(t, 400, "body.tagConfigs: at least one tag config")
	e.do("DELETE", "/api/v1/image-repositories/acme/other", nil).mustErr(t, 404)
}

// TestImagesDisabled: without the service every image route is a 503 in
// its API's error format.
func TestImagesDisabled(t *testing.T) {
	e := newEnv(t)
	seedErr(t, e.do("GET", "/v1/builds", nil), 503, "service_unavailable", "", "not enabled")
	e.do("GET", "/api/v1/image-builds", nil).mustErr(t, 503, "not enabled")
	if e.do("GET", "/v1/builds", nil).status != http.StatusServiceUnavailable {
		t.Error("want 503")
	}
}
