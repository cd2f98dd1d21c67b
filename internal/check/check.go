// Package check holds the input rules that several resources share: names,
// ids, free text, principals, repository URLs, branches and paths. Each
// check returns nil or a runnel.ErrInvalid error that names the field (as
// the caller spells it: body.name, query parameter name) and says what is
// accepted.
package check

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/runnel-ci/runnel"
)

var (
	namePattern      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$`) })
	projectPattern   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`) })
	requestIDPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`) })
)

// Name accepts pipeline names: letters, digits, space, '.', '_', '-',
// no "..". Names appear in URLs of forges and in file names of exports, so
// anything path-like is refused.
func Name(field, v string) error {
	if v == "" {
		return runnel.Invalidf("%s: required", field)
	}
	if !namePattern().MatchString(v) || strings.Contains(v, "..") || strings.HasSuffix(v, " ") {
		return runnel.Invalidf(
			"%s: must be 1 to 100 letters, digits, spaces, '.', '_' or '-', start with a letter or digit, not end with a space and not contain \"..\"; got %q", field, v)
	}
	return nil
}

// ProjectID accepts project ids like proj_xxx.
func ProjectID(field, v string) error {
	if v == "" {
		return runnel.Invalidf("%s: required", field)
	}
	if !projectPattern().MatchString(v) || strings.Contains(v, "..") {
		return runnel.Invalidf(
			"%s: must be 1 to 100 letters, digits, '.', '_' or '-', start with a letter or digit and not contain \"..\"; got %q", field, v)
	}
	return nil
}

// RequestID accepts idempotency keys such as req-20260302-001 or UUIDs.
func RequestID(field, v string) error {
	if v == "" || requestIDPattern().MatchString(v) {
		return nil
	}
	return runnel.Invalidf(
		"%s: must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit; got %q", field, v)
}

// Text accepts free text up to max runes; multiline allows newlines and
// tabs. Control characters are refused: they corrupt logs and terminals.
func Text(field, v string, max int, multiline bool) error {
	if !utf8.ValidString(v) {
		return runnel.Invalidf("%s: must be valid UTF-8", field)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return runnel.Invalidf("%s: at most %d characters, got %d", field, max, n)
	}
	for i, r := range v {
		if multiline && (r == '\n' || r == '\t' || r == '\r') {
			continue
		}
		if unicode.IsControl(r) {
			return runnel.Invalidf("%s: control character %U at byte %d is not allowed", field, r, i)
		}
	}
	return nil
}

// Principal accepts who did something (createdBy, editor, operator,
// triggeredBy): a token subject such as user_xxx or an email address.
func Principal(field, v string) error {
	if err := Text(field, v, 200, false); err != nil {
		return err
	}
	if strings.TrimSpace(v) != v {
		return runnel.Invalidf("%s: must not start or end with spaces, got %q", field, v)
	}
	return nil
}

// scpLike matches git's scp-like addresses: git@github.com:org/repo.git.
var scpLike = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$`) })

// RepoURL accepts http(s), ssh, git and file URLs and scp-like addresses.
func RepoURL(field, v string) error {
	if v == "" {
		return nil
	}
	if err := Text(field, v, 2048, false); err != nil {
		return err
	}
	if scpLike().MatchString(v) {
		return nil
	}
	u, err := url.Parse(v)
	if err == nil && u.Host == "" && u.Scheme != "file" {
		err = fmt.Errorf("no host")
	}
	switch {
	case err != nil:
	case u.Scheme == "http", u.Scheme == "https", u.Scheme == "ssh", u.Scheme == "git", u.Scheme == "file":
		return nil
	}
	return runnel.Invalidf(
		"%s: must be an http(s)://, ssh://, git:// or file:// URL or an address like git@host:org/repo.git; got %q", field, v)
}

// Branch applies git's ref-name rules (git check-ref-format) that matter
// here: no "..", no spaces or control characters, none of ~^:?*[\, not starting
// with '-' or '/', not ending with '/', '.' or ".lock".
func Branch(field, v string) error {
	if v == "" {
		return nil
	}
	bad := len(v) > 255 || strings.Contains(v, "..") || strings.Contains(v, "//") || strings.Contains(v, "@{") ||
		strings.ContainsAny(v, " ~^:?*[\\") || strings.HasPrefix(v, "-") || strings.HasPrefix(v, "/") ||
		strings.HasSuffix(v, "/") || strings.HasSuffix(v, ".") || strings.HasSuffix(v, ".lock") || v == "@"
	for _, r := range v {
		if unicode.IsControl(r) {
			bad = true
		}
	}
	if bad || !utf8.ValidString(v) {
		return runnel.Invalidf("%s: %q is not a valid git branch name", field, v)
	}
	return nil
}

// RepoPath accepts a file path inside the repository: relative, clean,
// never escaping the repository.
func RepoPath(field, v string) error {
	if v == "" {
		return nil
	}
	if err := Text(field, v, 1024, false); err != nil {
		return err
	}
	if strings.HasPrefix(v, "/") || strings.Contains(v, "\\") || path.Clean(v) != v ||
		v == ".." || strings.HasPrefix(v, "../") {
		return runnel.Invalidf(
			"%s: must be a clean relative path inside the repository such as .runnel/pipeline.yaml (no leading '/', no '..', no '\\'); got %q", field, v)
	}
	return nil
}

// Metadata bounds metadata keys; values are free JSON (the body limit
// bounds their size).
func Metadata(field string, m map[string]any) error {
	for k := range m {
		if k == "" {
			return runnel.Invalidf("%s: keys must not be empty", field)
		}
		if err := Text(fmt.Sprintf("%s[%q]", field, k), k, 100, false); err != nil {
			return err
		}
	}
	return nil
}

// Enum accepts one of values.
func Enum(field, v string, values ...string) error {
	for _, a := range values {
		if v == a {
			return nil
		}
	}
	return runnel.Invalidf("%s: must be one of %s; got %q", field, strings.Join(values, ", "), v)
}

// Bytes writes a size as messages do: 64 KiB, 1 MiB, 70000 bytes.
func Bytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
