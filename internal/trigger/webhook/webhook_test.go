package webhook

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/spec"
)

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestVerify(t *testing.T) {
	body := load(t, "github/push.json")
	const secret = "It's a Secret to Everybody"
	// The example of GitHub's documentation "Validating webhook deliveries".
	if got := SignatureHeaderValue("github", []byte("Hello, World!"), secret); got != "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" {
		t.Fatalf("GitHub's documented example signs to %s", got)
	}
	for _, p := range Providers {
		name, value := SignatureHeader(p, body, secret)
		cases := []struct {
			name   string
			header http.Header
			body   []byte
			secret string
			want   string // "" = accepted; else a substring of the error
		}{
			{"good", hdr(name, value), body, secret, ""},
			{"missing", hdr(), body, secret, name + " is missing"},
			{"other secret", hdr(name, value), body, "another secret", "does not match"},
			{"body changed", hdr(name, value), append([]byte(" "), body...), secret, okIfGitLab(p, "does not match")},
			{"no secret set", hdr(name, value), body, "", "no webhook secret"},
		}
		if p != "gitlab" {
			cases = append(cases,
				struct {
					name   string
					header http.Header
					body   []byte
					secret string
					want   string
				}{"not hex", hdr(name, strings.TrimSuffix(value, value[len(value)-2:])+"zz"), body, secret, "not a hex digest"})
		}
		for _, c := range cases {
			err := Verify(p, c.header, c.body, c.secret)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s/%s: %v", p, c.name, err)
			case c.want != "" && (err == nil || !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s/%s: got %v, want ErrUnauthorized saying %q", p, c.name, err, c.want)
			}
		}
	}
	// GitHub's header needs its prefix; Gitea's has none.
	sig := SignatureHeaderValue("gitea", body, secret)
	if err := Verify("github", hdr("X-Hub-Signature-256", sig), body, secret); err == nil || !strings.Contains(err.Error(), `start with "sha256="`) {
		t.Errorf("github without prefix: %v", err)
	}
	if err := Verify("gitea", hdr("X-Gitea-Signature", "sha256="+sig), body, secret); err == nil {
		t.Error("gitea accepted a prefixed signature")
	}
	if err := Verify("gogs", hdr(), body, secret); !errors.Is(err, ErrUnknownProvider) || !strings.Contains(err.Error(), "github, gitlab, gitea, bitbucket") {
		t.Errorf("unknown provider: %v", err)
	}
}

func okIfGitLab(p, want string) string {
	if p == "gitlab" {
		return "" // GitLab sends the token itself, nothing binds it to the body
	}
	return want
}

func SignatureHeaderValue(p string, body []byte, secret string) string {
	_, v := SignatureHeader(p, body, secret)
	return v
}

func TestParse(t *testing.T) {
	cases := []struct {
		name     string
		provider string
		header   http.Header
		file     string
		want     Event
	}{
		{"github push", "github", hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"), "github/push.json", Event{
			Kind: KindPush, DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			Trigger: runnel.Trigger{Ref: "refs/heads/main", Branch: "main", Commit: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Event: "push",
				Actor: "baxterthehacker", Before: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
				Author: "Baxter T. Hacker", Message: "Update the server\n\nFixes #12", Provider: "github"},
			ChangedPaths: []string{"README.md", "cmd/old/main.go", "cmd/server/main.go", "docs/index.md"},
		}},
		{"github tag", "github", hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d1"), "github/tag.json", Event{
			Kind: KindTag, DeliveryID: "d1",
			Trigger: runnel.Trigger{Ref: "refs/tags/v1.4.0", Tag: "v1.4.0", Commit: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Event: "tag",
				Actor: "baxterthehacker", Before: forge.ZeroSHA, After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
				Author: "Baxter T. Hacker", Message: "Update the server\n\nFixes #12", Provider: "github"},
			ChangedPaths: []string{},
		}},
		{"github delete", "github", hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d2"), "github/delete.json", Event{
			Kind: KindPush, DeliveryID: "d2", Deleted: true,
			Trigger: runnel.Trigger{Ref: "refs/heads/feature/old", Branch: "feature/old", Commit: forge.ZeroSHA, Event: "push",
				Actor: "baxterthehacker", Before: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", After: forge.ZeroSHA, Provider: "github"},
			ChangedPaths: []string{},
		}},
		{"github pr opened", "github", hdr("X-GitHub-Event", "pull_request", "X-GitHub-Delivery", "d3"), "github/pr_opened.json", Event{
			Kind: KindPullRequest, DeliveryID: "d3",
			Trigger: runnel.Trigger{Ref: "refs/pull/42/head", Branch: "changes", Commit: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Event: "pull_request",
				Actor: "octocat", After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Provider: "github", Action: "opened",
				PullRequest: runnel.PullRequest{Number: 42, Title: "Update the README with new information", Head: "changes", Base: "main",
					URL: "https://github.com/baxterthehacker/public-repo/pull/42"}},
		}},
		{"github pr closed", "github", hdr("X-GitHub-Event", "pull_request", "X-GitHub-Delivery", "d4"), "github/pr_closed.json", Event{
			Kind: KindIgnored, DeliveryID: "d4", Trigger: runnel.Trigger{Provider: "github"},
			Reason: `pull request action "closed" does not start runs (accepted: opened, synchronize, reopened)`,
		}},
		{"github ping", "github", hdr("X-GitHub-Event", "ping", "X-GitHub-Delivery", "d5"), "github/ping.json", Event{
			Kind: KindPing, DeliveryID: "d5", Trigger: runnel.Trigger{Provider: "github"},
		}},
		{"github issues", "github", hdr("X-GitHub-Event", "issues", "X-GitHub-Delivery", "d6"), "github/ping.json", Event{
			Kind: KindIgnored, DeliveryID: "d6", Trigger: runnel.Trigger{Provider: "github"},
			Reason: `GitHub event "issues" does not start runs (accepted: push, pull_request, ping)`,
		}},

		{"gitlab push", "gitlab", hdr("X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e"), "gitlab/push.json", Event{
			Kind: KindPush, DeliveryID: "13792a34-cac6-4fda-95a8-c58e00a3954e",
			Trigger: runnel.Trigger{Ref: "refs/heads/main", Branch: "main", Commit: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", Event: "push",
				Actor: "jsmith", Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				Author: "GitLab dev user", Message: "fixed readme", Provider: "gitlab"},
			ChangedPaths: []string{"CHANGELOG", "app/controller/application.rb"},
		}},
		{"gitlab tag", "gitlab", hdr("X-Gitlab-Event", "Tag Push Hook", "Idempotency-Key", "k1"), "gitlab/tag.json", Event{
			Kind: KindTag, DeliveryID: "k1",
			Trigger: runnel.Trigger{Ref: "refs/tags/v1.0.0", Tag: "v1.0.0", Commit: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", Event: "tag",
				Actor: "jsmith", Before: forge.ZeroSHA, After: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", Provider: "gitlab"},
			ChangedPaths: []string{},
		}},
		{"gitlab delete", "gitlab", hdr("X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "u2"), "gitlab/delete.json", Event{
			Kind: KindPush, DeliveryID: "u2", Deleted: true,
			Trigger: runnel.Trigger{Ref: "refs/heads/feature/old", Branch: "feature/old", Commit: forge.ZeroSHA, Event: "push",
				Actor: "jsmith", Before: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", After: forge.ZeroSHA, Provider: "gitlab"},
			ChangedPaths: []string{},
		}},
		{"gitlab mr open", "gitlab", hdr("X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Event-UUID", "u3"), "gitlab/mr_open.json", Event{
			Kind: KindPullRequest, DeliveryID: "u3",
			Trigger: runnel.Trigger{Ref: "refs/merge-requests/1/head", Branch: "ms-viewport", Commit: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				Event: "pull_request", Actor: "root", After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", Author: "GitLab dev user",
				Message: "fixed readme", Provider: "gitlab", Action: "open",
				PullRequest: runnel.PullRequest{Number: 1, Title: "MS-Viewport", Head: "ms-viewport", Base: "main", URL: "http://example.com/diaspora/diaspora/-/merge_requests/1"}},
		}},
		{"gitlab mr merge", "gitlab", hdr("X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Event-UUID", "u4"), "gitlab/mr_merge.json", Event{
			Kind: KindIgnored, DeliveryID: "u4", Trigger: runnel.Trigger{Provider: "gitlab"},
			Reason: `merge request action "merge" does not start runs (accepted: open, update, reopen)`,
		}},

		{"gitea push", "gitea", hdr("X-Gitea-Event", "push", "X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"), "gitea/push.json", Event{
			Kind: KindPush, DeliveryID: "f6266f16-1bf3-46a5-9ea4-602e06ead473",
			Trigger: runnel.Trigger{Ref: "refs/heads/develop", Branch: "develop", Commit: "bffeb74224043ba2feb48d137756c8a9331c449a", Event: "push",
				Actor: "gitea", Before: "28e1879d029cb852e4844d9c718537df08844e03", After: "bffeb74224043ba2feb48d137756c8a9331c449a",
				Author: "Gitea", Message: "Webhooks Yay!\n", Provider: "gitea"},
			ChangedPaths: []string{"go.mod", "web/app.js"},
		}},
		{"gitea tag", "gitea", hdr("X-Gitea-Event", "push", "X-Gitea-Delivery", "g1"), "gitea/tag.json", Event{
			Kind: KindTag, DeliveryID: "g1",
			Trigger: runnel.Trigger{Ref: "refs/tags/v2.0.0", Tag: "v2.0.0", Commit: "bffeb74224043ba2feb48d137756c8a9331c449a", Event: "tag",
				Actor: "gitea", Before: forge.ZeroSHA, After: "bffeb74224043ba2feb48d137756c8a9331c449a", Author: "Gitea", Message: "Webhooks Yay!\n", Provider: "gitea"},
			ChangedPaths: []string{},
		}},
		{"gitea delete", "gitea", hdr("X-Gitea-Event", "push", "X-Gitea-Delivery", "g2"), "gitea/delete.json", Event{
			Kind: KindPush, DeliveryID: "g2", Deleted: true,
			Trigger: runnel.Trigger{Ref: "refs/heads/feature/old", Branch: "feature/old", Commit: forge.ZeroSHA, Event: "push",
				Actor: "gitea", Before: "bffeb74224043ba2feb48d137756c8a9331c449a", After: forge.ZeroSHA, Provider: "gitea"},
			ChangedPaths: []string{},
		}},
		{"gitea create", "gitea", hdr("X-Gitea-Event", "create", "X-Gitea-Delivery", "g3"), "gitea/create.json", Event{
			Kind: KindIgnored, DeliveryID: "g3", Trigger: runnel.Trigger{Provider: "gitea"},
			Reason: `Gitea create event for tag "v2.0.0": runs start from the push event Gitea sends for it too`,
		}},
		{"gitea pr opened", "gitea", hdr("X-Gitea-Event", "pull_request", "X-Gitea-Delivery", "g4"), "gitea/pr_opened.json", Event{
			Kind: KindPullRequest, DeliveryID: "g4",
			Trigger: runnel.Trigger{Ref: "refs/pull/7/head", Branch: "feature/health", Commit: "4f8a2d6b1c5e3f7a9b0d2c4e6f8a1b3c5d7e9f0a", Event: "pull_request",
				Actor: "alice", After: "4f8a2d6b1c5e3f7a9b0d2c4e6f8a1b3c5d7e9f0a", Provider: "gitea", Action: "opened",
				PullRequest: runnel.PullRequest{Number: 7, Title: "Add a health endpoint", Head: "feature/health", Base: "main", URL: "http://localhost:3000/gitea/webhooks/pulls/7"}},
		}},

		{"bitbucket push", "bitbucket", hdr("X-Event-Key", "repo:push", "X-Request-UUID", "0f3d2a6c-7b1e-4b8e-9f1a-2c3d4e5f6a7b"), "bitbucket/push.json", Event{
			Kind: KindPush, DeliveryID: "0f3d2a6c-7b1e-4b8e-9f1a-2c3d4e5f6a7b",
			Trigger: runnel.Trigger{Ref: "refs/heads/main", Branch: "main", Commit: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", Event: "push",
				Actor: "emma", Before: "1e65c05c1d5171631d92438a13901ca7dae9618c", After: "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
				Author: "Emma Lopez", Message: "Fix the retry loop\n", Provider: "bitbucket"},
		}},
		{"bitbucket tag", "bitbucket", hdr("X-Event-Key", "repo:push", "X-Hook-UUID", "h1"), "bitbucket/tag.json", Event{
			Kind: KindTag, DeliveryID: "h1",
			Trigger: runnel.Trigger{Ref: "refs/tags/v3.1.0", Tag: "v3.1.0", Commit: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", Event: "tag",
				Actor: "emma", After: "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
				Author: "Emma Lopez <emma@example.com>", Message: "Fix the retry loop\n", Provider: "bitbucket"},
		}},
		{"bitbucket delete", "bitbucket", hdr("X-Event-Key", "repo:push", "X-Request-UUID", "b2"), "bitbucket/delete.json", Event{
			Kind: KindPush, DeliveryID: "b2", Deleted: true,
			Trigger: runnel.Trigger{Ref: "refs/heads/feature/old", Branch: "feature/old", Event: "push",
				Actor: "emma", Before: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", Provider: "bitbucket"},
		}},
		{"bitbucket pr created", "bitbucket", hdr("X-Event-Key", "pullrequest:created", "X-Request-UUID", "b3"), "bitbucket/pr_created.json", Event{
			Kind: KindPullRequest, DeliveryID: "b3",
			Trigger: runnel.Trigger{Ref: "refs/heads/feature/backoff", Branch: "feature/backoff", Commit: "d3adb33fc0de", Event: "pull_request",
				Actor: "emma", After: "d3adb33fc0de", Provider: "bitbucket", Action: "created",
				PullRequest: runnel.PullRequest{Number: 17, Title: "Retry with backoff", Head: "feature/backoff", Base: "main", URL: "https://bitbucket.org/team/service/pull-requests/17"}},
		}},
		{"bitbucket fulfilled", "bitbucket", hdr("X-Event-Key", "pullrequest:fulfilled", "X-Request-UUID", "b4"), "bitbucket/pr_created.json", Event{
			Kind: KindIgnored, DeliveryID: "b4", Trigger: runnel.Trigger{Provider: "bitbucket"},
			Reason: `Bitbucket event "pullrequest:fulfilled" does not start runs (accepted: repo:push, pullrequest:created, pullrequest:updated)`,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.provider, c.header, load(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got  %+v\nwant %+v", *got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	body := load(t, "github/push.json")
	// Without a delivery header the id is the body's digest: a resend of the
	// same payload is still recognised.
	a, err := Parse("github", hdr("X-GitHub-Event", "push"), body)
	if err != nil || !strings.HasPrefix(a.DeliveryID, "sha256:") {
		t.Fatalf("no delivery header: %+v %v", a, err)
	}
	if b, _ := Parse("github", hdr("X-GitHub-Event", "push"), body); b.DeliveryID != a.DeliveryID {
		t.Error("the same body got two delivery ids")
	}
	for _, c := range []struct {
		provider, event, body string
		want                  error
		msg                   string
	}{
		{"github", "", `{}`, ErrPayload, "X-GitHub-Event is missing"},
		{"github", "push", `{"ref": 1}`, ErrPayload, `github "push" event`},
		{"github", "push", `not json`, ErrPayload, "invalid character"},
		{"github", "push", `{"after": "abc"}`, ErrPayload, "names no ref"},
		{"gitlab", "Push Hook", `[]`, ErrPayload, "cannot unmarshal"},
		{"bitbucket", "repo:push", `{"push":{"changes":[{}]}}`, ErrPayload, "neither new nor old"},
		{"gogs", "push", `{}`, ErrUnknownProvider, "accepted: github, gitlab, gitea, bitbucket"},
	} {
		h := hdr("X-GitHub-Event", c.event, "X-Gitlab-Event", c.event, "X-Event-Key", c.event)
		_, err := Parse(c.provider, h, []byte(c.body))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %s %s: %v, want %v saying %q", c.provider, c.event, c.body, err, c.want, c.msg)
		}
	}
	// GitLab's truncated commit list: paths unknown, not empty.
	ev, err := Parse("gitlab", hdr("X-Gitlab-Event", "Push Hook"),
		[]byte(`{"ref":"refs/heads/main","after":"a","commits":[{"id":"a","added":["x"]}],"total_commits_count":40}`))
	if err != nil || ev.ChangedPaths != nil {
		t.Errorf("truncated GitLab push: %+v %v", ev, err)
	}
}

func filter(inc []string, exc ...string) *spec.Filter {
	return &spec.Filter{Include: inc, Exclude: exc}
}

func TestMatch(t *testing.T) {
	push := func(branch string, paths ...string) *Event {
		return &Event{Kind: KindPush, Trigger: runnel.Trigger{Branch: branch}, ChangedPaths: paths}
	}
	tag := &Event{Kind: KindTag, Trigger: runnel.Trigger{Tag: "v1.2.0"}}
	pr := &Event{Kind: KindPullRequest, Trigger: runnel.Trigger{Branch: "feature/x", PullRequest: runnel.PullRequest{Base: "main"}}}
	unknownPaths := &Event{Kind: KindPush, Trigger: runnel.Trigger{Branch: "main"}}
	cron := spec.Trigger{Type: "cron", Cron: "@daily"}

	cases := []struct {
		name     string
		triggers []spec.Trigger
		ev       *Event
		want     int // index of the matched trigger, -1 none, -2 the implicit one
		reason   string
	}{
		{"no event trigger matches all", []spec.Trigger{cron}, push("dev"), -2, ""},
		{"no triggers at all", nil, pr, -2, ""},
		{"ping never", nil, &Event{Kind: KindPing}, -1, "a ping event does not start runs"},
		{"branch include", []spec.Trigger{{Type: "event", Branches: filter([]string{"main"})}}, push("main"), 0, ""},
		{"branch not included", []spec.Trigger{cron, {Type: "event", Branches: filter([]string{"main"})}}, push("dev"), -1,
			`triggers[1]: branch "dev" is not included by branches.include ["main"]`},
		{"branch excluded", []spec.Trigger{{Type: "event", Branches: filter(nil, "release/**")}}, push("release/1.x/hotfix"), -1,
			`triggers[0]: branch "release/1.x/hotfix" is excluded by branches.exclude pattern "release/**"`},
		{"single star stays in a segment", []spec.Trigger{{Type: "event", Branches: filter([]string{"feature/*"})}}, push("feature/a/b"), -1,
			`triggers[0]: branch "feature/a/b" is not included by branches.include ["feature/*"]`},
		{"regex is anchored", []spec.Trigger{{Type: "event", Branches: filter([]string{"regex:rel-[0-9]+"})}}, push("rel-12x"), -1,
			`triggers[0]: branch "rel-12x" is not included by branches.include ["regex:rel-[0-9]+"]`},
		{"regex matches whole", []spec.Trigger{{Type: "event", Branches: filter([]string{"regex:rel-[0-9]+|main"})}}, push("main"), 0, ""},
		{"events", []spec.Trigger{{Type: "event", Events: []string{"pull_request"}}}, push("main"), -1,
			`triggers[0]: event "push" is not in events ["pull_request"]`},
		{"pull request base branch", []spec.Trigger{{Type: "event", Branches: filter([]string{"main"})}}, pr, 0, ""},
		{"pull request base not included", []spec.Trigger{{Type: "event", Branches: filter([]string{"develop"})}}, pr, -1,
			`triggers[0]: base branch "main" is not included by branches.include ["develop"]`},
		{"tags only implies tag events", []spec.Trigger{{Type: "event", Tags: filter([]string{"v*"})}}, push("main"), -1,
			`triggers[0]: event "push" is not in events ["tag"] (implied: the trigger filters tags only)`},
		{"branches only implies no tags", []spec.Trigger{{Type: "event", Branches: filter([]string{"main"})}}, tag, -1,
			`triggers[0]: event "tag" is not in events ["push", "pull_request"] (implied: the trigger filters branches only)`},
		{"tag glob", []spec.Trigger{{Type: "event", Tags: filter([]string{"v*"})}}, tag, 0, ""},
		{"tag excluded", []spec.Trigger{{Type: "event", Tags: filter([]string{"v*"}, "regex:v\\d+\\.\\d+\\.0")}}, tag, -1,
			`triggers[0]: tag "v1.2.0" is excluded by tags.exclude pattern "regex:v\\d+\\.\\d+\\.0"`},
		{"paths match one", []spec.Trigger{{Type: "event", Paths: filter([]string{"src/**"})}}, push("main", "README.md", "src/a/b.go"), 0, ""},
		{"paths miss", []spec.Trigger{{Type: "event", Paths: filter([]string{"src/**"}, "**/*.md")}}, push("main", "README.md", "docs/x.md", "src/a.md", "z.txt"), -1,
			`triggers[0]: none of the 4 changed paths (["README.md", "docs/x.md", "src/a.md", …]) passes paths include ["src/**"], exclude ["**/*.md"]`},
		{"paths unknown do not exclude", []spec.Trigger{{Type: "event", Paths: filter([]string{"src/**"})}}, unknownPaths, 0, ""},
		{"first match wins", []spec.Trigger{
			{Type: "event", Branches: filter([]string{"dev"})},
			{Type: "event", Branches: filter([]string{"main"}), Variables: map[string]string{"env": "prod"}},
			{Type: "event"},
		}, push("main"), 1, ""},
		{"every reason listed", []spec.Trigger{
			{Type: "event", Branches: filter([]string{"dev"})},
			{Type: "event", Events: []string{"tag"}},
		}, push("main"), -1, `triggers[0]: branch "main" is not included by branches.include ["dev"]; triggers[1]: event "push" is not in events ["tag"]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, reason := Match(c.triggers, c.ev)
			switch {
			case c.want == -1 && m != nil:
				t.Errorf("matched %+v, want none", m)
			case c.want == -2 && (m == nil || m.Type != "event" || m.Branches != nil || m.Variables != nil):
				t.Errorf("got %+v (%s), want the implicit match-all trigger", m, reason)
			case c.want >= 0 && m != &c.triggers[c.want]:
				t.Errorf("got %+v (%s), want triggers[%d]", m, reason, c.want)
			}
			if reason != c.reason {
				t.Errorf("reason\n got %s\nwant %s", reason, c.reason)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	seeds := []struct{ provider, event, file string }{
		{"github", "push", "github/push.json"}, {"github", "push", "github/delete.json"},
		{"github", "pull_request", "github/pr_opened.json"}, {"github", "ping", "github/ping.json"},
		{"gitlab", "Push Hook", "gitlab/push.json"}, {"gitlab", "Merge Request Hook", "gitlab/mr_open.json"},
		{"gitea", "push", "gitea/tag.json"}, {"gitea", "pull_request", "gitea/pr_opened.json"}, {"gitea", "create", "gitea/create.json"},
		{"bitbucket", "repo:push", "bitbucket/push.json"}, {"bitbucket", "repo:push", "bitbucket/delete.json"},
		{"bitbucket", "pullrequest:created", "bitbucket/pr_created.json"},
	}
	for _, s := range seeds {
		f.Add(s.provider, s.event, load(f, s.file))
	}
	f.Add("bitbucket", "repo:push", []byte(`{"push":{"changes":[{"new":null,"old":null}]}}`))
	f.Add("github", "push", []byte(`{"ref":"refs/heads/x","head_commit":null,"commits":null}`))
	f.Fuzz(func(t *testing.T, provider, event string, body []byte) {
		h := hdr("X-GitHub-Event", event, "X-Gitlab-Event", event, "X-Gitea-Event", event, "X-Event-Key", event)
		ev, err := Parse(provider, h, body)
		if err != nil {
			if !errors.Is(err, ErrPayload) && !errors.Is(err, ErrUnknownProvider) {
				t.Fatalf("error wraps neither sentinel: %v", err)
			}
			return
		}
		if ev.DeliveryID == "" {
			t.Fatal("no delivery id")
		}
		// Matching any parsed event never panics either.
		Match([]spec.Trigger{{Type: "event", Branches: filter([]string{"**"}), Paths: filter([]string{"**"})}}, ev)
	})
}
