package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestSSOProviderFlags: --sso-provider writes a provider at start, its
// client secret from the environment, never shown; a wrong one stops the
// server with a message naming the field.
func TestSSOProviderFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	dir := t.TempDir()
	args := []string{"server", "--addr", "127.0.0.1:0", "--grpc-addr", "off", "--data-dir", dir, "--admin-token", testToken,
		"--embedded-agent-capacity", "0",
		"--sso-provider", "name=corp kind=oidc url=https://id.example.com client-id=runnel allowed-domains=example.com display-name=Corp+SSO",
		"--sso-provider", "name=forge kind=gitea url=https://git.example.com client-id=app sign-in=false connect=true"}
	p, m := startProc(t, "sso", []string{"RUNNEL_SSO_CORP_CLIENT_SECRET=s3cret-value", "RUNNEL_SSO_FORGE_CLIENT_SECRET=forge-secret"}, regexp.MustCompile(`addr=http://(\S+) grpc_addr=(\S+)`), args...)
	p.addr = m[1]
	c := &client{t: t, base: "http://" + p.addr}
	var got map[string]any
	if env := c.do("GET", "/api/v1/auth/providers/corp", nil, &got); env.Code != 0 {
		t.Fatalf("the flag's provider: %+v", env)
	}
	if got["kind"] != "oidc" || got["url"] != "https://id.example.com" || got["clientId"] != "runnel" || got["displayName"] != "Corp SSO" ||
		strings.Contains(strings.ToLower(string(mustJSON(t, got))), "s3cret") {
		t.Fatalf("provider from the flag: %v", got)
	}

	// A forge application that connects accounts and signs nobody in; an
	// oidc provider connects nothing.
	if c.do("GET", "/api/v1/auth/providers/forge", nil, &got); got["signIn"] != false || got["connect"] != true {
		t.Fatalf("forge application from the flag: %v", got)
	}
	if c.do("GET", "/api/v1/auth/providers/corp", nil, &got); got["signIn"] != true || got["connect"] != false {
		t.Fatalf("oidc provider from the flag: %v", got)
	}

	for _, tt := range []struct{ flag, want string }{
		{"name=x kind=oidc url=https://a.example client-id=c connect=true", "--sso-provider connect"},
		{"name=x kind=gitea url=https://a.example client-id=c sign-in=false connect=false", "both are off"},
		{"name=x kind=gitea url=https://a.example client-id=c connect=maybe", "connect=maybe: want true or false"},
		{"name=x kind=nope url=https://a.example client-id=c", "--sso-provider.kind"},
		{"name=x kind=gitea client-id=c client-secret=oops", "environment"},
		{"kind=gitea", "name=…: required"},
	} {
		cmd := exec.Command(binary, "server", "--addr", "127.0.0.1:0", "--grpc-addr", "off", "--data-dir", t.TempDir(), "--sso-provider", tt.flag)
		cmd.Env = os.Environ()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("--sso-provider %q: %v, output %s; want a refusal mentioning %q", tt.flag, err, out, tt.want)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
