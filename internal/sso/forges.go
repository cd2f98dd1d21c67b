package sso

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/runnel-ci/runnel"
)

const (
	// maxPages bounds the pages of memberships read (100 names a page on
	// GitHub, GitLab and Bitbucket, 50 on Gitea).
	maxPages = 10
	// maxNames bounds the memberships kept.
	maxNames = 1000
)

// identity reads who the access token belongs to from the forge's API:
// the user, the email addresses and, when AllowedOrgs is set, the
// memberships. verified are the verified email addresses.
func (a *api) identity(ctx context.Context, p Provider) (id *Identity, verified []string, err error) {
	var raw json.RawMessage
	userPath := "/user"
	if _, err := a.get(ctx, userPath, &raw); err != nil {
		return nil, nil, err
	}
	if id, err = decodeUser(a.kind, raw); err != nil {
		return nil, nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: GET %s%s: %s", a.name, a.base, userPath, err)
	}
	var emails []forgeEmail
	switch a.kind {
	case KindGitHub, KindGitea:
		if _, err := a.get(ctx, "/user/emails", &emails); err != nil {
			return nil, nil, err
		}
	case KindBitbucket:
		var page struct {
			Values []struct {
				Email     string `json:"email"`
				Primary   bool   `json:"is_primary"`
				Confirmed bool   `json:"is_confirmed"`
			} `json:"values"`
		}
		if _, err := a.get(ctx, "/user/emails?pagelen=100", &page); err != nil {
			return nil, nil, err
		}
		for _, e := range page.Values {
			emails = append(emails, forgeEmail{Email: e.Email, Primary: e.Primary, Verified: e.Confirmed})
		}
	case KindGitLab:
		// /user's email is the primary address, verified when the
		// account is confirmed (decodeUser).
		if id.EmailVerified {
			verified = []string{id.Email}
		}
	}
	if a.kind != KindGitLab {
		verified = id.setEmails(emails)
	}
	if len(p.AllowedOrgs) > 0 {
		if id.Orgs, err = a.memberships(ctx); err != nil {
			return nil, nil, err
		}
	}
	return id, verified, nil
}

// forgeEmail is one of a user's addresses (GitHub's and Gitea's
// /user/emails; Bitbucket's mapped).
type forgeEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// setEmails chooses id's address from the user's list: the primary one
// (else the profile's, verified when the list says so). It returns the
// verified addresses.
func (id *Identity) setEmails(list []forgeEmail) (verified []string) {
	for _, e := range list {
		addr := cleanEmail(e.Email)
		if addr == "" {
			continue
		}
		if e.Verified {
			verified = append(verified, addr)
		}
		if e.Primary {
			id.Email, id.EmailVerified = addr, e.Verified
		}
	}
	if !id.EmailVerified && id.Email != "" {
		for _, v := range verified {
			if v == id.Email {
				id.EmailVerified = true
			}
		}
	}
	return verified
}

// decodeUser reads a forge's /user answer. The profile's email address is
// kept as unverified, except GitLab's, verified when the account is
// confirmed.
func decodeUser(kind Kind, raw []byte) (*Identity, error) {
	var (
		subject, login, name, email, avatar string
		verified                            bool
	)
	switch kind {
	case KindGitHub, KindGitea:
		var u struct {
			ID        int64  `json:"id"`
			Login     string `json:"login"`
			Name      string `json:"name"`      // GitHub
			FullName  string `json:"full_name"` // Gitea
			Email     string `json:"email"`
			AvatarURL string `json:"avatar_url"`
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			return nil, fmt.Errorf("the answer is not a user: %s", clean(err.Error(), 200))
		}
		if u.ID > 0 {
			subject = strconv.FormatInt(u.ID, 10)
		}
		login, name, email, avatar = u.Login, u.Name, u.Email, u.AvatarURL
		if kind == KindGitea {
			name = u.FullName
		}
	case KindGitLab:
		var u struct {
			ID          int64  `json:"id"`
			Username    string `json:"username"`
			Name        string `json:"name"`
			Email       string `json:"email"`
			AvatarURL   string `json:"avatar_url"`
			ConfirmedAt string `json:"confirmed_at"`
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			return nil, fmt.Errorf("the answer is not a user: %s", clean(err.Error(), 200))
		}
		if u.ID > 0 {
			subject = strconv.FormatInt(u.ID, 10)
		}
		login, name, email, avatar, verified = u.Username, u.Name, u.Email, u.AvatarURL, u.ConfirmedAt != ""
	case KindBitbucket:
		var u struct {
			UUID        string `json:"uuid"`
			Nickname    string `json:"nickname"`
			Username    string `json:"username"`
			DisplayName string `json:"display_name"`
			Links       struct {
				Avatar struct {
					Href string `json:"href"`
				} `json:"avatar"`
			} `json:"links"`
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			return nil, fmt.Errorf("the answer is not a user: %s", clean(err.Error(), 200))
		}
		subject, login, name, avatar = clean(u.UUID, 255), u.Nickname, u.DisplayName, u.Links.Avatar.Href
		if login == "" {
			login = u.Username
		}
	default:
		return nil, fmt.Errorf("kind %q has no user API", kind)
	}
	if subject == "" {
		return nil, fmt.Errorf("the answer names no user id")
	}
	id := &Identity{Subject: subject, Name: cleanName(name), Email: cleanEmail(email), AvatarURL: cleanAvatar(avatar)}
	id.EmailVerified = verified && id.Email != ""
	id.Login = sanitizeLogin(login)
	if id.Login == "" {
		id.Login = sanitizeLogin(localPart(id.Email))
	}
	return id, nil
}

// memberships lists the organisations (groups, workspaces) of the user.
func (a *api) memberships(ctx context.Context) ([]string, error) {
	switch a.kind {
	case KindGitHub:
		return collect(ctx, a, "/user/orgs?per_page=100&page=%d", 100, func(o struct {
			Login string `json:"login"`
		}) string {
			return o.Login
		})
	case KindGitLab:
		return collect(ctx, a, "/groups?min_access_level=10&per_page=100&page=%d", 100, func(g struct {
			FullPath string `json:"full_path"`
		}) string {
			return g.FullPath
		})
	case KindGitea:
		return collect(ctx, a, "/user/orgs?limit=50&page=%d", 50, func(o struct {
			Name     string `json:"name"`
			Username string `json:"username"`
		}) string {
			if o.Name != "" {
				return o.Name
			}
			return o.Username
		})
	case KindBitbucket:
		var names []string
		for page := 1; page <= maxPages; page++ {
			var p struct {
				Values []struct {
					Slug string `json:"slug"`
				} `json:"values"`
				Next string `json:"next"`
			}
			if _, err := a.get(ctx, fmt.Sprintf("/workspaces?pagelen=100&page=%d", page), &p); err != nil {
				return nil, err
			}
			for _, w := range p.Values {
				names = appendName(names, w.Slug)
			}
			if p.Next == "" || len(p.Values) == 0 {
				break
			}
		}
		return names, nil
	}
	return nil, nil
}

// collect reads a paged list of memberships: pages while the forge's
// X-Total-Count says more follow or, without it, while a page is full.
func collect[T any](ctx context.Context, a *api, pathFmt string, perPage int, name func(T) string) ([]string, error) {
	var names []string
	seen := 0
	for page := 1; page <= maxPages; page++ {
		var items []T
		h, err := a.get(ctx, fmt.Sprintf(pathFmt, page), &items)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			names = appendName(names, name(it))
		}
		seen += len(items)
		if !more(h, seen, len(items), perPage) {
			break
		}
	}
	return names, nil
}

func more(h http.Header, seen, got, perPage int) bool {
	if got == 0 {
		return false
	}
	if total, err := strconv.Atoi(h.Get("X-Total-Count")); err == nil {
		return seen < total
	}
	return got >= perPage
}

// appendName keeps a membership's name, cleaned, up to maxNames.
func appendName(names []string, n string) []string {
	if n = clean(n, 255); n == "" || len(names) >= maxNames {
		return names
	}
	return append(names, n)
}
