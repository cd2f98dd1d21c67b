package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/store"
)

var (
	credentialIDKind = idKind{"credentialId", "cred_", "credential"}
	credentialKinds  = []string{"github", "gitlab", "gitea", "bitbucket", "basic", "ssh"}
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

const (
	minTokenBytes = 4 // mask.MinLen: a shorter token could not be masked in logs
	maxTokenBytes = 4096
	maxKeyBytes   = 16 << 10
)

// credentialJSON is a credential as the API shows it: the token or key is
// always "***".
type credentialJSON struct {
	CredentialID string  `json:"credentialId"`
	Name         string  `json:"name"`
	Kind         string  `json:"kind"`
	Host         string  `json:"host"`
	Username     string  `json:"username"`
	ProjectID    string  `json:"projectId"`
	AccessToken  *string `json:"accessToken,omitempty"`
	PrivateKey   *string `json:"privateKey,omitempty"`
	CreatedBy    string  `json:"createdBy"`
	CreatedAt    string  `json:"createdAt"`
	UpdatedAt    string  `json:"updatedAt"`
}

func toCredentialJSON(c *store.Credential) credentialJSON {
	masked := "***"
	out := credentialJSON{CredentialID: c.ID, Name: c.Name, Kind: c.Kind, Host: c.Host, Username: c.Username,
		ProjectID: c.ProjectID, CreatedBy: c.CreatedBy, CreatedAt: isoTime(c.CreatedAt), UpdatedAt: isoTime(c.UpdatedAt)}
	if c.Kind == "ssh" {
		out.PrivateKey = &masked
	} else {
		out.AccessToken = &masked
	}
	return out
}

// credentialBody is POST /api/v1/credentials.
type credentialBody struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Host        string `json:"host"`
	Username    string `json:"username"`
	ProjectID   string `json:"projectId"`
	AccessToken string `json:"accessToken"`
	PrivateKey  string `json:"privateKey"`
}

// credentialUpdateBody is PUT /api/v1/credentials/{credentialId}: the fields
// present change. It has no kind: a field the body struct knows is decoded
// whatever decodeOptions.rejected says, so kind must not be one of them to
// be refused.
type credentialUpdateBody struct {
	Name        string `json:"name"`
	Host        string `json:"host"`
	Username    string `json:"username"`
	ProjectID   string `json:"projectId"`
	AccessToken string `json:"accessToken"`
	PrivateKey  string `json:"privateKey"`
}

// credentialMaterial is the secret part of a request: the decoded token and
// key, which fields were present, and the body's JSON text (for the UTF-8
// check, which the decoded strings cannot tell).
type credentialMaterial struct {
	accessToken, privateKey string
	present                 map[string]bool
	data                    []byte
}

// checkCredentialSecret validates the token or key for the kind and returns
// what to seal ("" when an update gives neither).
func checkCredentialSecret(kind string, m credentialMaterial, creating bool) (string, error) {
	if kind == "ssh" {
		if m.present["accessToken"] {
			return "", errorf(http.StatusBadRequest, "body.accessToken: an ssh credential takes privateKey (an OpenSSH or PEM private key), not accessToken")
		}
		if !m.present["privateKey"] {
			if creating {
				return "", errorf(http.StatusBadRequest, "body.privateKey: required for kind ssh (the text of an OpenSSH or PEM private key file)")
			}
			return "", nil
		}
		return checkPrivateKey(m.privateKey, rawField(m.data, "privateKey"))
	}
	if m.present["privateKey"] {
		return "", errorf(http.StatusBadRequest, "body.privateKey: only an ssh credential takes a private key; kind %s takes accessToken", kind)
	}
	if !m.present["accessToken"] {
		if creating {
			return "", errorf(http.StatusBadRequest, "body.accessToken: required for kind %s (the access token or password git sends to the host)", kind)
		}
		return "", nil
	}
	return checkAccessToken(m.accessToken, rawField(m.data, "accessToken"))
}

// checkAccessToken: one line of printable text that git's credential helper
// protocol can carry and the log masker can find.
func checkAccessToken(t string, raw json.RawMessage) (string, error) {
	switch {
	case !utf8.ValidString(t) || !validJSONText(raw):
		// encoding/json turns invalid UTF-8 (and lone surrogate escapes)
		// into U+FFFD without an error: the raw text tells.
		return "", errorf(http.StatusBadRequest, "body.accessToken: must be valid UTF-8 text; a token is one line of printable text without spaces")
	case strings.IndexByte(t, 0) >= 0:
		return "", errorf(http.StatusBadRequest, "body.accessToken: contains a NUL character; a token is one line of printable text without spaces")
	case strings.ContainsAny(t, "\n\r"):
		return "", errorf(http.StatusBadRequest, "body.accessToken: contains a line break; a token is one line of printable text without spaces")
	case strings.ContainsFunc(t, func(r rune) bool { return r == ' ' || r < ' ' || r == 0x7f }):
		return "", errorf(http.StatusBadRequest, "body.accessToken: contains a space or a control character; a token is one line of printable text without spaces")
	case len(t) < minTokenBytes || len(t) > maxTokenBytes:
		return "", errorf(http.StatusBadRequest, "body.accessToken: %d bytes; a token is %d to %d bytes (shorter ones cannot be masked in logs)", len(t), minTokenBytes, maxTokenBytes)
	}
	return t, nil
}

// checkPrivateKey accepts the text of one unencrypted OpenSSH or PEM private
// key and returns it as stored: line ends as LF, surrounding space trimmed,
// one final newline.
func checkPrivateKey(k string, raw json.RawMessage) (string, error) {
	const want = "the text of one OpenSSH or PEM private key file, from -----BEGIN … PRIVATE KEY----- to -----END … PRIVATE KEY-----"
	switch {
	case !utf8.ValidString(k) || !validJSONText(raw):
		return "", errorf(http.StatusBadRequest, "body.privateKey: must be valid UTF-8 text (%s)", want)
	case strings.IndexByte(k, 0) >= 0:
		return "", errorf(http.StatusBadRequest, "body.privateKey: contains a NUL character; give %s", want)
	}
	k = strings.TrimSpace(strings.ReplaceAll(k, "\r\n", "\n"))
	if len(k) > maxKeyBytes {
		return "", errorf(http.StatusBadRequest, "body.privateKey: %s, at most %s", formatBytes(int64(len(k))), formatBytes(maxKeyBytes))
	}
	if strings.HasPrefix(k, "ssh-") || strings.HasPrefix(k, "ecdsa-") || strings.HasPrefix(k, "sk-") ||
		strings.HasPrefix(k, "-----BEGIN PUBLIC KEY-----") || strings.HasPrefix(k, "-----BEGIN SSH2 PUBLIC KEY-----") {
		return "", errorf(http.StatusBadRequest, "body.privateKey: this is a public key; give the private key (%s)", want)
	}
	if !strings.HasPrefix(k, "-----BEGIN ") {
		return "", errorf(http.StatusBadRequest, "body.privateKey: not a private key; expected %s", want)
	}
	block, rest := pem.Decode([]byte(k))
	switch {
	case block == nil:
		return "", errorf(http.StatusBadRequest, "body.privateKey: not a private key (no well-formed PEM block: a damaged BEGIN/END line or base64 body); expected %s", want)
	case !strings.HasSuffix(block.Type, "PRIVATE KEY"):
		return "", errorf(http.StatusBadRequest, "body.privateKey: a %q block is not a private key; expected %s", block.Type, want)
	case len(bytes.TrimSpace(rest)) > 0:
		return "", errorf(http.StatusBadRequest, "body.privateKey: text after the -----END %s----- line; give exactly one private key", block.Type)
	case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
		return "", errorf(http.StatusBadRequest, "body.privateKey: the key is protected by a passphrase, which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one")
	}
	if block.Type == "OPENSSH PRIVATE KEY" {
		cipher, ok := opensshCipher(block.Bytes)
		if !ok {
			return "", errorf(http.StatusBadRequest, "body.privateKey: not an OpenSSH private key (its content does not start with openssh-key-v1); expected %s", want)
		}
		if cipher != "none" {
			return "", errorf(http.StatusBadRequest, "body.privateKey: the key is protected by a passphrase (cipher %s), which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one", cipher)
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

// checkHost: a host name or IPv4 address with an optional port.
func checkHost(h string) error {
	bad := func(why string) error {
		return errorf(http.StatusBadRequest, "body.host: %q %s; give a host name with an optional :port, e.g. git.example.com or git.example.com:8443", h, why)
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

func (s *Server) createCredential(w http.ResponseWriter, r *http.Request) error {
	seal, err := s.sealer()
	if err != nil {
		return err
	}
	data, err := readBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b credentialBody
	present, err := decodeJSON(data, &b, decodeOptions{})
	if err != nil {
		return err
	}
	if err := check.Name("body.name", b.Name); err != nil {
		return err
	}
	if err := check.Enum("body.kind", b.Kind, credentialKinds...); err != nil {
		return err
	}
	f := credentialFields{Kind: b.Kind, Host: b.Host, Username: b.Username, ProjectID: b.ProjectID}
	if err := f.check(); err != nil {
		return err
	}
	secretValue, err := checkCredentialSecret(b.Kind, credentialMaterial{b.AccessToken, b.PrivateKey, present, data}, true)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	c := &store.Credential{ID: newID("cred_"), Name: b.Name, Kind: b.Kind, Host: f.Host, Username: f.Username,
		ProjectID: f.ProjectID, CreatedBy: principalFrom(r.Context()).Subject, CreatedAt: now, UpdatedAt: now}
	c.Ciphertext, c.KeyID = seal.Seal(c.ID, []byte(secretValue))
	if err := s.st.CreateCredential(r.Context(), c); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return errorf(http.StatusConflict, "body.name: a credential named %q exists (names are unique on the server); change it with PUT /api/v1/credentials/{credentialId}", c.Name)
		}
		return fmt.Errorf("create credential: %w", err)
	}
	w.Header().Set("Location", "/api/v1/credentials/"+c.ID)
	s.ok(w, http.StatusCreated, toCredentialJSON(c))
	return nil
}

// credentialFields are a credential's plain fields.
type credentialFields struct {
	Kind, Host, Username, ProjectID string
}

// check fills an empty host and username with the kind's defaults and
// validates the fields.
func (f *credentialFields) check() error {
	if f.Host == "" {
		f.Host = defaultHosts[f.Kind]
	}
	if f.Username == "" {
		f.Username = defaultUsers[f.Kind]
	}
	if f.Host == "" && f.Kind != "ssh" {
		// A token without a host would be offered to every host.
		return errorf(http.StatusBadRequest, "body.host: required for kind %s (the host git fetches from, e.g. git.example.com)", f.Kind)
	}
	if f.Host != "" {
		if err := checkHost(f.Host); err != nil {
			return err
		}
	}
	if f.Username == "" {
		return errorf(http.StatusBadRequest, "body.username: required for kind %s", f.Kind)
	}
	if !usernameRe().MatchString(f.Username) {
		return errorf(http.StatusBadRequest, "body.username: %q is not a user name; use 1 to 100 letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit", f.Username)
	}
	if f.ProjectID != "" {
		if err := check.ProjectID("body.projectId", f.ProjectID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.RawQuery, "projectId")
	if err != nil {
		return err
	}
	if q.has("projectId") {
		if err := check.ProjectID("query parameter projectId", q.str("projectId")); err != nil {
			return err
		}
	}
	list, err := s.st.ListCredentials(r.Context(), q.str("projectId"))
	if err != nil {
		return fmt.Errorf("list credentials: %w", err)
	}
	s.ok(w, http.StatusOK, wholeList(list, toCredentialJSON))
	return nil
}

func (s *Server) loadCredential(r *http.Request) (*store.Credential, error) {
	return loadByPath(r, credentialIDKind, s.st.GetCredential)
}

func (s *Server) getCredential(w http.ResponseWriter, r *http.Request) error {
	if _, err := parseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	c, err := s.loadCredential(r)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toCredentialJSON(c))
	return nil
}

var credentialUpdateRejected = map[string]string{
	"kind": "a credential's kind cannot change; create a new credential and delete this one",
}

func (s *Server) updateCredential(w http.ResponseWriter, r *http.Request) error {
	seal, err := s.sealer()
	if err != nil {
		return err
	}
	c, err := s.loadCredential(r)
	if err != nil {
		return err
	}
	data, err := readBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b credentialUpdateBody
	present, err := decodeJSON(data, &b, decodeOptions{rejected: credentialUpdateRejected})
	if err != nil {
		return err
	}
	if len(present) == 0 {
		return errorf(http.StatusBadRequest, "body: give at least one of name, host, username, projectId, accessToken, privateKey")
	}
	name := c.Name
	if present["name"] {
		if err := check.Name("body.name", b.Name); err != nil {
			return err
		}
		name = b.Name
	}
	// An empty host or username goes back to the kind's default; an empty
	// projectId lifts the restriction.
	f := credentialFields{Kind: c.Kind, Host: c.Host, Username: c.Username, ProjectID: c.ProjectID}
	if present["host"] {
		f.Host = b.Host
	}
	if present["username"] {
		f.Username = b.Username
	}
	if present["projectId"] {
		f.ProjectID = b.ProjectID
	}
	if err := f.check(); err != nil {
		return err
	}
	secretValue, err := checkCredentialSecret(c.Kind, credentialMaterial{b.AccessToken, b.PrivateKey, present, data}, false)
	if err != nil {
		return err
	}
	c.Name, c.Host, c.Username, c.ProjectID = name, f.Host, f.Username, f.ProjectID
	if secretValue != "" {
		c.Ciphertext, c.KeyID = seal.Seal(c.ID, []byte(secretValue))
	}
	c.UpdatedAt = s.now().UTC()
	if err := s.st.UpdateCredential(r.Context(), c); err != nil {
		switch {
		case errors.Is(err, runnel.ErrNotFound):
			return errorf(http.StatusNotFound, "credential %s not found", c.ID)
		case errors.Is(err, runnel.ErrConflict):
			return errorf(http.StatusConflict, "body.name: a credential named %q exists (names are unique on the server)", c.Name)
		}
		return fmt.Errorf("update credential %s: %w", c.ID, err)
	}
	s.ok(w, http.StatusOK, toCredentialJSON(c))
	return nil
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, credentialIDKind)
	if err != nil {
		return err
	}
	if err := s.st.DeleteCredential(r.Context(), id); err != nil {
		if errors.Is(err, runnel.ErrNotFound) {
			return errorf(http.StatusNotFound, "credential %s not found", id)
		}
		return fmt.Errorf("delete credential %s: %w", id, err)
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}
