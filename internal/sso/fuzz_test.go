package sso

import (
	"encoding/json"
	"net/mail"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/check"
)

// FuzzIdentity feeds untrusted answers — a forge's /user, an ID token's
// claims — to what reads them: no panic, and whatever comes out is what
// Runnel's user rules accept.
func FuzzIdentity(f *testing.F) {
	f.Add(uint8(0), []byte(`{"id": 1, "login": "alice", "name": "Alice", "email": "a@example.com", "avatar_url": "https://a.example/x"}`))
	f.Add(uint8(1), []byte(`{"id": 7, "username": "bob@corp", "name": "B\u0000ob", "email": "<b@x.org>", "confirmed_at": "2024-01-01"}`))
	f.Add(uint8(2), []byte(`{"id": 9, "login": "", "full_name": "Gitea User", "email": "g@example.com"}`))
	f.Add(uint8(3), []byte(`{"uuid": "{abc}", "nickname": "日本", "display_name": "x", "links": {"avatar": {"href": "javascript:alert(1)"}}}`))
	f.Add(uint8(4), []byte(`{"sub": "s", "preferred_username": "..", "email": "e@x.y", "email_verified": "true", "groups": "one"}`))
	f.Add(uint8(4), []byte(`{"sub": "s", "email_verified": 1, "groups": ["a", 2, null]}`))
	f.Add(uint8(1), []byte(`{"id": 99999999999999999999}`))
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		var (
			id  *Identity
			err error
		)
		kinds := []Kind{KindGitHub, KindGitLab, KindGitea, KindBitbucket}
		if int(which)%5 < 4 {
			id, err = decodeUser(kinds[int(which)%5], raw)
		} else {
			var cl claims
			if err = json.Unmarshal(raw, &cl); err == nil {
				id, err = cl.identity()
			}
		}
		if err != nil {
			return
		}
		if id.Subject == "" || !utf8.ValidString(id.Subject) {
			t.Errorf("subject %q", id.Subject)
		}
		if id.Login != "" && !loginPattern.MatchString(id.Login) {
			t.Errorf("login %q is not a login", id.Login)
		}
		if err := check.Text("name", id.Name, 200, false); err != nil {
			t.Errorf("name %q: %v", id.Name, err)
		}
		if id.Email != "" {
			if a, err := mail.ParseAddress(id.Email); err != nil || a.Address != id.Email {
				t.Errorf("email %q is not an address", id.Email)
			}
		}
		if id.EmailVerified && id.Email == "" {
			t.Errorf("verified without an address")
		}
		if id.AvatarURL != "" {
			if u, err := url.Parse(id.AvatarURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Errorf("avatar %q is not an http(s) URL", id.AvatarURL)
			}
		}
		if len(id.Orgs) > maxNames {
			t.Errorf("%d orgs", len(id.Orgs))
		}
		for _, o := range id.Orgs {
			if err := check.Text("org", o, 255, false); err != nil || o == "" {
				t.Errorf("org %q: %v", o, err)
			}
		}
	})
}

// FuzzSanitizeLogin: any text becomes a login or nothing.
func FuzzSanitizeLogin(f *testing.F) {
	for _, s := range []string{"alice", "john.doe@example.com", "--x--", "日本語", "a\x00b", "José"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := sanitizeLogin(s)
		if got != "" && !loginPattern.MatchString(got) {
			t.Errorf("sanitizeLogin(%q) = %q, not a login", s, got)
		}
		if again := sanitizeLogin(got); again != got {
			t.Errorf("sanitizeLogin is not idempotent: %q → %q → %q", s, got, again)
		}
	})
}
