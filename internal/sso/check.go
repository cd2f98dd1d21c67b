package sso

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// Bounds of a provider's fields.
const (
	maxScopes  = 50
	maxOrgs    = 100
	maxDomains = 100
)

// Check validates the provider as a request body holds it: errors are
// runnel.ErrInvalid naming the field (body.kind, body.scopes[1], …) and
// never quote the client secret.
func (p Provider) Check() error { return p.CheckAt("body") }

// CheckAt is Check with the fields named under prefix ("" for bare names;
// "providers[2]" names providers[2].url).
func (p Provider) CheckAt(prefix string) error {
	field := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	if err := checkName(field("name"), p.Name); err != nil {
		return err
	}
	kinds := make([]string, 0, 5)
	for _, k := range Kinds() {
		kinds = append(kinds, string(k))
	}
	if err := check.Enum(field("kind"), string(p.Kind), kinds...); err != nil {
		return err
	}
	if err := checkToken(field("clientId"), p.ClientID, 255, true); err != nil {
		return err
	}
	secretRequired := p.Kind == KindGitHub || p.Kind == KindBitbucket
	if p.ClientSecret == "" && secretRequired {
		return runnel.Invalidf("%s: required for kind %s", field("clientSecret"), p.Kind)
	}
	if p.ClientSecret != "" {
		if len(p.ClientSecret) > 1024 || strings.IndexFunc(p.ClientSecret, badTokenRune) >= 0 {
			return runnel.Invalidf("%s: must be at most 1024 characters without spaces or control characters", field("clientSecret"))
		}
	}
	if err := p.checkURL(field("url")); err != nil {
		return err
	}
	if len(p.Scopes) > maxScopes {
		return runnel.Invalidf("%s: at most %d scopes, got %d", field("scopes"), maxScopes, len(p.Scopes))
	}
	for i, s := range p.Scopes {
		f := fmt.Sprintf("%s[%d]", field("scopes"), i)
		if err := checkToken(f, s, 200, true); err != nil {
			return err
		}
		if slices.Index(p.Scopes, s) < i {
			return runnel.Invalidf("%s: %q is given twice", f, s)
		}
	}
	if p.Kind == KindOIDC && len(p.Scopes) > 0 && !slices.Contains(p.Scopes, "openid") {
		return runnel.Invalidf("%s: must include openid for kind oidc", field("scopes"))
	}
	if len(p.AllowedOrgs) > maxOrgs {
		return runnel.Invalidf("%s: at most %d names, got %d", field("allowedOrgs"), maxOrgs, len(p.AllowedOrgs))
	}
	for i, o := range p.AllowedOrgs {
		f := fmt.Sprintf("%s[%d]", field("allowedOrgs"), i)
		if o == "" {
			return runnel.Invalidf("%s: must not be empty", f)
		}
		if err := check.Text(f, o, 255, false); err != nil {
			return err
		}
		if strings.TrimSpace(o) != o {
			return runnel.Invalidf("%s: must not start or end with spaces, got %q", f, o)
		}
	}
	if len(p.AllowedDomains) > maxDomains {
		return runnel.Invalidf("%s: at most %d domains, got %d", field("allowedDomains"), maxDomains, len(p.AllowedDomains))
	}
	for i, d := range p.AllowedDomains {
		if !validDomain(d) {
			return runnel.Invalidf("%s: must be a domain name such as example.com (no \"@\", no scheme); got %q",
				fmt.Sprintf("%s[%d]", field("allowedDomains"), i), d)
		}
	}
	if err := check.Text(field("displayName"), p.DisplayName, 100, false); err != nil {
		return err
	}
	return nil
}

// checkName accepts a slug: it is a segment of Runnel's callback URL.
func checkName(field, v string) error {
	if v == "" {
		return runnel.Invalidf("%s: required", field)
	}
	ok := len(v) <= 63
	for i := 0; i < len(v) && ok; i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			ok = false
		}
	}
	if !ok {
		return runnel.Invalidf("%s: must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit (it is part of the callback URL); got %q", field, v)
	}
	return nil
}

// checkToken accepts a non-empty value without spaces or control
// characters, of at most n bytes.
func checkToken(field, v string, n int, required bool) error {
	switch {
	case v == "" && required:
		return runnel.Invalidf("%s: required", field)
	case len(v) > n:
		return runnel.Invalidf("%s: at most %d characters, got %d", field, n, len(v))
	case strings.IndexFunc(v, badTokenRune) >= 0:
		return runnel.Invalidf("%s: must not contain spaces or control characters; got %q", field, v)
	}
	return nil
}

func badTokenRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
}

// checkURL checks url for the provider's kind.
func (p Provider) checkURL(field string) error {
	if p.URL == "" {
		switch p.Kind {
		case KindGitea:
			return runnel.Invalidf("%s: required for kind gitea: Gitea's base URL, such as https://gitea.example.com", field)
		case KindOIDC:
			return runnel.Invalidf("%s: required for kind oidc: the issuer, such as https://accounts.example.com", field)
		}
		return nil
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || len(p.URL) > 2048 || strings.ContainsAny(p.URL, " \t\r\n") {
		return runnel.Invalidf("%s: must be an http(s) URL without credentials, query or fragment, such as https://git.example.com; got %q",
			field, safeurl.Redact(p.URL))
	}
	return nil
}

// validDomain accepts a DNS name: labels of letters, digits and '-', not
// starting or ending with '-', joined by dots.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
