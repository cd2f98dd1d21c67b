package sso

import (
	"net/mail"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLogin is the longest login Runnel accepts.
const maxLogin = 63

// sanitizeLogin makes a provider's user name a Runnel login
// (^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$): other characters become '-' (one
// for a run of them), the start is cut to the first letter or digit, the
// end of '.', '-' and '_', the length to 63. "" when nothing is left.
func sanitizeLogin(s string) string {
	b := make([]byte, 0, min(len(s), 4*maxLogin))
	dash := false
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'):
		case r == '.' || r == '_' || r == '-':
			if len(b) == 0 {
				continue
			}
		default:
			dash = len(b) > 0
			continue
		}
		if dash {
			b = append(b, '-')
			dash = false
		}
		b = append(b, byte(r))
		if len(b) >= maxLogin {
			break
		}
	}
	if len(b) > maxLogin {
		b = b[:maxLogin]
	}
	for len(b) > 0 && (b[len(b)-1] == '.' || b[len(b)-1] == '-' || b[len(b)-1] == '_') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// cleanName is a display name as Runnel stores it: at most 200 characters,
// no control characters, trimmed.
func cleanName(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			continue
		}
		if n == 200 {
			break
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}

// cleanEmail is addr when it is a plain email address Runnel accepts, else "".
func cleanEmail(addr string) string {
	if addr == "" || len(addr) > 254 {
		return ""
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" {
		return ""
	}
	return addr
}

// cleanAvatar is raw when it is an http(s) URL Runnel accepts, else "".
func cleanAvatar(raw string) string {
	if raw == "" || len(raw) > 2048 {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return ""
	}
	return raw
}

// localPart is what comes before an email address's last '@'.
func localPart(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i > 0 {
		return addr[:i]
	}
	return ""
}

// emailDomain is an email address's domain, lower-cased ("" when addr
// has none).
func emailDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return ""
	}
	d := strings.ToLower(addr[i+1:])
	if !validDomain(d) {
		return ""
	}
	return d
}
