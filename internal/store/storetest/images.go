package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/store"
)

// imagePipeline is the pipeline a new image repository owns (not stored).
func imagePipeline(name string) *store.Pipeline {
	return &store.Pipeline{
		ID: newID("pl"), ProjectID: "images", Name: name, RepoURL: "https://git.example/" + name + ".git",
		DefaultBranch: "main", SaveMode: "direct", CreatedBy: "alice", CreatedAt: t0, UpdatedAt: t0,
	}
}

func imageRepo(namespace, name string, tags ...string) *store.ImageRepository {
	r := &store.ImageRepository{
		Namespace: namespace, Name: name, Description: "d " + name, FullDescription: "# " + name,
		IsPublic: true, BuildNode: "linux", EmailEnabled: true, CreatedBy: "alice", CreatedAt: at(1), UpdatedAt: at(2),
		Source: store.ImageSource{Client: "GitHub", Namespace: namespace, Name: name, Host: "git.example",
			CloneURL: "", CredentialID: "cred-1"},
	}
	for i, tag := range tags {
		r.TagConfigs = append(r.TagConfigs, tagConfig(tag, i))
	}
	return r
}

func tagConfig(tag string, version int) *store.ImageTagConfig {
	return &store.ImageTagConfig{
		CodeRepoType: "branch", CodeRepoTypeValue: tag, DockerRepoTag: tag + "-img",
		DockerfileLocation: "/", BuildContextPath: "/src", IsActive: version%2 == 0,
		BuildCacheEnabled: version%2 == 1, VersionTagging: version % 3,
	}
}

// tagsOf lists a repository's configs' DockerRepoTag, in order, failing
// unless every config belongs to it.
func tagsOf(t *testing.T, r *store.ImageRepository) []string {
	t.Helper()
	out := []string{}
	for _, c := range r.TagConfigs {
		if c.RepositoryID != r.ID || c.ID == 0 {
			t.Fatalf("repository %d: tag config %+v has id %d and repository %d", r.ID, c, c.ID, c.RepositoryID)
		}
		out = append(out, c.DockerRepoTag)
	}
	return out
}

func repoNames(list []*store.ImageRepository) []string {
	out := []string{}
	for _, r := range list {
		out = append(out, r.Namespace+"/"+r.Name)
	}
	return out
}

func testImages(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)

	// Create: ids assigned, the pipeline stored with the repository.
	app := imageRepo("alauda", "app", "main", "dev")
	appPl := imagePipeline("image-alauda-app")
	noErr(t, "CreateImageRepository", f.st.CreateImageRepository(f.ctx, app, appPl))
	if app.ID == 0 || app.PipelineID != appPl.ID {
		t.Fatalf("after create: id %d, pipeline %q (want %q)", app.ID, app.PipelineID, appPl.ID)
	}
	if got := tagsOf(t, app); !slices.Equal(got, []string{"main-img", "dev-img"}) {
		t.Fatalf("created tag configs %v", got)
	}
	if app.TagConfigs[0].ID == app.TagConfigs[1].ID {
		t.Fatalf("tag configs share id %d", app.TagConfigs[0].ID)
	}
	pl, err := f.st.GetPipeline(f.ctx, appPl.ID)
	noErr(t, "GetPipeline of the repository", err)
	if pl.Name != appPl.Name || pl.ProjectID != "images" || pl.RepoURL != appPl.RepoURL {
		t.Errorf("repository's pipeline: %+v", pl)
	}

	got, err := f.st.GetImageRepository(f.ctx, "alauda", "app")
	noErr(t, "GetImageRepository", err)
	sameJSON(t, "GetImageRepository", got, app)
	utc(t, "GetImageRepository", &got.CreatedAt, &got.UpdatedAt)
	got, err = f.st.ImageRepositoryByPipeline(f.ctx, appPl.ID)
	noErr(t, "ImageRepositoryByPipeline", err)
	sameJSON(t, "ImageRepositoryByPipeline", got, app)

	_, err = f.st.GetImageRepository(f.ctx, "alauda", "nope")
	wantErr(t, "GetImageRepository unknown", err, store.ErrNotFound)
	if err != nil && !strings.Contains(err.Error(), "alauda/nope") {
		t.Errorf("GetImageRepository unknown: %q does not say which", err)
	}
	other := f.pipeline("proj", "plain")
	_, err = f.st.ImageRepositoryByPipeline(f.ctx, other.ID)
	wantErr(t, "ImageRepositoryByPipeline of a plain pipeline", err, store.ErrNotFound)

	// More repositories: one without tag configs, another namespace.
	web := imageRepo("alauda", "web")
	noErr(t, "CreateImageRepository web", f.st.CreateImageRepository(f.ctx, web, imagePipeline("image-alauda-web")))
	if web.TagConfigs != nil {
		t.Fatalf("web has tag configs %v", web.TagConfigs)
	}
	api := imageRepo("acme", "api", "v*")
	api.TagConfigs[0].CodeRepoType = "tag"
	noErr(t, "CreateImageRepository api", f.st.CreateImageRepository(f.ctx, api, imagePipeline("image-acme-api")))
	bApp := imageRepo("alauda", "B-app", "x")
	noErr(t, "CreateImageRepository B-app", f.st.CreateImageRepository(f.ctx, bApp, imagePipeline("image-alauda-b")))

	list, err := f.st.ListImageRepositories(f.ctx, "")
	noErr(t, "ListImageRepositories", err)
	// By namespace and name, in byte order (upper case first).
	if got := repoNames(list); !slices.Equal(got, []string{"acme/api", "alauda/B-app", "alauda/app", "alauda/web"}) {
		t.Fatalf("ListImageRepositories: %v", got)
	}
	sameJSON(t, "listed app", list[2], app)
	if list[3].TagConfigs == nil || len(list[3].TagConfigs) != 0 {
		t.Errorf("a repository without tag configs lists %#v, want an empty list", list[3].TagConfigs)
	}
	list, err = f.st.ListImageRepositories(f.ctx, "acme")
	noErr(t, "ListImageRepositories acme", err)
	if got := repoNames(list); !slices.Equal(got, []string{"acme/api"}) || list[0].TagConfigs[0].CodeRepoType != "tag" {
		t.Fatalf("ListImageRepositories acme: %v", got)
	}
	list, err = f.st.ListImageRepositories(f.ctx, "nobody")
	noErr(t, "ListImageRepositories nobody", err)
	if len(list) != 0 {
		t.Fatalf("ListImageRepositories nobody: %v", repoNames(list))
	}

	t.Run("Conflicts", func(t *testing.T) {
		// The same namespace and name: a conflict, and the pipeline is not kept.
		dupPl := imagePipeline("image-dup")
		err := f.st.CreateImageRepository(f.ctx, imageRepo("alauda", "app", "main"), dupPl)
		wantErr(t, "duplicate repository", err, store.ErrConflict)
		if err != nil && !strings.Contains(err.Error(), "alauda/app") {
			t.Errorf("duplicate repository: %q does not say which", err)
		}
		_, err = f.st.GetPipeline(f.ctx, dupPl.ID)
		wantErr(t, "pipeline of the rejected repository", err, store.ErrNotFound)

		// A pipeline name clash: a conflict, and no repository.
		clash := imagePipeline(appPl.Name)
		err = f.st.CreateImageRepository(f.ctx, imageRepo("alauda", "other", "main"), clash)
		wantErr(t, "pipeline name clash", err, store.ErrConflict)
		_, err = f.st.GetImageRepository(f.ctx, "alauda", "other")
		wantErr(t, "repository of the rejected pipeline", err, store.ErrNotFound)

		// Invalid input.
		wantErr(t, "no namespace", f.st.CreateImageRepository(f.ctx, imageRepo("", "x"), imagePipeline("image-x")), store.ErrInvalid)
		wantErr(t, "no pipeline", f.st.CreateImageRepository(f.ctx, imageRepo("ns", "x"), nil), store.ErrInvalid)
		wantErr(t, "pipeline without a name", f.st.CreateImageRepository(f.ctx, imageRepo("ns", "x"), imagePipeline("")), store.ErrInvalid)
		_, err = f.st.GetImageRepository(f.ctx, "ns", "x")
		wantErr(t, "repository after invalid creates", err, store.ErrNotFound)
	})

	t.Run("UpdateBuildConfig", func(t *testing.T) {
		r := imageRepo("upd", "svc", "a", "b", "c")
		noErr(t, "CreateImageRepository", f.st.CreateImageRepository(f.ctx, r, imagePipeline("image-upd-svc")))
		a, b, c := r.TagConfigs[0], r.TagConfigs[1], r.TagConfigs[2]

		// Keep c (edited) before a, drop b, add a new one in between.
		c2 := *c
		c2.DockerRepoTag, c2.IsActive, c2.VersionTagging = "c2-img", true, 2
		added := tagConfig("new", 1)
		a2 := *a
		got, err := f.st.UpdateImageBuildConfig(f.ctx, r.ID, "arm64", []*store.ImageTagConfig{&c2, added, &a2}, at(100))
		noErr(t, "UpdateImageBuildConfig", err)
		if got.BuildNode != "arm64" || !got.UpdatedAt.Equal(at(100)) || !got.CreatedAt.Equal(r.CreatedAt) {
			t.Errorf("updated repository: build node %q, updated %v, created %v", got.BuildNode, got.UpdatedAt, got.CreatedAt)
		}
		if tags := tagsOf(t, got); !slices.Equal(tags, []string{"c2-img", "new-img", "a-img"}) {
			t.Fatalf("updated tag configs %v", tags)
		}
		if got.TagConfigs[0].ID != c.ID || got.TagConfigs[2].ID != a.ID {
			t.Errorf("kept configs' ids: %d, %d; want %d, %d", got.TagConfigs[0].ID, got.TagConfigs[2].ID, c.ID, a.ID)
		}
		addedID := got.TagConfigs[1].ID
		if addedID == a.ID || addedID == b.ID || addedID == c.ID {
			t.Errorf("the new config got id %d, already used", addedID)
		}
		if tc := got.TagConfigs[0]; !tc.IsActive || tc.VersionTagging != 2 || tc.CodeRepoTypeValue != "c" {
			t.Errorf("edited config: %+v", tc)
		}
		stored, err := f.st.GetImageRepository(f.ctx, "upd", "svc")
		noErr(t, "GetImageRepository after update", err)
		sameJSON(t, "repository as stored", stored, got)

		// Reorder only.
		order := []*store.ImageTagConfig{stored.TagConfigs[2], stored.TagConfigs[0], stored.TagConfigs[1]}
		got, err = f.st.UpdateImageBuildConfig(f.ctx, r.ID, "arm64", order, at(101))
		noErr(t, "reorder", err)
		if tags := tagsOf(t, got); !slices.Equal(tags, []string{"a-img", "c2-img", "new-img"}) {
			t.Fatalf("reordered tag configs %v", tags)
		}
		stored = got

		// An id that is not one of this repository's: nothing changes.
		foreign := *app.TagConfigs[0]
		_, err = f.st.UpdateImageBuildConfig(f.ctx, r.ID, "other-node", []*store.ImageTagConfig{tagConfig("z", 0), &foreign}, at(200))
		wantErr(t, "foreign tag config", err, store.ErrInvalid)
		if err != nil && !strings.Contains(err.Error(), fmt.Sprint(foreign.ID)) {
			t.Errorf("foreign tag config: %q does not name it", err)
		}
		gone := *b
		_, err = f.st.UpdateImageBuildConfig(f.ctx, r.ID, "other-node", []*store.ImageTagConfig{&gone}, at(200))
		wantErr(t, "removed tag config", err, store.ErrInvalid)
		after, err := f.st.GetImageRepository(f.ctx, "upd", "svc")
		noErr(t, "GetImageRepository after rejected updates", err)
		sameJSON(t, "repository after rejected updates", after, stored)

		// Unknown repository.
		_, err = f.st.UpdateImageBuildConfig(f.ctx, r.ID+1000, "x", nil, at(300))
		wantErr(t, "unknown repository", err, store.ErrNotFound)

		// No configs: all removed.
		got, err = f.st.UpdateImageBuildConfig(f.ctx, r.ID, "", nil, at(300))
		noErr(t, "remove all", err)
		if len(got.TagConfigs) != 0 || got.BuildNode != "" {
			t.Errorf("after removing all: %+v", got)
		}
		// The other repositories are untouched.
		still, err := f.st.GetImageRepository(f.ctx, "alauda", "app")
		noErr(t, "GetImageRepository app", err)
		sameJSON(t, "app after another's updates", still, app)
	})

	t.Run("DeletePipeline", func(t *testing.T) {
		r := imageRepo("del", "gone", "main")
		p := imagePipeline("image-del-gone")
		noErr(t, "CreateImageRepository", f.st.CreateImageRepository(f.ctx, r, p))
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
		_, err := f.st.GetImageRepository(f.ctx, "del", "gone")
		wantErr(t, "repository of a deleted pipeline", err, store.ErrNotFound)
		_, err = f.st.ImageRepositoryByPipeline(f.ctx, p.ID)
		wantErr(t, "repository by a deleted pipeline", err, store.ErrNotFound)
		_, err = f.st.UpdateImageBuildConfig(f.ctx, r.ID, "x", nil, at(1))
		wantErr(t, "update of a deleted repository", err, store.ErrNotFound)
		// The name is free again.
		noErr(t, "CreateImageRepository again", f.st.CreateImageRepository(f.ctx, imageRepo("del", "gone"), imagePipeline("image-del-gone")))
	})

	t.Run("Builds", func(t *testing.T) { testImageBuilds(t, open) })
}

// testImageBuilds tests ListImageBuilds on a store of its own (it counts
// every build).
func testImageBuilds(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	app := imageRepo("alauda", "app", "main")
	noErr(t, "create app", f.st.CreateImageRepository(f.ctx, app, imagePipeline("image-app")))
	web := imageRepo("alauda", "web", "main")
	noErr(t, "create web", f.st.CreateImageRepository(f.ctx, web, imagePipeline("image-web")))
	api := imageRepo("acme", "api", "main")
	noErr(t, "create api", f.st.CreateImageRepository(f.ctx, api, imagePipeline("image-api")))
	plain := f.pipeline("proj", "plain")

	empty, total, err := f.st.ListImageBuilds(f.ctx, store.ImageBuildFilter{})
	noErr(t, "ListImageBuilds before any", err)
	if total != 0 || len(empty) != 0 {
		t.Fatalf("ListImageBuilds before any: %d of %d", len(empty), total)
	}

	// Runs at increasing times, interleaved; the plain pipeline's are not builds.
	type built struct {
		id, repo string
	}
	var all []built // oldest first
	add := func(pipelineID, repo string, sec int) {
		t.Helper()
		nr := newRun(pipelineID, 1, 1)
		nr.Run.CreatedAt = at(sec)
		_, _, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun", err)
		if repo != "" {
			all = append(all, built{nr.Run.ID, repo})
		}
	}
	for i := range 4 {
		add(app.PipelineID, "alauda/app", 10*i+1)
		add(plain.ID, "", 10*i+2)
		add(api.PipelineID, "acme/api", 10*i+3)
		if i%2 == 0 {
			add(web.PipelineID, "alauda/web", 10*i+4)
		}
	}
	// Two runs at the same time: the higher id first.
	tieA, tieB := newRun(app.PipelineID, 0, 0), newRun(api.PipelineID, 0, 0)
	tieA.Run.ID, tieB.Run.ID = "run_tie_a", "run_tie_b"
	tieA.Run.CreatedAt, tieB.Run.CreatedAt = at(100), at(100)
	for _, nr := range []*store.NewRun{tieA, tieB} {
		_, _, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun tie", err)
	}
	all = append(all, built{"run_tie_a", "alauda/app"}, built{"run_tie_b", "acme/api"})
	slices.Reverse(all) // newest first: tie_b, tie_a, then by time

	want := func(filter func(b built) bool) []string {
		out := []string{}
		for _, b := range all {
			if filter(b) {
				out = append(out, b.id)
			}
		}
		return out
	}
	check := func(what string, fl store.ImageBuildFilter, wantIDs []string, wantTotal int) {
		t.Helper()
		list, total, err := f.st.ListImageBuilds(f.ctx, fl)
		noErr(t, what, err)
		ids := []string{}
		for _, b := range list {
			ids = append(ids, b.Run.ID)
			repo := b.Namespace + "/" + b.RepoName
			var wantRepo *store.ImageRepository
			for _, r := range []*store.ImageRepository{app, web, api} {
				if r.Namespace+"/"+r.Name == repo {
					wantRepo = r
				}
			}
			if wantRepo == nil || b.RepositoryID != wantRepo.ID || b.Run.PipelineID != wantRepo.PipelineID {
				t.Fatalf("%s: run %s listed for %s (repository %d, pipeline %s)", what, b.Run.ID, repo, b.RepositoryID, b.Run.PipelineID)
			}
		}
		if !slices.Equal(ids, wantIDs) || total != wantTotal {
			t.Fatalf("%s:\n got  %v (total %d)\n want %v (total %d)", what, ids, total, wantIDs, wantTotal)
		}
	}
	everything := want(func(built) bool { return true })
	if everything[0] != "run_tie_b" || everything[1] != "run_tie_a" || len(everything) != 12 {
		t.Fatalf("test setup: %v", everything)
	}
	check("all", store.ImageBuildFilter{}, everything, 12)
	check("all, page 2", store.ImageBuildFilter{Offset: 5, Limit: 4}, everything[5:9], 12)
	check("all, past the end", store.ImageBuildFilter{Offset: 20, Limit: 4}, []string{}, 12)
	alauda := want(func(b built) bool { return strings.HasPrefix(b.repo, "alauda/") })
	check("namespace alauda", store.ImageBuildFilter{Namespace: "alauda"}, alauda, 7)
	check("namespace alauda, offset", store.ImageBuildFilter{Namespace: "alauda", Offset: 1, Limit: 2}, alauda[1:3], 7)
	check("alauda/web", store.ImageBuildFilter{Namespace: "alauda", RepoName: "web"},
		want(func(b built) bool { return b.repo == "alauda/web" }), 2)
	check("acme/api", store.ImageBuildFilter{Namespace: "acme", RepoName: "api"},
		want(func(b built) bool { return b.repo == "acme/api" }), 5)
	check("name api in any namespace", store.ImageBuildFilter{RepoName: "api"},
		want(func(b built) bool { return b.repo == "acme/api" }), 5)
	check("namespace acme, name web", store.ImageBuildFilter{Namespace: "acme", RepoName: "web"}, []string{}, 0)
	check("unknown namespace", store.ImageBuildFilter{Namespace: "nobody"}, []string{}, 0)
	check("within acme", store.ImageBuildFilter{Within: []string{"acme", "nobody"}},
		want(func(b built) bool { return strings.HasPrefix(b.repo, "acme/") }), 5)
	check("within nothing", store.ImageBuildFilter{Within: []string{}}, []string{}, 0)

	// Full runs come back, as ListRuns returns them.
	list, _, err := f.st.ListImageBuilds(f.ctx, store.ImageBuildFilter{Limit: 1})
	noErr(t, "ListImageBuilds limit 1", err)
	runs, _, err := f.st.ListRuns(f.ctx, store.RunFilter{PipelineID: api.PipelineID, Limit: 1})
	noErr(t, "ListRuns", err)
	if len(list) != 1 {
		t.Fatalf("ListImageBuilds limit 1: %d builds", len(list))
	}
	sameJSON(t, "a build's run", list[0].Run, runs[0])
	utc(t, "a build's run", &list[0].Run.CreatedAt)

	_, _, err = f.st.ListImageBuilds(f.ctx, store.ImageBuildFilter{Limit: -1})
	wantErr(t, "negative limit", err, store.ErrInvalid)
}
