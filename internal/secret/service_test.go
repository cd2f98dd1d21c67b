package secret_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

// wantErr checks an error's kind and exact message; kind nil wants no error.
func wantErr(t *testing.T, what string, err error, kind error, msg string) {
	t.Helper()
	switch {
	case kind == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case kind == nil:
	case !errors.Is(err, kind):
		t.Errorf("%s: got %v, want a %v error %q", what, err, kind, msg)
	case msg != "" && err.Error() != msg:
		t.Errorf("%s: message\n  %q\nwant\n  %q", what, err.Error(), msg)
	}
}

// jsonText is s as a JSON string, as a client would send it.
func jsonText(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// fields is a Present of the fields named.
func fields(names ...string) secret.Present {
	return func(f string) bool { return slices.Contains(names, f) }
}

func TestCheckSecretName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"TOKEN", true}, {"_x", true}, {"a1_B2", true}, {"X" + strings.Repeat("y", 127), true},
		{"", false}, {"1BAD", false}, {"A-B", false}, {"A B", false}, {"É", false}, {"X" + strings.Repeat("y", 128), false},
	} {
		err := secret.CheckSecretName(tc.name)
		if tc.ok {
			wantErr(t, tc.name, err, nil, "")
			continue
		}
		wantErr(t, tc.name, err, runnel.ErrInvalid, `body.name: "`+tc.name+`" is not a secret name; use letters, digits and '_', starting with a letter or '_' (at most 128), as for an environment variable`)
	}
}

func TestCheckSecretValue(t *testing.T) {
	const badUTF8 = "body.value: must be valid UTF-8 text (encode binary values, e.g. in base64)"
	for _, tc := range []struct {
		what, value string
		raw         json.RawMessage // nil: the value's own JSON text
		msg         string          // "": accepted
	}{
		{"ordinary", "s3cr3t-value", nil, ""},
		{"four bytes", "abcd", nil, ""},
		{"largest", strings.Repeat("v", secret.MaxSecretBytes), nil, ""},
		{"a surrogate pair", "ab😀cd", json.RawMessage(`"ab\ud83d\ude00cd"`), ""},
		{"one long line", "a\nb\nlong enough", nil, ""},
		{"too short", "abc", nil, "body.value: at least 4 bytes: shorter values cannot be masked in logs"},
		{"too long", strings.Repeat("v", secret.MaxSecretBytes+1), nil, "body.value: 65537 bytes, at most 64 KiB"},
		{"invalid UTF-8 decoded", "abc\xffdef", nil, badUTF8},
		// encoding/json decoded these into U+FFFD: only the raw text tells.
		{"invalid UTF-8 in the raw text", "abc\uFFFDdef", json.RawMessage("\"abc\xffdef\""), badUTF8},
		{"a lone high surrogate", "ab\uFFFDcd", json.RawMessage(`"ab\ud800cd"`), badUTF8},
		{"a lone low surrogate", "ab\uFFFDcd", json.RawMessage(`"ab\udc00cd"`), badUTF8},
		{"a high surrogate at the end", "abcd\uFFFD", json.RawMessage(`"abcd\ud83d"`), badUTF8},
		{"a NUL", "ab\x00cd", nil, "body.value: contains a NUL character, which no environment variable or argument can hold"},
		{"only short lines", "abc\nde\nf", nil, "body.value: no line of it is at least 4 bytes long: shorter lines cannot be masked in logs"},
	} {
		raw := tc.raw
		if raw == nil {
			raw = jsonText(tc.value)
		}
		err := secret.CheckSecretValue(tc.value, raw)
		if tc.msg == "" {
			wantErr(t, tc.what, err, nil, "")
		} else {
			wantErr(t, tc.what, err, runnel.ErrInvalid, tc.msg)
		}
	}
}

func TestValidJSONText(t *testing.T) {
	for raw, want := range map[string]bool{
		`"plain"`:               true,
		`"\\ud800"`:             true, // an escaped backslash, then text
		`"\ud83d\ude00"`:        true,
		`"\u00e9\n\t"`:          true,
		`"\ud800"`:              false,
		`"\udc00"`:              false,
		`"\ud800\u0041"`:        false,
		`"\ud800x\udc00"`:       false,
		`"\u12"`:                false,
		"\"\xff\"":              false,
		`{"a":"\ud83d\ude00x"}`: true,
	} {
		if got := secret.ValidJSONText([]byte(raw)); got != want {
			t.Errorf("ValidJSONText(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestCheckAccessToken(t *testing.T) {
	const tail = "; a token is one line of printable text without spaces"
	for _, tc := range []struct {
		what, token string
		raw         json.RawMessage
		msg         string
	}{
		{"ordinary", "ghp_0123456789abcdef", nil, ""},
		{"shortest", "abcd", nil, ""},
		{"longest", strings.Repeat("t", secret.MaxTokenBytes), nil, ""},
		{"invalid UTF-8", "abcd\xff", nil, "body.accessToken: must be valid UTF-8 text" + tail},
		{"a lone surrogate", "abcd\uFFFD", json.RawMessage(`"abcd\ud800"`), "body.accessToken: must be valid UTF-8 text" + tail},
		{"a NUL", "abcd\x00", nil, "body.accessToken: contains a NUL character" + tail},
		{"a line break", "abcd\nefgh", nil, "body.accessToken: contains a line break" + tail},
		{"a space", "abcd efgh", nil, "body.accessToken: contains a space or a control character" + tail},
		{"a tab", "abcd\tefgh", nil, "body.accessToken: contains a space or a control character" + tail},
		{"DEL", "abcd\x7fefgh", nil, "body.accessToken: contains a space or a control character" + tail},
		{"too short", "abc", nil, "body.accessToken: 3 bytes; a token is 4 to 4096 bytes (shorter ones cannot be masked in logs)"},
		{"too long", strings.Repeat("t", secret.MaxTokenBytes+1), nil, "body.accessToken: 4097 bytes; a token is 4 to 4096 bytes (shorter ones cannot be masked in logs)"},
	} {
		raw := tc.raw
		if raw == nil {
			raw = jsonText(tc.token)
		}
		got, err := secret.CheckAccessToken(tc.token, raw)
		if tc.msg == "" {
			wantErr(t, tc.what, err, nil, "")
			if got != tc.token {
				t.Errorf("%s: stored %q", tc.what, got)
			}
			continue
		}
		wantErr(t, tc.what, err, runnel.ErrInvalid, tc.msg)
	}
}

// opensshKey is a PEM block of an openssh-key-v1 key whose content says the
// cipher (the check reads no further).
func opensshKey(cipher string) string {
	b := []byte("openssh-key-v1\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(cipher)))
	b = append(b, cipher...)
	b = append(b, bytes.Repeat([]byte{7}, 64)...)
	return string(pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: b}))
}

// pkcs8Key is a real unencrypted ed25519 key in PKCS #8 PEM.
func pkcs8Key(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

const want = "the text of one OpenSSH or PEM private key file, from -----BEGIN … PRIVATE KEY----- to -----END … PRIVATE KEY-----"

func TestCheckPrivateKey(t *testing.T) {
	const passphrase = "body.privateKey: the key is protected by a passphrase, which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one"
	pk := pkcs8Key(t)
	none := opensshKey("none")
	for _, tc := range []struct {
		what, key string
		raw       json.RawMessage
		stored    string // the key as stored when accepted
		msg       string
	}{
		{"OpenSSH", none, nil, none, ""},
		{"PKCS #8", pk, nil, pk, ""},
		{"CRLF line ends and space around", "\r\n  " + strings.ReplaceAll(pk, "\n", "\r\n") + "\r\n\r\n", nil, pk, ""},
		{"no final newline", strings.TrimSuffix(pk, "\n"), nil, pk, ""},
		{"OpenSSH with a cipher", opensshKey("aes256-ctr"), nil, "",
			"body.privateKey: the key is protected by a passphrase (cipher aes256-ctr), which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one"},
		{"encrypted PKCS #8", string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")})), nil, "", passphrase},
		{"encrypted PEM (Proc-Type)", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("x")})), nil, "", passphrase},
		{"an OpenSSH public key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO me@host", nil, "",
			"body.privateKey: this is a public key; give the private key (" + want + ")"},
		{"a PEM public key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", nil, "",
			"body.privateKey: this is a public key; give the private key (" + want + ")"},
		{"text after the key", pk + "more text\n", nil, "",
			"body.privateKey: text after the -----END PRIVATE KEY----- line; give exactly one private key"},
		{"two keys", none + pk, nil, "",
			"body.privateKey: text after the -----END OPENSSH PRIVATE KEY----- line; give exactly one private key"},
		{"a certificate", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")})), nil, "",
			`body.privateKey: a "CERTIFICATE" block is not a private key; expected ` + want},
		{"not PEM", "hello", nil, "", "body.privateKey: not a private key; expected " + want},
		{"a damaged block", "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----", nil, "",
			"body.privateKey: not a private key (no well-formed PEM block: a damaged BEGIN/END line or base64 body); expected " + want},
		{"OpenSSH without its magic", string(pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("not a key")})), nil, "",
			"body.privateKey: not an OpenSSH private key (its content does not start with openssh-key-v1); expected " + want},
		{"too large", "-----BEGIN X PRIVATE KEY-----\n" + strings.Repeat("A", secret.MaxKeyBytes), nil, "",
			"body.privateKey: 16414 bytes, at most 16 KiB"},
		{"invalid UTF-8", pk + "\xff", nil, "", "body.privateKey: must be valid UTF-8 text (" + want + ")"},
		{"a lone surrogate", pk, json.RawMessage(`"\ud800"`), "", "body.privateKey: must be valid UTF-8 text (" + want + ")"},
		{"a NUL", pk + "\x00", nil, "", "body.privateKey: contains a NUL character; give " + want},
	} {
		raw := tc.raw
		if raw == nil {
			raw = jsonText(tc.key)
		}
		got, err := secret.CheckPrivateKey(tc.key, raw)
		if tc.msg == "" {
			wantErr(t, tc.what, err, nil, "")
			if got != tc.stored {
				t.Errorf("%s: stored\n%q\nwant\n%q", tc.what, got, tc.stored)
			}
			continue
		}
		wantErr(t, tc.what, err, runnel.ErrInvalid, tc.msg)
	}
}

// TestCheckPrivateKeySSHKeygen checks keys as ssh-keygen writes them, when
// it is installed.
func TestCheckPrivateKeySSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen is not installed")
	}
	dir := t.TempDir()
	gen := func(name, passphrase string, args ...string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		args = append([]string{"-q", "-N", passphrase, "-C", "me@host", "-f", path}, args...)
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	key := gen("plain", "", "-t", "ed25519")
	if got, err := secret.CheckPrivateKey(key, jsonText(key)); err != nil || got != key {
		t.Errorf("ed25519 key: %q, %v", got, err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "plain.pub"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = secret.CheckPrivateKey(string(pub), jsonText(string(pub)))
	wantErr(t, "public key", err, runnel.ErrInvalid, "body.privateKey: this is a public key; give the private key ("+want+")")
	enc := gen("enc", "a passphrase", "-t", "ed25519")
	_, err = secret.CheckPrivateKey(enc, jsonText(enc))
	if !errors.Is(err, runnel.ErrInvalid) || !strings.Contains(err.Error(), "protected by a passphrase (cipher aes256-") {
		t.Errorf("encrypted ed25519 key: %v", err)
	}
}

func TestCheckHost(t *testing.T) {
	const tail = "; give a host name with an optional :port, e.g. git.example.com or git.example.com:8443"
	for _, tc := range []struct{ host, why string }{
		{"github.com", ""}, {"git.example.com:8443", ""}, {"10.0.0.1", ""}, {"a", ""}, {"h:65535", ""},
		{"https://github.com", "has a scheme (https://)"},
		{"github.com/org", "has a path"},
		{"github.com?x", "has a path"},
		{"user@github.com", "has a user part (give it in username)"},
		{"-github.com", "is not a host name (letters, digits, '.' and '-')"},
		{"git..example.com", "is not a host name (letters, digits, '.' and '-')"},
		{"[::1]", "is not a host name (letters, digits, '.' and '-')"},
		{"", "is not a host name (letters, digits, '.' and '-')"},
		{"h:0", "has a port outside 1 to 65535"},
		{"h:70000", "has a port outside 1 to 65535"},
	} {
		err := secret.CheckHost(tc.host)
		if tc.why == "" {
			wantErr(t, tc.host, err, nil, "")
			continue
		}
		wantErr(t, tc.host, err, runnel.ErrInvalid, `body.host: "`+tc.host+`" `+tc.why+tail)
	}
}

func TestCredentialKindsAndDefaults(t *testing.T) {
	if got := strings.Join(secret.CredentialKinds, " "); got != "github gitlab gitea bitbucket basic ssh" {
		t.Errorf("kinds: %s", got)
	}
	for kind, want := range map[string][2]string{
		"github": {"github.com", "x-access-token"}, "gitlab": {"gitlab.com", "oauth2"}, "bitbucket": {"bitbucket.org", "x-token-auth"},
		"gitea": {"", ""}, "basic": {"", ""}, "ssh": {"", "git"},
	} {
		if h, u := secret.DefaultHost(kind), secret.DefaultUser(kind); h != want[0] || u != want[1] {
			t.Errorf("%s: defaults %q %q, want %q %q", kind, h, u, want[0], want[1])
		}
	}
	for _, tc := range []struct {
		in         secret.CredentialFields
		host, user string
		msg        string
	}{
		{secret.CredentialFields{Kind: "github"}, "github.com", "x-access-token", ""},
		{secret.CredentialFields{Kind: "ssh"}, "", "git", ""},
		{secret.CredentialFields{Kind: "gitlab", Host: "gl.example.com", Username: "bot", ProjectID: "proj_a"}, "gl.example.com", "bot", ""},
		{secret.CredentialFields{Kind: "gitea", Username: "bot"}, "", "", "body.host: required for kind gitea (the host git fetches from, e.g. git.example.com)"},
		{secret.CredentialFields{Kind: "basic", Host: "h.example.com"}, "", "", "body.username: required for kind basic"},
		{secret.CredentialFields{Kind: "github", Username: "a b"}, "", "",
			`body.username: "a b" is not a user name; use 1 to 100 letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit`},
		{secret.CredentialFields{Kind: "github", Host: "https://x"}, "", "", `body.host: "https://x" has a scheme (https://); give a host name with an optional :port, e.g. git.example.com or git.example.com:8443`},
		{secret.CredentialFields{Kind: "github", ProjectID: "../x"}, "", "", `body.projectId: must be 1 to 100 letters, digits, '.', '_' or '-', start with a letter or digit and not contain ".."; got "../x"`},
	} {
		f := tc.in
		err := f.Check()
		if tc.msg != "" {
			wantErr(t, tc.in.Kind, err, runnel.ErrInvalid, tc.msg)
			continue
		}
		if err != nil || f.Host != tc.host || f.Username != tc.user {
			t.Errorf("%+v: %+v, %v", tc.in, f, err)
		}
	}
}

func TestCheckCredentialSecret(t *testing.T) {
	m := secret.CredentialSecret{AccessToken: "tok-0123", AccessTokenJSON: jsonText("tok-0123"), PrivateKey: opensshKey("none"), PrivateKeyJSON: jsonText(opensshKey("none"))}
	for _, tc := range []struct {
		what     string
		kind     string
		present  secret.Present
		creating bool
		stored   string
		msg      string
	}{
		{"token", "github", fields("accessToken"), true, "tok-0123", ""},
		{"key", "ssh", fields("privateKey"), true, opensshKey("none"), ""},
		{"an update without either", "github", fields("name"), false, "", ""},
		{"an ssh update without either", "ssh", fields(), false, "", ""},
		{"ssh with a token", "ssh", fields("accessToken", "privateKey"), true, "",
			"body.accessToken: an ssh credential takes privateKey (an OpenSSH or PEM private key), not accessToken"},
		{"a token kind with a key", "gitea", fields("privateKey"), false, "",
			"body.privateKey: only an ssh credential takes a private key; kind gitea takes accessToken"},
		{"ssh without a key", "ssh", fields(), true, "", "body.privateKey: required for kind ssh (the text of an OpenSSH or PEM private key file)"},
		{"github without a token", "github", fields(), true, "",
			"body.accessToken: required for kind github (the access token or password git sends to the host)"},
	} {
		got, err := secret.CheckCredentialSecret(tc.kind, m, tc.present, tc.creating)
		if tc.msg != "" {
			wantErr(t, tc.what, err, runnel.ErrInvalid, tc.msg)
			continue
		}
		if err != nil || got != tc.stored {
			t.Errorf("%s: %q, %v", tc.what, got, err)
		}
	}
}

var testNow = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// newService returns a service on a new SQLite store whose clock reads
// *now (testNow when nil).
func newService(t *testing.T, keyring *secret.Keyring, now *time.Time) (*secret.Service, *sqlstore.Store) {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if now == nil {
		now = &testNow
	}
	o := secret.Options{Store: st, Clock: func() time.Time { return *now }}
	if keyring != nil {
		o.Sealer = keyring
	}
	return secret.NewService(o), st
}

func newKeyring(t *testing.T) *secret.Keyring {
	t.Helper()
	k, err := secret.NewKeyring(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestServiceWithoutKey: nothing can be created or changed without a key,
// whatever the request; reading and deleting still work.
func TestServiceWithoutKey(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t, nil, nil)
	const msg = "secrets are not available: this server has no secret key configured"
	wantErr(t, "Available", svc.Available(), runnel.ErrUnavailable, msg)
	_, err := svc.CreateSecret(ctx, &secret.CreateSecretRequest{Name: "1BAD"}, fields(), "user_a")
	wantErr(t, "create secret", err, runnel.ErrUnavailable, msg)
	_, err = svc.UpdateSecret(ctx, &store.Secret{ID: "sec_x"}, &secret.UpdateSecretRequest{}, fields())
	wantErr(t, "update secret", err, runnel.ErrUnavailable, msg)
	_, err = svc.CreateCredential(ctx, &secret.CreateCredentialRequest{Name: "gh", Kind: "github", AccessToken: "tok-0123"}, fields("accessToken"), "user_a")
	wantErr(t, "create credential", err, runnel.ErrUnavailable, msg)
	_, err = svc.UpdateCredential(ctx, &store.Credential{ID: "cred_x", Kind: "github"}, &secret.UpdateCredentialRequest{Name: "x"}, fields("name"))
	wantErr(t, "update credential", err, runnel.ErrUnavailable, msg)

	// An existing secret can still be read and deleted.
	x := &store.Secret{ID: "sec_aaaaaaaaaaaaaaaaaaaa", Name: "OLD", Scope: "project", ScopeID: "p", CreatedAt: testNow, UpdatedAt: testNow,
		Ciphertext: []byte("sealed elsewhere"), KeyID: "k1"}
	if err := st.CreateSecret(ctx, x); err != nil {
		t.Fatal(err)
	}
	if got, err := svc.GetSecret(ctx, x.ID); err != nil || got.Name != "OLD" {
		t.Errorf("get: %+v, %v", got, err)
	}
	wantErr(t, "delete", svc.DeleteSecret(ctx, x.ID), nil, "")
}

func TestSecretScenario(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t)
	now := testNow
	svc, st := newService(t, kr, &now)
	wantErr(t, "Available", svc.Available(), nil, "")
	p := &store.Pipeline{ID: "pl_aaaaaaaaaaaaaaaaaaaa", ProjectID: "proj_demo", Name: "app", SaveMode: "direct", CreatedAt: testNow, UpdatedAt: testNow}
	if err := st.CreatePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	opens := func(x *store.Secret, want string) {
		t.Helper()
		stored, err := svc.GetSecret(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		v, err := kr.Open(stored.ID, stored.Ciphertext, stored.KeyID)
		if err != nil || string(v) != want {
			t.Errorf("secret %s opens to %q, %v; want %q", x.Name, v, err, want)
		}
	}
	create := func(req secret.CreateSecretRequest) (*store.Secret, error) {
		req.ValueJSON = jsonText(req.Value)
		return svc.CreateSecret(ctx, &req, fields("name", "value", "projectId", "pipelineId"), "user_a")
	}

	x, err := create(secret.CreateSecretRequest{Name: "TOKEN", Value: "s3cr3t-value", ProjectID: "proj_demo"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(x.ID, "sec_") || x.Scope != "project" || x.ScopeID != "proj_demo" || x.CreatedBy != "user_a" ||
		!x.CreatedAt.Equal(testNow) || !x.UpdatedAt.Equal(testNow) || x.KeyID != kr.KeyID() {
		t.Errorf("created %+v", x)
	}
	opens(x, "s3cr3t-value")
	y, err := create(secret.CreateSecretRequest{Name: "TOKEN", Value: "pipeline-value", PipelineID: p.ID})
	if err != nil || y.Scope != "pipeline" || y.ScopeID != p.ID {
		t.Fatalf("pipeline secret: %+v, %v", y, err)
	}

	// Bad requests store nothing.
	for _, tc := range []struct {
		what    string
		req     secret.CreateSecretRequest
		present secret.Present
		kind    error
		msg     string
	}{
		{"a used name", secret.CreateSecretRequest{Name: "TOKEN", Value: "other-value", ProjectID: "proj_demo"}, nil, runnel.ErrConflict,
			"body.name: the project proj_demo already has a secret named TOKEN; change it with PUT /api/v1/secrets/{secretId}"},
		{"a used name in the pipeline", secret.CreateSecretRequest{Name: "TOKEN", Value: "other-value", PipelineID: p.ID}, nil, runnel.ErrConflict,
			"body.name: the pipeline pl_aaaaaaaaaaaaaaaaaaaa already has a secret named TOKEN; change it with PUT /api/v1/secrets/{secretId}"},
		{"an unknown pipeline", secret.CreateSecretRequest{Name: "X", Value: "other-value", PipelineID: "pl_zzzzzzzzzzzzzzzzzzzz"}, nil, runnel.ErrNotFound,
			"body.pipelineId: pipeline pl_zzzzzzzzzzzzzzzzzzzz not found"},
		{"both scopes", secret.CreateSecretRequest{Name: "X", Value: "other-value", ProjectID: "proj_demo", PipelineID: p.ID}, nil, runnel.ErrInvalid,
			"body: give projectId or pipelineId, not both"},
		{"no scope", secret.CreateSecretRequest{Name: "X", Value: "other-value"}, nil, runnel.ErrInvalid,
			"body: give projectId (a secret for every pipeline of the project) or pipelineId (for one pipeline)"},
		{"a bad project", secret.CreateSecretRequest{Name: "X", Value: "other-value", ProjectID: "../x"}, nil, runnel.ErrInvalid,
			`body.projectId: must be 1 to 100 letters, digits, '.', '_' or '-', start with a letter or digit and not contain ".."; got "../x"`},
		{"no value", secret.CreateSecretRequest{Name: "X", ProjectID: "proj_demo"}, fields("name", "projectId"), runnel.ErrInvalid, "body.value: required"},
		// The name is checked before the value, the value before the scope.
		{"a bad name and value", secret.CreateSecretRequest{Name: "1X", Value: "ab"}, nil, runnel.ErrInvalid,
			`body.name: "1X" is not a secret name; use letters, digits and '_', starting with a letter or '_' (at most 128), as for an environment variable`},
		{"a bad value and scope", secret.CreateSecretRequest{Name: "X", Value: "ab", ProjectID: "proj_demo", PipelineID: p.ID}, nil, runnel.ErrInvalid,
			"body.value: at least 4 bytes: shorter values cannot be masked in logs"},
	} {
		present := tc.present
		if present == nil {
			present = fields("name", "value", "projectId", "pipelineId")
		}
		req := tc.req
		req.ValueJSON = jsonText(req.Value)
		_, err := svc.CreateSecret(ctx, &req, present, "user_a")
		wantErr(t, tc.what, err, tc.kind, tc.msg)
	}
	// A value whose raw text had a lone surrogate (decoded as U+FFFD).
	_, err = svc.CreateSecret(ctx, &secret.CreateSecretRequest{Name: "X", Value: "ab\uFFFDcd", ValueJSON: json.RawMessage(`"ab\ud800cd"`), ProjectID: "proj_demo"},
		fields("name", "value", "projectId"), "user_a")
	wantErr(t, "lone surrogate", err, runnel.ErrInvalid, "body.value: must be valid UTF-8 text (encode binary values, e.g. in base64)")
	if list, err := svc.ListSecrets(ctx, store.SecretFilter{}); err != nil || len(list) != 2 {
		t.Errorf("secrets after bad requests: %d, %v", len(list), err)
	}
	if list, err := svc.ListSecrets(ctx, store.SecretFilter{Scope: "pipeline", ScopeID: p.ID}); err != nil || len(list) != 1 || list[0].ID != y.ID {
		t.Errorf("the pipeline's secrets: %v, %v", list, err)
	}

	// Updates: only the fields present change.
	now = now.Add(time.Hour)
	upd := func(x *store.Secret, req secret.UpdateSecretRequest, present ...string) (*store.Secret, error) {
		cur, err := svc.GetSecret(ctx, x.ID)
		if err != nil {
			return nil, err
		}
		req.ValueJSON = jsonText(req.Value)
		return svc.UpdateSecret(ctx, cur, &req, fields(present...))
	}
	if u, err := upd(x, secret.UpdateSecretRequest{Value: "new-value-2", Name: "IGNORED"}, "value"); err != nil || u.Name != "TOKEN" || !u.UpdatedAt.Equal(now) || !u.CreatedAt.Equal(testNow) {
		t.Errorf("value update: %+v, %v", u, err)
	}
	opens(x, "new-value-2")
	if u, err := upd(x, secret.UpdateSecretRequest{Name: "RENAMED"}, "name"); err != nil || u.Name != "RENAMED" {
		t.Errorf("rename: %+v, %v", u, err)
	}
	opens(x, "new-value-2")
	if _, err := create(secret.CreateSecretRequest{Name: "OTHER", Value: "other-value", ProjectID: "proj_demo"}); err != nil {
		t.Fatal(err)
	}
	_, err = upd(x, secret.UpdateSecretRequest{Name: "OTHER"}, "name")
	wantErr(t, "rename to a used name", err, runnel.ErrConflict, "body.name: the project proj_demo already has a secret named OTHER")
	_, err = upd(x, secret.UpdateSecretRequest{}, "projectId")
	wantErr(t, "nothing to change", err, runnel.ErrInvalid, "body: give name, value or both")
	_, err = upd(x, secret.UpdateSecretRequest{Value: "ab\ncd"}, "value")
	wantErr(t, "short lines", err, runnel.ErrInvalid, "body.value: no line of it is at least 4 bytes long: shorter lines cannot be masked in logs")
	opens(x, "new-value-2")
	_, err = svc.UpdateSecret(ctx, &store.Secret{ID: "sec_zzzzzzzzzzzzzzzzzzzz", Name: "GONE", Scope: "project", ScopeID: "proj_demo",
		Ciphertext: []byte("x"), KeyID: "k1"}, &secret.UpdateSecretRequest{Name: "GONE"}, fields("name"))
	wantErr(t, "update a missing secret", err, runnel.ErrNotFound, "secret sec_zzzzzzzzzzzzzzzzzzzz not found")

	wantErr(t, "delete", svc.DeleteSecret(ctx, x.ID), nil, "")
	wantErr(t, "delete again", svc.DeleteSecret(ctx, x.ID), runnel.ErrNotFound, "secret "+x.ID+" not found")
	_, err = svc.GetSecret(ctx, x.ID)
	wantErr(t, "get deleted", err, runnel.ErrNotFound, "secret "+x.ID+" not found")
}

func TestCredentialScenario(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t)
	svc, _ := newService(t, kr, nil)
	opens := func(c *store.Credential, want string) {
		t.Helper()
		stored, err := svc.GetCredential(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		v, err := kr.Open(stored.ID, stored.Ciphertext, stored.KeyID)
		if err != nil || string(v) != want {
			t.Errorf("credential %s opens to %q, %v; want %q", c.Name, v, err, want)
		}
	}
	create := func(req secret.CreateCredentialRequest, present ...string) (*store.Credential, error) {
		req.AccessTokenJSON, req.PrivateKeyJSON = jsonText(req.AccessToken), jsonText(req.PrivateKey)
		return svc.CreateCredential(ctx, &req, fields(present...), "user_a")
	}
	all := []string{"name", "kind", "host", "username", "projectId", "accessToken"}

	gh, err := create(secret.CreateCredentialRequest{Name: "github", Kind: "github", AccessToken: "ghp_0123456789"}, all...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(gh.ID, "cred_") || gh.Host != "github.com" || gh.Username != "x-access-token" || gh.CreatedBy != "user_a" || !gh.CreatedAt.Equal(testNow) {
		t.Errorf("created %+v", gh)
	}
	opens(gh, "ghp_0123456789")
	key := opensshKey("none")
	ssh, err := create(secret.CreateCredentialRequest{Name: "deploy", Kind: "ssh", PrivateKey: "  " + strings.ReplaceAll(key, "\n", "\r\n")},
		"name", "kind", "privateKey")
	if err != nil || ssh.Host != "" || ssh.Username != "git" {
		t.Fatalf("ssh credential: %+v, %v", ssh, err)
	}
	opens(ssh, key)

	for _, tc := range []struct {
		what    string
		req     secret.CreateCredentialRequest
		present []string
		kind    error
		msg     string
	}{
		{"a used name", secret.CreateCredentialRequest{Name: "github", Kind: "gitlab", AccessToken: "glpat-0123"}, all, runnel.ErrConflict,
			`body.name: a credential named "github" exists (names are unique on the server); change it with PUT /api/v1/credentials/{credentialId}`},
		{"an unknown kind", secret.CreateCredentialRequest{Name: "x", Kind: "svn", AccessToken: "tok-0123"}, all, runnel.ErrInvalid,
			`body.kind: must be one of github, gitlab, gitea, bitbucket, basic, ssh; got "svn"`},
		{"a bad name first", secret.CreateCredentialRequest{Name: "", Kind: "svn"}, all, runnel.ErrInvalid, "body.name: required"},
		{"no host", secret.CreateCredentialRequest{Name: "x", Kind: "basic", Username: "bob", AccessToken: "tok-0123"}, all, runnel.ErrInvalid,
			"body.host: required for kind basic (the host git fetches from, e.g. git.example.com)"},
		{"the fields before the token", secret.CreateCredentialRequest{Name: "x", Kind: "github", Username: "a b", AccessToken: "x"}, all, runnel.ErrInvalid,
			`body.username: "a b" is not a user name; use 1 to 100 letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit`},
		{"a bad token", secret.CreateCredentialRequest{Name: "x", Kind: "github", AccessToken: "a b c d"}, all, runnel.ErrInvalid,
			"body.accessToken: contains a space or a control character; a token is one line of printable text without spaces"},
		{"no token", secret.CreateCredentialRequest{Name: "x", Kind: "github"}, []string{"name", "kind"}, runnel.ErrInvalid,
			"body.accessToken: required for kind github (the access token or password git sends to the host)"},
		{"an encrypted key", secret.CreateCredentialRequest{Name: "x", Kind: "ssh", PrivateKey: opensshKey("aes256-ctr")}, []string{"name", "kind", "privateKey"},
			runnel.ErrInvalid, "body.privateKey: the key is protected by a passphrase (cipher aes256-ctr), which git cannot enter in a job; remove it (ssh-keygen -p -N '' -f KEYFILE) or use a deploy key without one"},
	} {
		_, err := create(tc.req, tc.present...)
		wantErr(t, tc.what, err, tc.kind, tc.msg)
	}
	if list, err := svc.ListCredentials(ctx, ""); err != nil || len(list) != 2 {
		t.Errorf("credentials after bad requests: %d, %v", len(list), err)
	}

	upd := func(c *store.Credential, req secret.UpdateCredentialRequest, present ...string) (*store.Credential, error) {
		cur, err := svc.GetCredential(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		req.AccessTokenJSON, req.PrivateKeyJSON = jsonText(req.AccessToken), jsonText(req.PrivateKey)
		return svc.UpdateCredential(ctx, cur, &req, fields(present...))
	}
	u, err := upd(gh, secret.UpdateCredentialRequest{Host: "ghe.example.com", Username: "bot", ProjectID: "proj_demo", Name: "ignored"}, "host", "username", "projectId")
	if err != nil || u.Host != "ghe.example.com" || u.Username != "bot" || u.ProjectID != "proj_demo" || u.Name != "github" {
		t.Errorf("update: %+v, %v", u, err)
	}
	opens(gh, "ghp_0123456789")
	// Empty host and username go back to the kind's defaults; an empty
	// projectId lifts the restriction.
	u, err = upd(gh, secret.UpdateCredentialRequest{AccessToken: "ghp_new-token"}, "host", "username", "projectId", "accessToken")
	if err != nil || u.Host != "github.com" || u.Username != "x-access-token" || u.ProjectID != "" {
		t.Errorf("update to defaults: %+v, %v", u, err)
	}
	opens(gh, "ghp_new-token")
	if list, err := svc.ListCredentials(ctx, "proj_demo"); err != nil || len(list) != 0 {
		t.Errorf("proj_demo's credentials: %d, %v", len(list), err)
	}
	_, err = upd(gh, secret.UpdateCredentialRequest{Name: "deploy"}, "name")
	wantErr(t, "rename to a used name", err, runnel.ErrConflict, `body.name: a credential named "deploy" exists (names are unique on the server)`)
	_, err = upd(gh, secret.UpdateCredentialRequest{})
	wantErr(t, "nothing to change", err, runnel.ErrInvalid, "body: give at least one of name, host, username, projectId, accessToken, privateKey")
	_, err = upd(gh, secret.UpdateCredentialRequest{PrivateKey: key}, "privateKey")
	wantErr(t, "a key for a token kind", err, runnel.ErrInvalid, "body.privateKey: only an ssh credential takes a private key; kind github takes accessToken")
	_, err = upd(ssh, secret.UpdateCredentialRequest{AccessToken: "tok-0123"}, "accessToken")
	wantErr(t, "a token for ssh", err, runnel.ErrInvalid, "body.accessToken: an ssh credential takes privateKey (an OpenSSH or PEM private key), not accessToken")
	_, err = upd(ssh, secret.UpdateCredentialRequest{Host: "https://x"}, "host")
	wantErr(t, "a bad host", err, runnel.ErrInvalid, `body.host: "https://x" has a scheme (https://); give a host name with an optional :port, e.g. git.example.com or git.example.com:8443`)
	if u, err := upd(ssh, secret.UpdateCredentialRequest{Name: "deploy-2"}, "name"); err != nil || u.Name != "deploy-2" {
		t.Errorf("rename: %+v, %v", u, err)
	}
	opens(ssh, key)
	_, err = svc.UpdateCredential(ctx, &store.Credential{ID: "cred_zzzzzzzzzzzzzzzzzzzz", Name: "gone", Kind: "github", Host: "github.com", Username: "x",
		Ciphertext: []byte("x"), KeyID: "k1"},
		&secret.UpdateCredentialRequest{Name: "gone"}, fields("name"))
	wantErr(t, "update a missing credential", err, runnel.ErrNotFound, "credential cred_zzzzzzzzzzzzzzzzzzzz not found")

	wantErr(t, "delete", svc.DeleteCredential(ctx, gh.ID), nil, "")
	wantErr(t, "delete again", svc.DeleteCredential(ctx, gh.ID), runnel.ErrNotFound, "credential "+gh.ID+" not found")
	_, err = svc.GetCredential(ctx, gh.ID)
	wantErr(t, "get deleted", err, runnel.ErrNotFound, "credential "+gh.ID+" not found")
}
