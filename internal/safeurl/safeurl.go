// Package safeurl is the one place that decides how a URL may be shown
// (credentials hidden, or reduced to its origin or host) and how a
// repository URL's path splits into namespace and name. Every message, log
// line and answer that shows a URL someone configured goes through it.
package safeurl

import (
	"net/url"
	"strings"
)

// Mask replaces hidden credentials (url.URL.Redacted's choice).
const Mask = "xxxxx"

// Redact hides the credentials in a URL's user info: a password
// (user:pass@ shows user:xxxxx@) or, in a URL with a scheme, a user name
// alone, which may be a token (https://TOKEN@host/ shows
// https://xxxxx@host/). The scp-like user of git@host:org/repo stays. It
// works on text that does not parse as a URL too, and leaves everything
// else as it was.
func Redact(raw string) string {
	start, hasScheme := 0, false
	if i := strings.Index(raw, "://"); i >= 0 {
		start, hasScheme = i+3, true
	}
	end := len(raw)
	if j := strings.IndexAny(raw[start:], "/?#"); j >= 0 {
		end = start + j
	}
	at := strings.LastIndex(raw[start:end], "@")
	if at < 0 {
		return raw
	}
	userinfo := raw[start : start+at]
	switch name, _, hasPass := strings.Cut(userinfo, ":"); {
	case hasPass:
		userinfo = name + ":" + Mask
	case hasScheme:
		userinfo = Mask
	}
	return raw[:start] + userinfo + raw[start+at:]
}

// Origin shows a URL as scheme://host/path: without user info, and with a
// query (which may carry a token) shown as "?…". A URL without a host is
// hidden completely ("<invalid URL>").
func Origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<invalid URL>"
	}
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}

// Host shows only a URL's scheme and host, for URLs whose path is the
// secret (a Slack incoming webhook's).
func Host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<invalid URL>"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// SplitRepoPath splits a repository URL's path, "/group/sub/name.git/",
// into its namespace ("group/sub") and name ("name"), ignoring empty
// segments; ("", "") when there is no name.
func SplitRepoPath(p string) (namespace, name string) {
	var segs []string
	for seg := range strings.SplitSeq(p, "/") {
		if seg != "" {
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "", ""
	}
	last := strings.TrimSuffix(segs[len(segs)-1], ".git")
	if last == "" {
		return "", ""
	}
	return strings.Join(segs[:len(segs)-1], "/"), last
}
