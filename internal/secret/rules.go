package secret

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/mask"
)

// The rules of secrets and credentials. Every check returns nil or a
// runnel.ErrInvalid error whose message names the request field at fault as
// the API spells it (body.value).

// MaxSecretBytes is the largest secret value.
const MaxSecretBytes = 64 << 10

// Bounds of a credential's token and key.
const (
	// MinTokenBytes is mask.MinLen: a shorter token could not be masked in
	// logs.
	MinTokenBytes = 4
	MaxTokenBytes = 4096
	MaxKeyBytes   = 16 << 10
)

// CredentialKinds are the kinds of source-code credential: forges that take
// an access token, basic (a user name and a token or password for any host)
// and ssh (a private key).
var CredentialKinds = []string{"github", "gitlab", "gitea", "bitbucket", "basic", "ssh"}

var (
	secretNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`) })
	// hostPortRe: a host name or IPv4 address, optionally with a port; no
	// scheme, user or path.
	hostPortRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(:[0-9]{1,5})?$`)
	})
	usernameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$`) })
	// defaultHosts and defaultUsers per kind: what the forges expect with an
	// access token.
	defaultHosts = map[string]string{"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}
	defaultUsers = map[string]string{"github": "x-access-token", "gitlab": "oauth2", "bitbucket": "x-token-auth", "ssh": "git"}
)

// DefaultHost is the host a credential of the kind has when none is given
// ("" when the kind has none: the host is then required, except for ssh).
func DefaultHost(kind string) string { return defaultHosts[kind] }

// DefaultUser is the user name a credential of the kind has when none is
// given ("" when the kind has none: the user name is then required).
func DefaultUser(kind string) string { return defaultUsers[kind] }

// CheckSecretName checks a secret's name: an environment variable's.
func CheckSecretName(v string) error {
	if !secretNameRe().MatchString(v) {
		return runnel.Invalidf("body.name: %q is not a secret name; use letters, digits and '_', starting with a letter or '_' (at most 128), as for an environment variable", v)
	}
	return nil
}

// CheckSecretValue checks a value; raw is its JSON text in the body.
func CheckSecretValue(v string, raw json.RawMessage) error {
	switch {
	case len(v) < mask.MinLen:
		return runnel.Invalidf("body.value: at least %d bytes: shorter values cannot be masked in logs", mask.MinLen)
	case len(v) > MaxSecretBytes:
		return runnel.Invalidf("body.value: %s, at most %s", check.Bytes(int64(len(v))), check.Bytes(int64(MaxSecretBytes)))
	case !utf8.ValidString(v) || !ValidJSONText(raw):
		// encoding/json turns invalid UTF-8 (and lone surrogate escapes) into
		// U+FFFD without an error: without the check on the raw text, the
		// value stored would silently differ from the one sent.
		return runnel.Invalidf("body.value: must be valid UTF-8 text (encode binary values, e.g. in base64)")
	case strings.IndexByte(v, 0) >= 0:
		return runnel.Invalidf("body.value: contains a NUL character, which no environment variable or argument can hold")
	case mask.New([]string{v}) == nil:
		// Masking is per line: a value whose every line is short would be
		// shown in logs as is.
		return runnel.Invalidf("body.value: no line of it is at least %d bytes long: shorter lines cannot be masked in logs", mask.MinLen)
	}
	return nil
}

// ValidJSONText is check.ValidJSONText.
func ValidJSONText(raw []byte) bool { return check.ValidJSONText(raw) }

// CredentialSecret is the secret part of a credential request: the decoded
// token and key, and their JSON text in the body (for the UTF-8 check, which
// the decoded strings cannot tell).
type CredentialSecret struct {
	AccessToken, PrivateKey         string
	AccessTokenJSON, PrivateKeyJSON json.RawMessage
}

// CheckCredentialSecret validates the token or key for the kind and returns
// what to seal ("" when an update gives neither); present tells which of
// accessToken and privateKey the request carries.
func CheckCredentialSecret(kind string, m CredentialSecret, present Present, creating bool) (string, error) {
	if kind == "ssh" {
		if present("accessToken") {
			return "", runnel.Invalidf("body.accessToken: an ssh credential takes privateKey (an OpenSSH or PEM private key), not accessToken")
		}
		if !present("privateKey") {
			if creating {
				return "", runnel.Invalidf("body.privateKey: required for kind ssh (the text of an OpenSSH or PEM private key file)")
			}
			return "", nil
		}
		return CheckPrivateKey(m.PrivateKey, m.PrivateKeyJSON)
	}
	if present("privateKey") {
		return "", runnel.Invalidf("body.privateKey: only an ssh credential takes a private key; kind %s takes accessToken", kind)
	}
	if !present("accessToken") {
		if creating {
			return "", runnel.Invalidf("body.accessToken: required for kind %s (the access token or password git sends to the host)", kind)
		}
		return "", nil
	}
	return CheckAccessToken(m.AccessToken, m.AccessTokenJSON)
}

// CheckAccessToken: one line of printable text that git's credential helper
// protocol can carry and the log masker can find. raw is its JSON text in
// the body.
func CheckAccessToken(t string, raw json.RawMessage) (string, error) {
	switch {
	case !utf8.ValidString(t) || !ValidJSONText(raw):
		// encoding/json turns invalid UTF-8 (and lone surrogate escapes)
		// into U+FFFD without an error: the raw text tells.
		return "", runnel.Invalidf("body.accessToken: must be valid UTF-8 text; a token is one line of printable text without spaces")
	case strings.IndexByte(t, 0) >= 0:
		return "", runnel.Invalidf("body.accessToken: contains a NUL character; a token is one line of printable text without spaces")
	case strings.ContainsAny(t, "\n\r"):
		return "", runnel.Invalidf("body.accessToken: contains a line break; a token is one line of printable text without spaces")
	case strings.ContainsFunc(t, func(r rune) bool { return r == ' ' || r < ' ' || r == 0x7f }):
		return "", runnel.Invalidf("body.accessToken: contains a space or a control character; a token is one line of printable text without spaces")
	case len(t) < MinTokenBytes || len(t) > MaxTokenBytes:
		return "", runnel.Invalidf("body.accessToken: %d bytes; a token is %d to %d bytes (shorter ones cannot be masked in logs)", len(t), MinTokenBytes, MaxTokenBytes)
	}
	return t, nil
}

// CheckPrivateKey accepts the text of one unencrypted OpenSSH or PEM private
// key and returns it as stored: line ends as LF, surrounding space trimmed,
// one final newline. raw is its JSON text in the body.
func CheckPrivateKey(k string, raw json.RawMessage) (string, error) {
	const want = "the text of one OpenSSH or PEM private key file, from -----BEGIN … PRIVATE KEY----- to -----END … PRIVATE KEY-----"
	switch {
	case !utf8.ValidString(k) || !ValidJSONText(raw):
		return "", runnel.Invalidf("body.privateKey: must be valid UTF-8 text (%s)", want)
	case strings.IndexByte(k, 0) >= 0:
		return "", runnel.Invalidf("body.privateKey: contains a NUL character; give %s", want)
	}
	k = strings.TrimSpace(strings.ReplaceAll(k, "\r\n", "\n"))
	if len(k) > MaxKeyBytes {
		return "", runnel.Invalidf("body.privateKey: %s, at most %s", check.Bytes(int64(len(k))), check.Bytes(MaxKeyBytes))
	}
	if strings.HasPrefix(k, "ssh-") || strings.HasPrefix(k, "ecdsa-") || strings.HasPrefix(k, "sk-") ||
		strings.HasPrefix(k, "-----BEGIN PUBLIC KEY-----") || strings.HasPrefix(k, "-----BEGIN SSH2 PUBLIC KEY-----") {
		return "", runnel.Invalidf("body.privateKey: this is a public key; give the private key (%s)", want)
	}
	if !strings.HasPrefix(k, "-----BEGIN ") {
		return "", runnel.Invalidf("body.privateKey: not a private key; expected %s", want)
	}
	block, rest := pem.Decode([]byte(k))
	switch {
	case block == nil:
		return "", runnel.Invalidf("body.privateKey: not a private key (no well-formed PEM block: a damaged BEGIN/END line or base64 body); expected %s", want)
	case !strings.HasSuffix(block.Type, "PRIVATE KEY"):
		return "", runnel.Invalidf("body.privateKey: a %q block is not a private key; expected %s", block.Type, want)
	case len(bytes.TrimSpace(rest)) > 0:
		return "", runnel.Invalidf("body.privateKey: text after the -----END %s----- line; give exactly one private key", block.Type)
	case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
		return "", runnel.Invalidf("body.privateKey: the key is protected by a passphrase, which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one")
	}
	if block.Type == "OPENSSH PRIVATE KEY" {
		cipher, ok := opensshCipher(block.Bytes)
		if !ok {
			return "", runnel.Invalidf("body.privateKey: not an OpenSSH private key (its content does not start with openssh-key-v1); expected %s", want)
		}
		if cipher != "none" {
			return "", runnel.Invalidf("body.privateKey: the key is protected by a passphrase (cipher %s), which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one", cipher)
		}
	}
	return k + "\n", nil
}

// opensshCipher reads the cipher name of an openssh-key-v1 key ("none" when
// it has no passphrase).
func opensshCipher(b []byte) (string, bool) {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(b, []byte(magic)) || len(b) < len(magic)+4 {
		return "", false
	}
	b = b[len(magic):]
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > 64 || int(n) > len(b)-4 {
		return "", false
	}
	name := string(b[4 : 4+n])
	for _, r := range name {
		if r <= ' ' || r > '~' {
			return "", false
		}
	}
	return name, true
}

// CheckHost: a host name or IPv4 address with an optional port.
func CheckHost(h string) error {
	bad := func(why string) error {
		return runnel.Invalidf("body.host: %q %s; give a host name with an optional :port, e.g. git.example.com or git.example.com:8443", h, why)
	}
	if i := strings.Index(h, "://"); i >= 0 {
		return bad("has a scheme (" + h[:i+3] + ")")
	}
	if strings.ContainsAny(h, "/?#") {
		return bad("has a path")
	}
	if strings.Contains(h, "@") {
		return bad("has a user part (give it in username)")
	}
	if !hostPortRe().MatchString(h) || strings.Contains(h, "..") {
		return bad("is not a host name (letters, digits, '.' and '-')")
	}
	if _, port, ok := strings.Cut(h, ":"); ok {
		if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
			return bad("has a port outside 1 to 65535")
		}
	}
	return nil
}

// CredentialFields are a credential's plain fields.
type CredentialFields struct {
	Kind, Host, Username, ProjectID string
}

// Check fills an empty host and username with the kind's defaults and
// validates the fields.
func (f *CredentialFields) Check() error {
	if f.Host == "" {
		f.Host = DefaultHost(f.Kind)
	}
	if f.Username == "" {
		f.Username = DefaultUser(f.Kind)
	}
	if f.Host == "" && f.Kind != "ssh" {
		// A token without a host would be offered to every host.
		return runnel.Invalidf("body.host: required for kind %s (the host git fetches from, e.g. git.example.com)", f.Kind)
	}
	if f.Host != "" {
		if err := CheckHost(f.Host); err != nil {
			return err
		}
	}
	if f.Username == "" {
		return runnel.Invalidf("body.username: required for kind %s", f.Kind)
	}
	if !usernameRe().MatchString(f.Username) {
		return runnel.Invalidf("body.username: %q is not a user name; use 1 to 100 letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit", f.Username)
	}
	if f.ProjectID != "" {
		if err := check.ProjectID("body.projectId", f.ProjectID); err != nil {
			return err
		}
	}
	return nil
}
