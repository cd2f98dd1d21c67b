package gitea

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/testgitea"
)

// TestHost drives the Host methods against a real Gitea (skipped without
// the build of .ci/gitea.sh unless RUNNEL_TEST_ALL=1).
func TestHost(t *testing.T) {
	s := testgitea.Start(t)
	ctx := context.Background()
	const password = "Alice-passw0rd!"
	aliceID := s.CreateUser(t, "alice", password, "alice@example.com")
	s.API(t, http.MethodPatch, "/admin/users/alice", map[string]any{"login_name": "alice", "source_id": 0,
		"full_name": "Alice Liddell"}, nil)
	s.CreateUser(t, "bob", "Bob-passw0rd!", "bob@example.com")
	token := s.CreateToken(t, "alice", password)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := forge.Conn{Base: Forge{}.APIBase(u.Scheme, u.Host), Token: token}

	// Repositories: three of alice's (one private), one of bob's she
	// collaborates on (read), one private of bob's she cannot see. The
	// shared one is private: Gitea records no access for a read
	// collaborator of a user's public repository (everyone reads it), so
	// /user/repos and /repos/search?uid= do not list it.
	s.CreateRepo(t, "alice", "app-one")
	s.CreateRepo(t, "alice", "app-two")
	s.API(t, http.MethodPost, "/admin/users/alice/repos", map[string]any{"name": "tool", "private": true, "auto_init": true}, nil)
	s.API(t, http.MethodPost, "/admin/users/bob/repos", map[string]any{"name": "shared", "private": true, "auto_init": true}, nil)
	s.API(t, http.MethodPut, "/repos/bob/shared/collaborators/alice", map[string]any{"permission": "read"}, nil)
	s.API(t, http.MethodPost, "/admin/users/bob/repos", map[string]any{"name": "secret", "private": true, "auto_init": true}, nil)

	t.Run("Account", func(t *testing.T) {
		a, err := Forge{}.Account(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != strconv.FormatInt(aliceID, 10) || a.Login != "alice" || a.Name != "Alice Liddell" || a.AvatarURL == "" {
			t.Errorf("Account = %+v, want id %d, alice, Alice Liddell and an avatar", a, aliceID)
		}
	})

	names := func(p *forge.RepoPage) []string {
		var out []string
		for _, r := range p.Repos {
			out = append(out, r.FullName)
		}
		return out
	}
	t.Run("Repos", func(t *testing.T) {
		var all []forge.Repo
		page, pages := 1, 0
		for page != 0 {
			p, err := Forge{}.Repos(ctx, c, forge.ListOptions{Page: page, PerPage: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Repos) > 2 {
				t.Errorf("page %d holds %d repositories, want at most 2", page, len(p.Repos))
			}
			if page == 1 && p.Next != 2 {
				t.Errorf("page 1: Next = %d, want 2", p.Next)
			}
			all = append(all, p.Repos...)
			page = p.Next
			if pages++; pages > 5 {
				t.Fatal("more pages than repositories")
			}
		}
		got := map[string]forge.Repo{}
		for _, r := range all {
			got[r.FullName] = r
		}
		if len(got) != 4 || len(all) != 4 {
			t.Fatalf("Repos listed %v, want alice/app-one, alice/app-two, alice/tool, bob/shared once each", all)
		}
		one := got["alice/app-one"]
		want := forge.Repo{FullName: "alice/app-one", URL: s.URL + "/alice/app-one", CloneURL: s.URL + "/alice/app-one.git",
			DefaultBranch: "main", Permissions: forge.Permissions{Pull: true, Push: true, Admin: true}}
		if !reflect.DeepEqual(one, want) {
			t.Errorf("alice/app-one = %+v, want %+v", one, want)
		}
		if r := got["alice/tool"]; !r.Private || !r.Permissions.Admin {
			t.Errorf("alice/tool = %+v, want private with admin", r)
		}
		if r := got["bob/shared"]; r.Permissions != (forge.Permissions{Pull: true}) {
			t.Errorf("bob/shared (read collaborator) = %+v, want pull only", r.Permissions)
		}
		// A large PerPage is Gitea's maximum: everything on one page.
		p, err := Forge{}.Repos(ctx, c, forge.ListOptions{PerPage: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Repos) != 4 || p.Next != 0 {
			t.Errorf("one page of 1000: %v, next %d", names(p), p.Next)
		}
	})

	t.Run("Search", func(t *testing.T) {
		tests := []struct {
			o    forge.ListOptions
			want []string
			next int
		}{
			{forge.ListOptions{Search: "app"}, []string{"alice/app-one", "alice/app-two"}, 0},
			{forge.ListOptions{Search: "APP-T"}, []string{"alice/app-two"}, 0},
			{forge.ListOptions{Search: "shared"}, []string{"bob/shared"}, 0},
			{forge.ListOptions{Search: "tool"}, []string{"alice/tool"}, 0},
			{forge.ListOptions{Search: "secret"}, nil, 0}, // bob's, private, not alice's
			{forge.ListOptions{Search: "app", PerPage: 1}, []string{"alice/app-one"}, 2},
			{forge.ListOptions{Search: "app", PerPage: 1, Page: 2}, []string{"alice/app-two"}, 0},
		}
		for _, tt := range tests {
			p, err := Forge{}.Repos(ctx, c, tt.o)
			if err != nil {
				t.Fatalf("Repos(%+v): %v", tt.o, err)
			}
			got := names(p)
			if tt.o.PerPage == 0 { // the order is Gitea's: compare as sets
				gs := map[string]bool{}
				for _, n := range got {
					gs[n] = true
				}
				ok := len(gs) == len(tt.want) && len(got) == len(tt.want)
				for _, n := range tt.want {
					ok = ok && gs[n]
				}
				if !ok || p.Next != tt.next {
					t.Errorf("Repos(%+v) = %v next %d, want %v next %d", tt.o, got, p.Next, tt.want, tt.next)
				}
				continue
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], "alice/app-") || p.Next != tt.next {
				t.Errorf("Repos(%+v) = %v next %d, want one of alice/app-* next %d", tt.o, got, p.Next, tt.next)
			}
		}
	})

	t.Run("Repo", func(t *testing.T) {
		r, err := Forge{}.Repo(ctx, c, "bob/shared")
		if err != nil {
			t.Fatal(err)
		}
		if r.FullName != "bob/shared" || r.DefaultBranch != "main" || r.Permissions != (forge.Permissions{Pull: true}) ||
			r.CloneURL != s.URL+"/bob/shared.git" {
			t.Errorf("Repo(bob/shared) = %+v", r)
		}
		for _, gone := range []string{"alice/missing", "bob/secret"} {
			if _, err := (Forge{}).Repo(ctx, c, gone); !errors.Is(err, forge.ErrGone) {
				t.Errorf("Repo(%s): %v, want ErrGone", gone, err)
			}
		}
	})

	t.Run("Hooks", func(t *testing.T) {
		type delivery struct {
			header http.Header
			body   []byte
		}
		deliveries := make(chan delivery, 10)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			deliveries <- delivery{r.Header.Clone(), b}
		}))
		defer srv.Close()
		const secret = "hook-secret-0123456789"
		hookURL := srv.URL + "/hooks/gitea/app-one"

		h, err := Forge{}.CreateHook(ctx, c, "alice/app-one", forge.HookSpec{URL: hookURL, Secret: secret, InsecureSSL: true})
		if err != nil {
			t.Fatal(err)
		}
		want := &forge.Hook{ID: h.ID, URL: hookURL, Events: []string{"pull_request", "pull_request_sync", "push"}, Active: true}
		if h.ID == "" || !reflect.DeepEqual(h, want) {
			t.Errorf("CreateHook = %+v, want %+v", h, want)
		}
		got, err := Forge{}.Hook(ctx, c, "alice/app-one", h.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Hook = %+v, want %+v", got, want)
		}
		var raw struct {
			Type   string            `json:"type"`
			Config map[string]string `json:"config"`
		}
		s.API(t, http.MethodGet, "/repos/alice/app-one/hooks/"+h.ID, nil, &raw)
		if raw.Type != "gitea" || raw.Config["content_type"] != "json" || raw.Config["url"] != hookURL {
			t.Errorf("Gitea has the hook as %+v", raw)
		}

		// Gitea delivers to loopback here (testgitea allows it), signed
		// with the secret.
		s.API(t, http.MethodPost, "/repos/alice/app-one/hooks/"+h.ID+"/tests", nil, nil)
		select {
		case d := <-deliveries:
			if err := (Forge{}).Verify(d.header, d.body, secret); err != nil {
				t.Errorf("delivery does not verify: %v", err)
			}
			ev, err := Forge{}.Parse(d.header, d.body)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != forge.KindPush || ev.Trigger.Branch != "main" || ev.DeliveryID == "" {
				t.Errorf("test delivery parsed as %+v", ev)
			}
		case <-time.After(30 * time.Second):
			t.Error("no test delivery within 30s")
		}

		if err := (Forge{}).DeleteHook(ctx, c, "alice/app-one", h.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := (Forge{}).Hook(ctx, c, "alice/app-one", h.ID); !errors.Is(err, forge.ErrGone) {
			t.Errorf("Hook after DeleteHook: %v, want ErrGone", err)
		}
		if err := (Forge{}).DeleteHook(ctx, c, "alice/app-one", h.ID); err != nil {
			t.Errorf("DeleteHook again: %v, want nil", err)
		}
		// A read collaborator may not manage hooks.
		if _, err := (Forge{}).CreateHook(ctx, c, "bob/shared", forge.HookSpec{URL: hookURL, Secret: secret}); !errors.Is(err, forge.ErrForbidden) {
			t.Errorf("CreateHook on a repository alice reads: %v, want ErrForbidden", err)
		}
	})

	t.Run("PullRequestEvents", func(t *testing.T) {
		// Real deliveries of Gitea's pull request events: from a fork (bob's)
		// and from a branch of the repository itself.
		deliveries := make(chan http.Header, 20)
		bodies := make(chan []byte, 20)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			deliveries <- r.Header.Clone()
			bodies <- b
		}))
		defer srv.Close()
		const secret = "hook-secret-pr-0123456789"
		if _, err := (Forge{}).CreateHook(ctx, c, "alice/app-two", forge.HookSpec{URL: srv.URL + "/hook", Secret: secret}); err != nil {
			t.Fatal(err)
		}
		file := func(repo, branch, newBranch, name string) {
			s.API(t, http.MethodPost, "/repos/"+repo+"/contents/"+name+"?sudo="+url.QueryEscape(strings.Split(repo, "/")[0]),
				map[string]any{"content": "aGVsbG8K", "message": "add " + name, "branch": branch, "new_branch": newBranch}, nil)
		}
		s.API(t, http.MethodPost, "/repos/alice/app-two/forks?sudo=bob", map[string]any{}, nil)
		file("bob/app-two", "main", "", "fork.txt")
		s.API(t, http.MethodPost, "/repos/alice/app-two/pulls?sudo=bob",
			map[string]any{"head": "bob:main", "base": "main", "title": "From the fork"}, nil)
		file("alice/app-two", "main", "feature", "feature.txt")
		s.API(t, http.MethodPost, "/repos/alice/app-two/pulls?sudo=alice",
			map[string]any{"head": "feature", "base": "main", "title": "From a branch"}, nil)

		// await reads deliveries until pull request events of each title and
		// action ("TITLE ACTION") came (Gitea may send others: a synchronized
		// for the fork's just after it opened).
		got := map[string]*forge.Event{}
		await := func(want ...string) {
			t.Helper()
			deadline := time.After(30 * time.Second)
			missing := func() bool {
				for _, k := range want {
					if got[k] == nil {
						return true
					}
				}
				return false
			}
			for missing() {
				select {
				case h := <-deliveries:
					b := <-bodies
					if err := (Forge{}).Verify(h, b, secret); err != nil {
						t.Errorf("delivery does not verify: %v", err)
					}
					ev, err := Forge{}.Parse(h, b)
					if err != nil {
						t.Fatalf("%s delivery: %v\n%s", h.Get("X-Gitea-Event"), err, b)
					}
					if ev.Kind == forge.KindPullRequest {
						got[ev.Trigger.PullRequest.Title+" "+ev.Trigger.Action] = ev
					}
				case <-deadline:
					t.Fatalf("pull request deliveries within 30s: %v, want %v", keys(got), want)
				}
			}
		}
		await("From the fork opened", "From a branch opened")
		// A push to the head branch: action synchronized (pull_request_sync).
		file("alice/app-two", "feature", "", "more.txt")
		await("From a branch synchronized")
		if ev := got["From a branch synchronized"]; ev == nil || ev.Trigger.Branch != "feature" || ev.Trigger.PullRequest.Fork {
			t.Errorf("synchronized pull request: %+v (got %v)", ev, keys(got))
		}
		if ev := got["From the fork opened"]; ev == nil || !ev.Trigger.PullRequest.Fork || ev.Trigger.PullRequest.HeadRepo != "bob/app-two" ||
			ev.Trigger.Action != "opened" || ev.Trigger.Branch != "main" {
			t.Errorf("pull request from the fork: %+v", ev)
		}
		if ev := got["From a branch opened"]; ev == nil || ev.Trigger.PullRequest.Fork || ev.Trigger.PullRequest.HeadRepo != "" ||
			ev.Trigger.Branch != "feature" {
			t.Errorf("pull request from a branch: %+v", ev)
		}
	})

	t.Run("SetStatus", func(t *testing.T) {
		var branch struct {
			Commit struct {
				ID string `json:"id"`
			} `json:"commit"`
		}
		s.API(t, http.MethodGet, "/repos/alice/app-one/branches/main", nil, &branch)
		sha := branch.Commit.ID
		if len(sha) != 40 {
			t.Fatalf("branch main: commit %q", sha)
		}
		tests := []struct {
			in                        forge.CommitStatus
			state, description, ctxID string
		}{
			{forge.CommitStatus{State: "pending", Context: "runnel/pending", Description: "Queued", TargetURL: "https://runnel.example.com/runs/1"},
				"pending", "Queued", "runnel/pending"},
			{forge.CommitStatus{State: "running", Context: "runnel/running", TargetURL: "https://runnel.example.com/runs/2"},
				"pending", "Running", "runnel/running"},
			{forge.CommitStatus{State: "success", Context: "runnel/success", TargetURL: "https://runnel.example.com/runs/3"},
				"success", "", "runnel/success"},
			{forge.CommitStatus{State: "failure", Context: "runnel/failure", Description: "2 tests failed", TargetURL: "https://runnel.example.com/runs/4"},
				"failure", "2 tests failed", "runnel/failure"},
			{forge.CommitStatus{State: "error", Context: "runnel/error", TargetURL: "https://runnel.example.com/runs/5"},
				"error", "", "runnel/error"},
			{forge.CommitStatus{State: "cancelled", Context: "runnel/cancelled", TargetURL: "https://runnel.example.com/runs/6"},
				"error", "Cancelled", "runnel/cancelled"},
			{forge.CommitStatus{State: "success", TargetURL: "https://runnel.example.com/runs/7"}, "success", "", "runnel"},
		}
		for _, tt := range tests {
			if err := (Forge{}).SetStatus(ctx, c, "alice/app-one", sha, tt.in); err != nil {
				t.Fatalf("SetStatus(%+v): %v", tt.in, err)
			}
		}
		var statuses []struct {
			State       string `json:"status"`
			Context     string `json:"context"`
			TargetURL   string `json:"target_url"`
			Description string `json:"description"`
		}
		s.API(t, http.MethodGet, "/repos/alice/app-one/commits/"+sha+"/statuses?limit=50", nil, &statuses)
		byContext := map[string]int{}
		for i, st := range statuses {
			byContext[st.Context] = i
		}
		for _, tt := range tests {
			i, ok := byContext[tt.ctxID]
			if !ok {
				t.Errorf("no status with context %q among %+v", tt.ctxID, statuses)
				continue
			}
			st := statuses[i]
			if st.State != tt.state || st.Description != tt.description || st.TargetURL != tt.in.TargetURL {
				t.Errorf("status %q = %+v, want state %q description %q target %q", tt.ctxID, st, tt.state, tt.description, tt.in.TargetURL)
			}
		}
		if err := (Forge{}).SetStatus(ctx, c, "alice/app-one", sha, forge.CommitStatus{State: "skipped"}); err == nil {
			t.Error("SetStatus of an unknown state: no error")
		}
		// A read collaborator may not set statuses.
		var shared struct {
			Commit struct {
				ID string `json:"id"`
			} `json:"commit"`
		}
		s.API(t, http.MethodGet, "/repos/bob/shared/branches/main", nil, &shared)
		err := Forge{}.SetStatus(ctx, c, "bob/shared", shared.Commit.ID, forge.CommitStatus{State: "success", Context: "ci"})
		if !errors.Is(err, forge.ErrForbidden) {
			t.Errorf("SetStatus on a repository alice reads: %v, want ErrForbidden", err)
		}
	})

	t.Run("BadToken", func(t *testing.T) {
		bad := c
		bad.Token = "0123456789abcdef0123456789abcdef01234567"
		calls := map[string]func() error{
			"Account": func() error { _, err := Forge{}.Account(ctx, bad); return err },
			"Repos":   func() error { _, err := Forge{}.Repos(ctx, bad, forge.ListOptions{}); return err },
			"Search":  func() error { _, err := Forge{}.Repos(ctx, bad, forge.ListOptions{Search: "app"}); return err },
			"Repo":    func() error { _, err := Forge{}.Repo(ctx, bad, "alice/app-one"); return err },
			"Hook":    func() error { _, err := Forge{}.Hook(ctx, bad, "alice/app-one", "1"); return err },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, forge.ErrTokenRejected) {
				t.Errorf("%s with a bad token: %v, want ErrTokenRejected", name, err)
				continue
			}
			if strings.Contains(err.Error(), bad.Token) || !strings.Contains(err.Error(), "gitea") {
				t.Errorf("%s: %q (want gitea named, no token)", name, err)
			}
		}
	})

	t.Run("Scopes", func(t *testing.T) {
		// A token that may read the user but not repositories.
		ro := c
		ro.Token = s.CreateToken(t, "alice", password, "read:user")
		if _, err := (Forge{}).Account(ctx, ro); err != nil {
			t.Errorf("Account with read:user: %v", err)
		}
		_, err := Forge{}.CreateHook(ctx, ro, "alice/app-one", forge.HookSpec{URL: "http://127.0.0.1:1/x", Secret: "hook-secret-0123456789"})
		if !errors.Is(err, forge.ErrForbidden) || strings.Contains(err.Error(), ro.Token) {
			t.Errorf("CreateHook without write:repository: %v, want ErrForbidden", err)
		}
	})
}

func TestParseForkPullRequest(t *testing.T) {
	h := http.Header{}
	h.Set("X-Gitea-Event", "pull_request")
	h.Set("X-Gitea-Delivery", "g1")
	body := `{"action":"synchronized","number":3,"pull_request":{"number":3,"title":"Fix","html_url":"http://gitea.local/alice/app/pulls/3",
		"head":{"label":"fix","ref":"fix","sha":"abc","repo":{"full_name":"mallory/app","fork":true}},
		"base":{"label":"main","ref":"main","sha":"def","repo":{"full_name":"alice/app"}}},"sender":{"login":"mallory"}}`
	ev, err := Forge{}.Parse(h, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if pr := ev.Trigger.PullRequest; ev.Kind != forge.KindPullRequest || !pr.Fork || pr.HeadRepo != "mallory/app" {
		t.Errorf("fork pull request: %s %+v", ev.Kind, pr)
	}
	same := strings.ReplaceAll(body, "mallory/app", "alice/app")
	if ev, err = (Forge{}).Parse(h, []byte(same)); err != nil {
		t.Fatal(err)
	}
	if pr := ev.Trigger.PullRequest; pr.Fork || pr.HeadRepo != "" {
		t.Errorf("same-repository pull request: %+v", pr)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
