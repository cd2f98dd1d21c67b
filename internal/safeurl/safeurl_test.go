package safeurl

import "testing"

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://host/o/r":                      "https://host/o/r",
		"https://user:s3cret@host/o/r":          "https://user:xxxxx@host/o/r",
		"https://TOKEN@host/o/r":                "https://xxxxx@host/o/r",
		"http://u:p@exa mple.com:x/%zz?a=1":     "http://u:xxxxx@exa mple.com:x/%zz?a=1",
		"u:p@host:bad port":                     "u:xxxxx@host:bad port",
		"git@github.com:org/repo.git":           "git@github.com:org/repo.git",
		"ssh://git@host/org/repo":               "ssh://xxxxx@host/org/repo",
		"https://host/a@b":                      "https://host/a@b",
		"https://u:p@host?q=@x":                 "https://u:xxxxx@host?q=@x",
		"s3://bucket?endpoint=http://k:s@minio": "s3://bucket?endpoint=http://k:s@minio",
		"":                                      "",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOriginAndHost(t *testing.T) {
	for _, tc := range []struct{ in, origin, host string }{
		{"https://u:p@hooks.example.com/a/b?token=1", "https://hooks.example.com/a/b?…", "https://hooks.example.com/…"},
		{"https://hooks.slack.com/services/T/B/X", "https://hooks.slack.com/services/T/B/X", "https://hooks.slack.com/…"},
		{"not a url", "<invalid URL>", "<invalid URL>"},
	} {
		if got := Origin(tc.in); got != tc.origin {
			t.Errorf("Origin(%q) = %q, want %q", tc.in, got, tc.origin)
		}
		if got := Host(tc.in); got != tc.host {
			t.Errorf("Host(%q) = %q, want %q", tc.in, got, tc.host)
		}
	}
}

func TestSplitRepoPath(t *testing.T) {
	for in, want := range map[string][2]string{
		"/group/sub/name.git/": {"group/sub", "name"},
		"org/repo":             {"org", "repo"},
		"repo.git":             {"", "repo"},
		"/":                    {"", ""},
		"/org/.git":            {"", ""},
	} {
		if ns, name := SplitRepoPath(in); ns != want[0] || name != want[1] {
			t.Errorf("SplitRepoPath(%q) = %q, %q; want %q, %q", in, ns, name, want[0], want[1])
		}
	}
}
