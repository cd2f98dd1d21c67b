package check

import (
	"errors"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
)

func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string // "" accepted; else a part of the message
	}{
		{"name ok", Name("body.name", "web app-1.0"), ""},
		{"name empty", Name("body.name", ""), "body.name: required"},
		{"name dots", Name("body.name", "a..b"), `not contain ".."`},
		{"name trailing space", Name("body.name", "web "), "not end with a space"},
		{"project ok", ProjectID("body.projectId", "proj_1"), ""},
		{"project slash", ProjectID("body.projectId", "a/b"), "body.projectId: must be 1 to 100"},
		{"request id empty", RequestID("body.requestId", ""), ""},
		{"request id uuid", RequestID("body.requestId", "3f2b7c1e-0a4d-4b8e-9c2f-1d5e6a7b8c9d"), ""},
		{"request id space", RequestID("body.requestId", "a b"), "body.requestId"},
		{"text control", Text("body.reason", "a\x00b", 10, true), "control character U+0000 at byte 1"},
		{"text newline single line", Text("body.reason", "a\nb", 10, false), "control character U+000A"},
		{"text newline multiline", Text("body.reason", "a\nb", 10, true), ""},
		{"text long", Text("body.reason", "ééé", 2, false), "at most 2 characters, got 3"},
		{"text utf8", Text("body.reason", "\xff", 10, false), "valid UTF-8"},
		{"principal spaces", Principal("body.editor", " me"), "must not start or end with spaces"},
		{"repo https", RepoURL("body.repoUrl", "https://git.example.com/org/app.git"), ""},
		{"repo scp", RepoURL("body.repoUrl", "git@github.com:org/app.git"), ""},
		{"repo file", RepoURL("body.repoUrl", "file:///srv/git/app.git"), ""},
		{"repo no host", RepoURL("body.repoUrl", "https:///x"), "must be an http(s)://"},
		{"repo ftp", RepoURL("body.repoUrl", "ftp://h/x"), "must be an http(s)://"},
		{"branch ok", Branch("body.defaultBranch", "release/1.x"), ""},
		{"branch dots", Branch("body.defaultBranch", "a..b"), "not a valid git branch name"},
		{"branch lock", Branch("body.defaultBranch", "main.lock"), "not a valid git branch name"},
		{"branch dash", Branch("body.defaultBranch", "-x"), "not a valid git branch name"},
		{"path ok", RepoPath("body.pipelineFilePath", ".runnel/pipeline.yaml"), ""},
		{"path up", RepoPath("body.pipelineFilePath", "../x"), "clean relative path"},
		{"path abs", RepoPath("body.pipelineFilePath", "/x"), "clean relative path"},
		{"path unclean", RepoPath("body.pipelineFilePath", "a//b"), "clean relative path"},
		{"metadata empty key", Metadata("body.metadata", map[string]any{"": 1}), "keys must not be empty"},
		{"enum", Enum("body.saveMode", "x", "direct", "pr"), `must be one of direct, pr; got "x"`},
	} {
		if tc.want == "" {
			if tc.err != nil {
				t.Errorf("%s: %v", tc.name, tc.err)
			}
			continue
		}
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, tc.err, tc.want)
			continue
		}
		if !errors.Is(tc.err, runnel.ErrInvalid) {
			t.Errorf("%s: %v is not runnel.ErrInvalid", tc.name, tc.err)
		}
	}
}
