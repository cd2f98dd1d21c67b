package sso

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
)

func TestProviderCheck(t *testing.T) {
	valid := Provider{Name: "corp-sso", Kind: KindOIDC, ClientID: "runnel", ClientSecret: "very-secret", URL: "https://login.example.com/realms/x"}
	for _, tc := range []struct {
		name   string
		change func(p *Provider)
		want   string // "" for valid
	}{
		{"valid oidc", func(p *Provider) {}, ""},
		{"public oidc client", func(p *Provider) { p.ClientSecret = "" }, ""},
		{"github.com by default", func(p *Provider) { p.Kind, p.URL = KindGitHub, "" }, ""},
		{"github enterprise", func(p *Provider) { p.Kind, p.URL = KindGitHub, "https://ghe.example.com" }, ""},
		{"gitlab by default", func(p *Provider) { p.Kind, p.URL, p.ClientSecret = KindGitLab, "", "" }, ""},
		{"bitbucket", func(p *Provider) { p.Kind, p.URL = KindBitbucket, "" }, ""},
		{"gitea over http", func(p *Provider) { p.Kind, p.URL = KindGitea, "http://gitea:3000/" }, ""},
		{"everything", func(p *Provider) {
			p.Scopes = []string{"openid", "email", "groups"}
			p.AllowedOrgs = []string{"Acme Corp", "platform/team"}
			p.AllowedDomains = []string{"example.com", "Corp.Example.ORG"}
			p.DisplayName = "Corporate sign-in"
		}, ""},

		{"no name", func(p *Provider) { p.Name = "" }, "body.name: required"},
		{"upper-case name", func(p *Provider) { p.Name = "Corp" }, "body.name: must be 1 to 63 lower-case"},
		{"name with slash", func(p *Provider) { p.Name = "a/b" }, "body.name:"},
		{"name starting with dash", func(p *Provider) { p.Name = "-a" }, "body.name:"},
		{"long name", func(p *Provider) { p.Name = strings.Repeat("a", 64) }, "body.name:"},
		{"no kind", func(p *Provider) { p.Kind = "" }, "body.kind: must be one of github, gitlab, gitea, bitbucket, oidc"},
		{"unknown kind", func(p *Provider) { p.Kind = "saml" }, `body.kind: must be one of github, gitlab, gitea, bitbucket, oidc; got "saml"`},
		{"no client id", func(p *Provider) { p.ClientID = "" }, "body.clientId: required"},
		{"client id with space", func(p *Provider) { p.ClientID = "a b" }, "body.clientId: must not contain spaces"},
		{"github without secret", func(p *Provider) { p.Kind, p.ClientSecret = KindGitHub, "" }, "body.clientSecret: required for kind github"},
		{"bitbucket without secret", func(p *Provider) { p.Kind, p.ClientSecret = KindBitbucket, "" }, "body.clientSecret: required for kind bitbucket"},
		{"secret with newline", func(p *Provider) { p.ClientSecret = "very\nsecret" }, "body.clientSecret: must be at most 1024 characters"},
		{"oidc without url", func(p *Provider) { p.URL = "" }, "body.url: required for kind oidc"},
		{"gitea without url", func(p *Provider) { p.Kind, p.URL = KindGitea, "" }, "body.url: required for kind gitea"},
		{"relative url", func(p *Provider) { p.URL = "login.example.com" }, "body.url: must be an http(s) URL"},
		{"ftp url", func(p *Provider) { p.URL = "ftp://login.example.com" }, "body.url:"},
		{"url with query", func(p *Provider) { p.URL = "https://login.example.com/?tenant=x" }, "body.url:"},
		{"url with credentials", func(p *Provider) { p.URL = "https://user:hunter2@login.example.com" }, "body.url:"},
		{"empty scope", func(p *Provider) { p.Scopes = []string{"openid", ""} }, "body.scopes[1]: required"},
		{"scope with space", func(p *Provider) { p.Scopes = []string{"openid email"} }, "body.scopes[0]: must not contain spaces"},
		{"scope twice", func(p *Provider) { p.Scopes = []string{"openid", "email", "email"} }, `body.scopes[2]: "email" is given twice`},
		{"oidc scopes without openid", func(p *Provider) { p.Scopes = []string{"email"} }, "body.scopes: must include openid for kind oidc"},
		{"too many scopes", func(p *Provider) { p.Scopes = make([]string, 51) }, "body.scopes: at most 50 scopes"},
		{"empty org", func(p *Provider) { p.AllowedOrgs = []string{"acme", ""} }, "body.allowedOrgs[1]: must not be empty"},
		{"org with spaces around", func(p *Provider) { p.AllowedOrgs = []string{" acme"} }, "body.allowedOrgs[0]: must not start or end with spaces"},
		{"org with control character", func(p *Provider) { p.AllowedOrgs = []string{"ac\x00me"} }, "body.allowedOrgs[0]: control character"},
		{"domain with @", func(p *Provider) { p.AllowedDomains = []string{"@example.com"} }, "body.allowedDomains[0]: must be a domain name"},
		{"domain as URL", func(p *Provider) { p.AllowedDomains = []string{"example.com", "https://example.com"} }, "body.allowedDomains[1]:"},
		{"domain with empty label", func(p *Provider) { p.AllowedDomains = []string{"example..com"} }, "body.allowedDomains[0]:"},
		{"long display name", func(p *Provider) { p.DisplayName = strings.Repeat("x", 101) }, "body.displayName: at most 100 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := valid
			tc.change(&p)
			err := p.Check()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check accepted %+v, want %q", p, tc.want)
			}
			if !errors.Is(err, runnel.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %q, want ErrInvalid saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "very-secret") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Check: %q shows a secret", err)
			}
		})
	}
	if err := (Provider{Name: "x", Kind: KindOIDC, ClientID: "c"}).CheckAt("sso.providers[0]"); err == nil ||
		!strings.HasPrefix(err.Error(), "sso.providers[0].url: ") {
		t.Errorf("CheckAt: %v, want the field under the prefix", err)
	}
}

func TestRequestedScopes(t *testing.T) {
	for _, tc := range []struct {
		p    Provider
		want string
	}{
		{Provider{Kind: KindGitHub}, "read:user user:email"},
		{Provider{Kind: KindGitHub, AllowedOrgs: []string{"a"}}, "read:user user:email read:org"},
		{Provider{Kind: KindGitLab}, "read_user"},
		{Provider{Kind: KindGitLab, AllowedOrgs: []string{"a"}}, "read_user read_api"},
		{Provider{Kind: KindGitea}, "read:user"},
		{Provider{Kind: KindGitea, AllowedOrgs: []string{"a"}}, "read:user read:organization"},
		{Provider{Kind: KindBitbucket}, ""},
		{Provider{Kind: KindOIDC}, "openid profile email"},
		{Provider{Kind: KindOIDC, Scopes: []string{"openid", "groups"}}, "openid groups"},
	} {
		if got := strings.Join(tc.p.RequestedScopes(), " "); got != tc.want {
			t.Errorf("%s (orgs %v): scopes %q, want %q", tc.p.Kind, tc.p.AllowedOrgs, got, tc.want)
		}
	}
}

var loginPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func TestSanitizeLogin(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                        "alice",
		"Alice.Smith_2":                "Alice.Smith_2",
		"john.doe@example.com":         "john.doe-example.com",
		"  --bob--  ":                  "bob",
		"José Müller":                  "Jos-M-ller",
		"日本語":                          "",
		"._-":                          "",
		"":                             "",
		"a b\tc":                       "a-b-c",
		strings.Repeat("x", 80):        strings.Repeat("x", 63),
		strings.Repeat("y", 62) + "!z": strings.Repeat("y", 62), // the cut leaves a '-', trimmed
	} {
		got := sanitizeLogin(in)
		if got != want {
			t.Errorf("sanitizeLogin(%q) = %q, want %q", in, got, want)
		}
		if got != "" && !loginPattern.MatchString(got) {
			t.Errorf("sanitizeLogin(%q) = %q, not a login", in, got)
		}
	}
}

func TestEmailDomain(t *testing.T) {
	for in, want := range map[string]string{
		"a@Example.COM": "example.com",
		"a@b@c.org":     "c.org",
		"@example.com":  "",
		"a@":            "",
		"plain":         "",
		"a@exa mple":    "",
	} {
		if got := emailDomain(in); got != want {
			t.Errorf("emailDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
