package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
	"github.com/runnel-ci/runnel/internal/worker"
)

// credEnv is a secretsEnv for credentials: every answer, header and log
// line is checked for the tokens and keys the test sent (and for every line
// of a key).
type credEnv struct{ *secretsEnv }

func newCredEnv(t *testing.T, tweak func(*Config)) credEnv {
	t.Helper()
	return credEnv{newSecretsEnv(t, tweak)}
}

// key remembers a private key, and each of its base64 lines, as values no
// answer may contain.
func (e credEnv) key(k string) string {
	e.value(k)
	for _, line := range strings.Split(k, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			e.value(line)
		}
	}
	return k
}

// create posts a credential and returns the answer's detail.
func (e credEnv) create(body map[string]any) map[string]any {
	e.t.Helper()
	if v, ok := body["accessToken"].(string); ok {
		e.value(v)
	}
	if v, ok := body["privateKey"].(string); ok {
		e.key(v)
	}
	r := e.do("POST", "/api/v1/credentials", body).must(e.t, http.StatusCreated)
	d := r.detail()
	id, _ := d["credentialId"].(string)
	if !strings.HasPrefix(id, "cred_") {
		e.t.Fatalf("no credentialId: %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/api/v1/credentials/"+id {
		e.t.Fatalf("Location %q, want /api/v1/credentials/%s", loc, id)
	}
	return d
}

func (e credEnv) stored(id string) *store.Credential {
	e.t.Helper()
	c, err := e.st.GetCredential(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get credential %s: %v", id, err)
	}
	return c
}

// opens checks that the stored ciphertext of id opens to want with the
// keyring, only under id, and does not hold it in clear.
func (e credEnv) opens(id, want string) *store.Credential {
	e.t.Helper()
	c := e.stored(id)
	if c.KeyID != e.keyring.KeyID() {
		e.t.Errorf("key id %q, want the keyring's %q", c.KeyID, e.keyring.KeyID())
	}
	got, err := e.keyring.Open(id, c.Ciphertext, c.KeyID)
	if err != nil || string(got) != want {
		e.t.Fatalf("stored secret of %s opens to %q, %v; want %q", id, got, err, want)
	}
	if bytes.Contains(c.Ciphertext, []byte(want)) {
		e.t.Errorf("the ciphertext of %s contains the secret material in clear", id)
	}
	if v, err := e.keyring.Open("cred_bbbbbbbbbbbbbbbbbbbb", c.Ciphertext, c.KeyID); err == nil {
		e.t.Errorf("the ciphertext of %s opened under another id, to %q", id, v)
	}
	return c
}

// token returns a fresh random access token with a prefix.
func token(prefix string) string { return prefix + newID("") + newID("") }

// opensshKey returns a new ed25519 key in the OpenSSH format, as ssh-keygen
// writes it, with the cipher named (any but "none" marks a passphrase).
func opensshKey(t testing.TB, cipher string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	str := func(b []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	pubBlob := append(str([]byte("ssh-ed25519")), str(pub)...)
	var sec []byte
	check := binary.BigEndian.AppendUint32(nil, 0x5eed5eed)
	sec = append(sec, check...)
	sec = append(sec, check...)
	sec = append(sec, pubBlob...)
	sec = append(sec, str(priv)...)
	sec = append(sec, str([]byte("ci@runnel"))...)
	for i := byte(1); len(sec)%8 != 0; i++ {
		sec = append(sec, i)
	}
	var b []byte
	b = append(b, "openssh-key-v1\x00"...)
	b = append(b, str([]byte(cipher))...)
	kdf := "none"
	if cipher != "none" {
		kdf = "bcrypt"
	}
	b = append(b, str([]byte(kdf))...)
	b = append(b, str(nil)...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, str(pubBlob)...)
	b = append(b, str(sec)...)
	enc := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	out.WriteString("-----BEGIN OPENSSH PRIVATE KEY-----\n")
	for len(enc) > 70 {
		out.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	out.WriteString(enc + "\n-----END OPENSSH PRIVATE KEY-----\n")
	return out.String()
}

// pemKey returns a new ECDSA P-256 key as PEM ("EC PRIVATE KEY"), as
// openssl and older ssh-keygen write it.
func pemKey(t testing.TB) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

func TestCredentialsCreate(t *testing.T) {
	e := newCredEnv(t, nil)
	at := wire.Time(e.clock.Now())
	sshKey := opensshKey(t, "none")
	tests := []struct {
		name string
		body map[string]any
		want map[string]any // the answer's fields besides id, times, createdBy and the mask
		seal string         // what the ciphertext opens to
	}{
		{"github defaults", map[string]any{"name": "gh", "kind": "github", "accessToken": token("ghp_")},
			map[string]any{"host": "github.com", "username": "x-access-token", "projectId": ""}, ""},
		{"gitlab defaults", map[string]any{"name": "gl", "kind": "gitlab", "accessToken": token("glpat-"), "projectId": "proj_demo"},
			map[string]any{"host": "gitlab.com", "username": "oauth2", "projectId": "proj_demo"}, ""},
		{"bitbucket defaults", map[string]any{"name": "bb", "kind": "bitbucket", "accessToken": token("ATBB")},
			map[string]any{"host": "bitbucket.org", "username": "x-token-auth", "projectId": ""}, ""},
		{"gitea with host and user", map[string]any{"name": "forge", "kind": "gitea", "host": "git.example.com:3000", "username": "ci-bot", "accessToken": token("gt")},
			map[string]any{"host": "git.example.com:3000", "username": "ci-bot", "projectId": ""}, ""},
		{"basic", map[string]any{"name": "mirror 1", "kind": "basic", "host": "10.0.0.7", "username": "build@corp", "accessToken": token("pw!%$")},
			map[string]any{"host": "10.0.0.7", "username": "build@corp", "projectId": ""}, ""},
		{"github enterprise", map[string]any{"name": "ghe", "kind": "github", "host": "github.example.com", "username": "ci", "accessToken": token("ghp_")},
			map[string]any{"host": "github.example.com", "username": "ci", "projectId": ""}, ""},
		{"ssh defaults", map[string]any{"name": "deploy-key", "kind": "ssh", "privateKey": sshKey, "projectId": "proj_demo"},
			map[string]any{"host": "", "username": "git", "projectId": "proj_demo"}, sshKey},
		{"ssh with host, CRLF and spaces", map[string]any{"name": "pem-key", "kind": "ssh", "host": "git.example.com", "username": "deploy",
			"privateKey": "\n  " + strings.ReplaceAll(pemKey(t), "\n", "\r\n") + "\r\n\n"},
			map[string]any{"host": "git.example.com", "username": "deploy", "projectId": ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.create(tt.body)
			id := d["credentialId"].(string)
			want := map[string]any{"credentialId": id, "name": tt.body["name"], "kind": tt.body["kind"],
				"createdBy": "user_alice", "creatorId": e.userID("user_alice"), "createdAt": at, "updatedAt": at,
				// Hand-made: none of a connected account's fields.
				"userId": "", "provider": "", "loginName": "", "avatarUrl": "", "expiresAt": nil}
			for k, v := range tt.want {
				want[k] = v
			}
			if tt.body["kind"] == "ssh" {
				want["privateKey"] = "***"
			} else {
				want["accessToken"] = "***"
			}
			if !sameJSON(d, want) {
				t.Errorf("created:\n%v\nwant\n%v", d, want)
			}
			seal := tt.seal
			switch {
			case tt.body["kind"] != "ssh":
				seal = tt.body["accessToken"].(string) // the exact token
			case seal == "":
				// The key, line ends as LF, trimmed, with one final newline.
				seal = strings.TrimSpace(strings.ReplaceAll(tt.body["privateKey"].(string), "\r\n", "\n")) + "\n"
			}
			c := e.opens(id, seal)
			if c.Kind != tt.body["kind"] || c.Host != tt.want["host"] || c.Username != tt.want["username"] || c.ProjectID != tt.want["projectId"] {
				t.Errorf("stored %+v", c)
			}
			// GET: the same object.
			if got := e.do("GET", "/api/v1/credentials/"+id, nil).must(t, 200).detail(); !sameJSON(got, want) {
				t.Errorf("GET:\n%v\nwant\n%v", got, want)
			}
		})
	}
	if tests[6].seal != sshKey || !strings.HasSuffix(sshKey, "-----\n") || strings.HasSuffix(sshKey, "\n\n") {
		t.Fatal("the ssh case must check a key that is already trimmed with one final newline")
	}
	e.do("GET", "/api/v1/credentials/cred_cccccccccccccccccccc", nil).mustErr(t, 404, "credential cred_cccccccccccccccccccc not found")
	e.do("GET", "/api/v1/credentials/sec_cccccccccccccccccccc", nil).mustErr(t, 400, "path parameter credentialId", "is not a credential id")
	e.do("GET", "/api/v1/credentials/cred_cccccccccccccccccccc?reveal=true", nil).mustErr(t, 400, `unknown parameter "reveal"`)
}

func TestCredentialsList(t *testing.T) {
	e := newCredEnv(t, nil)
	e.create(map[string]any{"name": "b-demo", "kind": "github", "accessToken": token("t"), "projectId": "proj_demo"})
	e.create(map[string]any{"name": "a-demo", "kind": "ssh", "privateKey": opensshKey(t, "none"), "projectId": "proj_demo"})
	e.create(map[string]any{"name": "other", "kind": "gitlab", "accessToken": token("t"), "projectId": "proj_other"})
	e.create(map[string]any{"name": "everyone", "kind": "bitbucket", "accessToken": token("t")})

	list := func(query string) []string {
		t.Helper()
		r := e.do("GET", "/api/v1/credentials"+query, nil).must(t, 200)
		var l struct {
			Items []map[string]any `json:"items"`
		}
		r.into(t, &l)
		for _, c := range l.Items {
			if c["accessToken"] != nil && c["accessToken"] != "***" || c["privateKey"] != nil && c["privateKey"] != "***" {
				t.Errorf("list item not masked: %v", c)
			}
			if (c["accessToken"] == nil) == (c["privateKey"] == nil) {
				t.Errorf("list item with neither or both masks: %v", c)
			}
		}
		return names(t, r)
	}
	if got := list(""); strings.Join(got, ",") != "a-demo,b-demo,everyone,other" {
		t.Errorf("every credential: %v", got)
	}
	if got := list("?projectId=proj_demo"); strings.Join(got, ",") != "a-demo,b-demo" {
		t.Errorf("projectId=proj_demo: %v", got)
	}
	if got := list("?projectId=proj_none"); len(got) != 0 {
		t.Errorf("projectId=proj_none: %v", got)
	}
	e.do("GET", "/api/v1/credentials?projectId=", nil).mustErr(t, 400, "query parameter projectId: required")
	e.do("GET", "/api/v1/credentials?projectId=../x", nil).mustErr(t, 400, "query parameter projectId", `got "../x"`)
	e.do("GET", "/api/v1/credentials?projectId=a&projectId=b", nil).mustErr(t, 400, "given 2 times")
	e.do("GET", "/api/v1/credentials?kind=ssh", nil).mustErr(t, 400, `unknown parameter "kind"`)
}

func TestCredentialsUpdate(t *testing.T) {
	e := newCredEnv(t, nil)
	t1 := token("ghp_")
	d := e.create(map[string]any{"name": "gh", "kind": "github", "accessToken": t1})
	id := d["credentialId"].(string)
	path := "/api/v1/credentials/" + id
	before := e.opens(id, t1)

	// Fields only: the ciphertext stays.
	e.clock.Advance(time.Minute)
	d = e.do("PUT", path, map[string]any{"name": "gh-ci", "host": "github.example.com", "username": "ci", "projectId": "proj_demo"}).must(t, 200).detail()
	want := map[string]any{"credentialId": id, "name": "gh-ci", "kind": "github", "host": "github.example.com", "username": "ci",
		"projectId": "proj_demo", "accessToken": "***", "createdBy": "user_alice", "creatorId": e.userID("user_alice"), "createdAt": wire.Time(before.CreatedAt), "updatedAt": wire.Time(e.clock.Now()),
		"userId": "", "provider": "", "loginName": "", "avatarUrl": "", "expiresAt": nil}
	if !sameJSON(d, want) {
		t.Errorf("after PUT fields:\n%v\nwant\n%v", d, want)
	}
	if c := e.opens(id, t1); !bytes.Equal(c.Ciphertext, before.Ciphertext) || c.Host != "github.example.com" || c.ProjectID != "proj_demo" {
		t.Errorf("PUT without a token changed the ciphertext, or did not store the fields: %+v", c)
	}

	// A new token is sealed again.
	t2 := e.value(token("ghp_"))
	e.do("PUT", path, map[string]any{"accessToken": t2}).must(t, 200)
	if c := e.opens(id, t2); bytes.Equal(c.Ciphertext, before.Ciphertext) || c.Name != "gh-ci" {
		t.Errorf("PUT accessToken kept the old ciphertext or changed the name: %+v", c)
	}

	// Empty host and username go back to the kind's defaults; an empty
	// projectId lifts the restriction.
	d = e.do("PUT", path, map[string]any{"host": "", "username": "", "projectId": ""}).must(t, 200).detail()
	if d["host"] != "github.com" || d["username"] != "x-access-token" || d["projectId"] != "" {
		t.Errorf("after PUT empty fields: %v", d)
	}

	// The kind cannot change: the reason, and nothing changes.
	e.do("PUT", path, map[string]any{"kind": "gitlab"}).mustErr(t, 400, "body.kind: a credential's kind cannot change; create a new credential")
	e.do("PUT", path, map[string]any{"kind": "github", "name": "same-kind"}).mustErr(t, 400, "body.kind: a credential's kind cannot change")
	if c := e.stored(id); c.Kind != "github" || c.Name != "gh-ci" {
		t.Errorf("after a refused kind change: %+v", c)
	}

	// A name another credential has: 409, nothing changes.
	e.create(map[string]any{"name": "taken", "kind": "gitlab", "accessToken": token("glpat-")})
	e.do("PUT", path, map[string]any{"name": "taken", "accessToken": e.value(token("x"))}).mustErr(t, 409, `body.name: a credential named "taken" exists`)
	if c := e.opens(id, t2); c.Name != "gh-ci" {
		t.Errorf("name after a refused rename: %q", c.Name)
	}

	// The secret material must fit the kind.
	e.do("PUT", path, map[string]any{"privateKey": e.key(opensshKey(t, "none"))}).mustErr(t, 400, "body.privateKey: only an ssh credential takes a private key; kind github takes accessToken")
	e.do("PUT", path, map[string]any{"accessToken": e.value("two words")}).mustErr(t, 400, "body.accessToken: contains a space")
	e.do("PUT", path, map[string]any{"host": "https://github.com"}).mustErr(t, 400, "body.host", "has a scheme (https://)")
	e.do("PUT", path, map[string]any{}).mustErr(t, 400, "body: give at least one of name, host, username, projectId, accessToken, privateKey")
	e.do("PUT", path, rawBody("")).mustErr(t, 400, "body: empty")
	e.do("PUT", path, map[string]any{"nmae": "x"}).mustErr(t, 400, `unknown field "nmae" (did you mean "name"?)`)
	e.do("PUT", path+"?force=1", map[string]any{"name": "x"}).mustErr(t, 400, `unknown parameter "force"`)
	e.opens(id, t2)

	// A gitea credential has no default host to go back to.
	gid := e.create(map[string]any{"name": "forge", "kind": "gitea", "host": "git.example.com", "username": "ci", "accessToken": token("gt")})["credentialId"].(string)
	e.do("PUT", "/api/v1/credentials/"+gid, map[string]any{"host": ""}).mustErr(t, 400, "body.host: required for kind gitea")
	e.do("PUT", "/api/v1/credentials/"+gid, map[string]any{"username": ""}).mustErr(t, 400, "body.username: required for kind gitea")

	// An ssh credential takes a new key, not a token.
	k1 := opensshKey(t, "none")
	sid := e.create(map[string]any{"name": "key", "kind": "ssh", "privateKey": k1})["credentialId"].(string)
	sshBefore := e.opens(sid, k1)
	e.do("PUT", "/api/v1/credentials/"+sid, map[string]any{"accessToken": e.value(token("x"))}).mustErr(t, 400, "body.accessToken: an ssh credential takes privateKey")
	k2 := e.key(opensshKey(t, "none"))
	d = e.do("PUT", "/api/v1/credentials/"+sid, map[string]any{"privateKey": k2}).must(t, 200).detail()
	if d["privateKey"] != "***" || d["accessToken"] != nil {
		t.Errorf("ssh after PUT: %v", d)
	}
	if c := e.opens(sid, k2); bytes.Equal(c.Ciphertext, sshBefore.Ciphertext) {
		t.Error("PUT privateKey kept the old ciphertext")
	}

	e.do("PUT", "/api/v1/credentials/cred_cccccccccccccccccccc", map[string]any{"name": "x"}).mustErr(t, 404, "credential cred_cccccccccccccccccccc not found")
	e.do("PUT", "/api/v1/credentials/nope", map[string]any{"name": "x"}).mustErr(t, 400, "path parameter credentialId")
}

func TestCredentialsDelete(t *testing.T) {
	e := newCredEnv(t, nil)
	id := e.create(map[string]any{"name": "gone", "kind": "github", "accessToken": token("ghp_")})["credentialId"].(string)
	r := e.do("DELETE", "/api/v1/credentials/"+id, nil).must(t, 200)
	if _, ok := r.env["detail"]; ok {
		t.Errorf("DELETE answer has a detail: %s", r.body)
	}
	e.do("GET", "/api/v1/credentials/"+id, nil).mustErr(t, 404, "credential "+id+" not found")
	e.do("PUT", "/api/v1/credentials/"+id, map[string]any{"name": "x"}).mustErr(t, 404, "not found")
	e.do("DELETE", "/api/v1/credentials/"+id, nil).mustErr(t, 404, "credential "+id+" not found")
	if _, err := e.st.GetCredential(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stored after DELETE: %v", err)
	}
	// The name is free again.
	e.create(map[string]any{"name": "gone", "kind": "github", "accessToken": token("ghp_")})
	e.do("DELETE", "/api/v1/credentials/"+id+"?force=1", nil).mustErr(t, 400, `unknown parameter "force"`)
	e.do("DELETE", "/api/v1/credentials/x", nil).mustErr(t, 400, "path parameter credentialId")
}

func TestCredentialsValidation(t *testing.T) {
	e := newCredEnv(t, nil)
	good := func() map[string]any {
		return map[string]any{"name": "gh", "kind": "github", "accessToken": e.value(token("ghp_"))}
	}
	with := func(b map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(b, kv[i].(string))
			} else {
				b[kv[i].(string)] = kv[i+1]
			}
		}
		return b
	}
	ssh := func() map[string]any {
		return map[string]any{"name": "key", "kind": "ssh", "privateKey": e.key(opensshKey(t, "none"))}
	}
	key := e.key(opensshKey(t, "none"))
	keyBody := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(key), "-----BEGIN OPENSSH PRIVATE KEY-----\n"), "\n-----END OPENSSH PRIVATE KEY-----")
	encryptedPEM := e.key("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" + base64.StdEncoding.EncodeToString([]byte("ciphertext of an rsa key, 0123456789")) + "\n-----END RSA PRIVATE KEY-----\n")
	encryptedPKCS8 := e.key(string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("pkcs8 encrypted 0123456789abcdef")})))
	notOpenSSH := e.key(string(pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("not the openssh format 0123456789")})))
	cert := e.key(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("a certificate, not a key 0123456789")})))
	damaged := e.key(strings.Replace(key, keyBody[:8], "!!!!****", 1))
	huge := e.key("-----BEGIN PRIVATE KEY-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", 260) + "-----END PRIVATE KEY-----\n")
	kinds := "must be one of github, gitlab, gitea, bitbucket, basic, ssh"
	tests := []struct {
		name   string
		body   any
		status int
		msg    []string
	}{
		{"unknown kind", with(good(), "kind", "svn"), 400, []string{"body.kind: " + kinds + `; got "svn"`}},
		{"no kind", with(good(), "kind", nil), 400, []string{"body.kind: " + kinds + `; got ""`}},
		{"kind not a string", with(good(), "kind", 7), 400, []string{"body.kind: must be a string"}},
		{"no name", with(good(), "name", nil), 400, []string{"body.name: required"}},
		{"bad name", with(good(), "name", "../x"), 400, []string{"body.name: must be 1 to 100"}},
		{"host with a scheme", with(good(), "host", "https://github.com"), 400, []string{`body.host: "https://github.com" has a scheme (https://)`, "e.g. git.example.com"}},
		{"host with a path", with(good(), "kind", "gitea", "host", "git.example.com/team/app.git", "username", "ci"), 400, []string{`body.host: "git.example.com/team/app.git" has a path`}},
		{"host with a user", with(good(), "kind", "gitea", "host", "ci@git.example.com", "username", "ci"), 400, []string{"body.host", "has a user part (give it in username)"}},
		{"host with a space", with(good(), "host", "git example.com"), 400, []string{"body.host", "is not a host name"}},
		{"host with an empty label", with(good(), "host", "git..example.com"), 400, []string{"body.host", "is not a host name"}},
		{"host with port 0", with(good(), "host", "git.example.com:0"), 400, []string{"body.host", "port outside 1 to 65535"}},
		{"host with port 99999", with(good(), "host", "git.example.com:99999"), 400, []string{"body.host", "port outside 1 to 65535"}},
		{"gitea without host", with(good(), "kind", "gitea", "username", "ci"), 400, []string{"body.host: required for kind gitea"}},
		{"basic without host", with(good(), "kind", "basic", "username", "ci"), 400, []string{"body.host: required for kind basic"}},
		{"basic without username", with(good(), "kind", "basic", "host", "git.example.com"), 400, []string{"body.username: required for kind basic"}},
		{"username with spaces", with(good(), "username", "ci bot"), 400, []string{`body.username: "ci bot" is not a user name`, "letters, digits"}},
		{"username with a colon", with(good(), "username", "ci:pw"), 400, []string{`body.username: "ci:pw" is not a user name`}},
		{"bad projectId", with(good(), "projectId", "../etc"), 400, []string{"body.projectId", `got "../etc"`}},
		{"token with a newline", with(good(), "accessToken", e.value("ghp_line1\nline2")), 400, []string{"body.accessToken: contains a line break", "one line of printable text without spaces"}},
		{"token with a CR", with(good(), "accessToken", e.value("ghp_line1\rline2")), 400, []string{"body.accessToken: contains a line break"}},
		{"token with a space", with(good(), "accessToken", e.value("ghp_ two")), 400, []string{"body.accessToken: contains a space"}},
		{"token with a tab", with(good(), "accessToken", e.value("ghp_\ttab")), 400, []string{"body.accessToken: contains a space or a control character"}},
		{"token with NUL", with(good(), "accessToken", e.value("ghp_\x00nul")), 400, []string{"body.accessToken: contains a NUL character"}},
		{"token too short", with(good(), "accessToken", "Q9!"), 400, []string{"body.accessToken: 3 bytes; a token is 4 to 4096 bytes", "masked"}},
		{"token too long", with(good(), "accessToken", strings.Repeat("t", 4097)), 400, []string{"body.accessToken: 4097 bytes; a token is 4 to 4096 bytes"}},
		{"null token", with(good(), "accessToken", json.RawMessage("null")), 400, []string{"body.accessToken: 0 bytes"}},
		{"token not a string", with(good(), "accessToken", 12345678), 400, []string{"body.accessToken: must be a string"}},
		{"token of invalid UTF-8", rawBody("{\"name\":\"gh\",\"kind\":\"github\",\"accessToken\":\"ghp_\xff\xfe\xfd\xfc\"}"), 400, []string{"body.accessToken: must be valid UTF-8 text"}},
		{"token with a lone surrogate", rawBody(`{"name":"gh","kind":"github","accessToken":"ghp_\ud800abcd"}`), 400, []string{"body.accessToken: must be valid UTF-8 text"}},
		{"no token", with(good(), "accessToken", nil), 400, []string{"body.accessToken: required for kind github"}},
		{"key given to a token kind", with(good(), "accessToken", nil, "privateKey", key), 400, []string{"body.privateKey: only an ssh credential takes a private key; kind github takes accessToken"}},
		{"key and token to a token kind", with(good(), "privateKey", key), 400, []string{"body.privateKey: only an ssh credential takes a private key"}},
		{"token given to ssh", with(ssh(), "accessToken", e.value(token("ghp_"))), 400, []string{"body.accessToken: an ssh credential takes privateKey"}},
		{"no key", with(ssh(), "privateKey", nil), 400, []string{"body.privateKey: required for kind ssh"}},
		{"key not a key", with(ssh(), "privateKey", e.value("hunter2-is-my-password")), 400, []string{"body.privateKey: not a private key; expected the text of one OpenSSH or PEM private key file"}},
		{"public key", with(ssh(), "privateKey", e.value("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB ci@runnel")), 400, []string{"body.privateKey: this is a public key; give the private key"}},
		{"certificate", with(ssh(), "privateKey", cert), 400, []string{`body.privateKey: a "CERTIFICATE" block is not a private key`}},
		{"damaged base64", with(ssh(), "privateKey", damaged), 400, []string{"body.privateKey: not a private key (no well-formed PEM block"}},
		{"no END line", with(ssh(), "privateKey", e.key(strings.TrimSuffix(strings.TrimSpace(key), "-----END OPENSSH PRIVATE KEY-----"))), 400, []string{"body.privateKey: not a private key (no well-formed PEM block"}},
		{"two keys", with(ssh(), "privateKey", e.key(key+key)), 400, []string{"body.privateKey: text after the -----END OPENSSH PRIVATE KEY----- line; give exactly one private key"}},
		{"not the OpenSSH format", with(ssh(), "privateKey", notOpenSSH), 400, []string{"body.privateKey: not an OpenSSH private key"}},
		{"OpenSSH key with a passphrase", with(ssh(), "privateKey", e.key(opensshKey(t, "aes256-ctr"))), 400, []string{"body.privateKey: the key is protected by a passphrase (cipher aes256-ctr)", "ssh-keygen -p"}},
		{"PEM key with a passphrase", with(ssh(), "privateKey", encryptedPEM), 400, []string{"body.privateKey: the key is protected by a passphrase"}},
		{"PKCS#8 key with a passphrase", with(ssh(), "privateKey", encryptedPKCS8), 400, []string{"body.privateKey: the key is protected by a passphrase"}},
		{"key too big", with(ssh(), "privateKey", huge), 400, []string{"body.privateKey: 169", "bytes, at most 16 KiB"}},
		{"key with NUL", with(ssh(), "privateKey", e.key(strings.Replace(key, "\n", "\n\x00", 1))), 400, []string{"body.privateKey: contains a NUL character"}},
		{"key of invalid UTF-8", rawBody("{\"name\":\"key\",\"kind\":\"ssh\",\"privateKey\":\"-----BEGIN PRIVATE KEY-----\\n\xc3\x28AAAA\\n-----END PRIVATE KEY-----\"}"), 400, []string{"body.privateKey: must be valid UTF-8 text"}},
		{"key with a lone surrogate", rawBody(`{"name":"key","kind":"ssh","privateKey":"-----BEGIN PRIVATE KEY-----\n\udc00AAAA\n-----END PRIVATE KEY-----"}`), 400, []string{"body.privateKey: must be valid UTF-8 text"}},
		{"unknown field", with(good(), "token", "x"), 400, []string{`unknown field "token"`}},
		{"not JSON", rawBody("name=gh"), 400, []string{"body: malformed JSON"}},
		{"empty", rawBody(""), 400, []string{"body: empty"}},
	}
	parent := e.t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t // the checks of do fail the subtest
			defer func() { e.t = parent }()
			e.do("POST", "/api/v1/credentials", tt.body).mustErr(t, tt.status, tt.msg...)
		})
	}
	if l, err := e.st.ListCredentials(context.Background(), ""); err != nil || len(l) != 0 {
		t.Fatalf("refused credentials were stored: %d, %v", len(l), err)
	}

	// Boundaries and what is accepted.
	id := e.create(with(good(), "accessToken", "Q9!x"))["credentialId"].(string)
	e.opens(id, "Q9!x")
	long := strings.Repeat("t", 4096)
	id = e.create(with(good(), "name", "long", "accessToken", long))["credentialId"].(string)
	e.opens(id, long)
	id = e.create(with(good(), "name", "unicode", "accessToken", "pässwörd-\U0001F600"))["credentialId"].(string)
	e.opens(id, "pässwörd-\U0001F600")
	b := with(good(), "name", "port", "kind", "gitea", "host", "git.example.com:65535", "username", "a.b_c@d+e-f")
	d := e.create(b)
	if d["host"] != "git.example.com:65535" || d["username"] != "a.b_c@d+e-f" {
		t.Errorf("boundary host and username: %v", d)
	}
	e.opens(d["credentialId"].(string), b["accessToken"].(string))
	d = e.create(map[string]any{"name": "pem", "kind": "ssh", "privateKey": pemKey(t)})
	if d["privateKey"] != "***" {
		t.Errorf("PEM key: %v", d)
	}

	// Names are unique on the server, whatever the kind or project.
	e.create(map[string]any{"name": "dup", "kind": "github", "accessToken": token("ghp_"), "projectId": "proj_a"})
	e.do("POST", "/api/v1/credentials", map[string]any{"name": "dup", "kind": "gitlab", "accessToken": e.value(token("glpat-")), "projectId": "proj_b"}).
		mustErr(t, 409, `body.name: a credential named "dup" exists`)

	// The content type, query parameters.
	e.do("POST", "/api/v1/credentials", rawBody(`{}`), withHeader("Content-Type", "text/plain")).mustErr(t, 415, "Content-Type")
	e.do("POST", "/api/v1/credentials?projectId=proj_demo", good()).mustErr(t, 400, `unknown parameter "projectId"`)
}

func TestCredentialsBodyLimit(t *testing.T) {
	e := newCredEnv(t, func(c *Config) { c.MaxBodyBytes = 4 << 10 })
	k := e.key("-----BEGIN PRIVATE KEY-----\n" + strings.Repeat(strings.Repeat("B", 64)+"\n", 80) + "-----END PRIVATE KEY-----\n")
	e.do("POST", "/api/v1/credentials", map[string]any{"name": "big", "kind": "ssh", "privateKey": k}).mustErr(t, 413, "larger than the limit of 4 KiB")
}

// TestCredentialsWithoutKey: a server without a secret key refuses to create
// credentials or change their token with a 503 that says why.
func TestCredentialsWithoutKey(t *testing.T) {
	e := newCredEnv(t, func(c *Config) { c.Secrets = nil })
	const msg = "secrets are not available: this server has no secret key configured"
	tok := e.value(token("ghp_"))
	e.do("POST", "/api/v1/credentials", map[string]any{"name": "gh", "kind": "github", "accessToken": tok}).mustErr(t, 503, msg)
	e.do("PUT", "/api/v1/credentials/cred_cccccccccccccccccccc", map[string]any{"accessToken": tok}).mustErr(t, 503, msg)
	// What needs no key still answers.
	if got := names(t, e.do("GET", "/api/v1/credentials", nil).must(t, 200)); len(got) != 0 {
		t.Errorf("list: %v", got)
	}
	e.do("GET", "/api/v1/credentials/cred_cccccccccccccccccccc", nil).mustErr(t, 404, "not found")
	e.do("DELETE", "/api/v1/credentials/cred_cccccccccccccccccccc", nil).mustErr(t, 404, "not found")
}

// TestCredentialsReachOnlyTheirProject runs the real scheduler with the
// resolver `runnel server` uses and claims jobs as an agent would: a
// credential limited to project A is in the claim of project A's job and not
// in project B's, whose checkout then fails with the documented message; a
// credential of no project reaches both. The token is in no stored job
// request.
func TestCredentialsReachOnlyTheirProject(t *testing.T) {
	var sched *scheduler.Scheduler
	e := newCredEnv(t, func(c *Config) {
		sched = scheduler.New(scheduler.Options{Store: c.Store, Catalog: action.Builtins(), Now: c.Clock,
			Secrets: secret.Resolver{Store: c.Store, Keyring: c.Secrets.(*secret.Keyring)}})
		c.Runs = schedulerControl{sched}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() }) // before the store closes
	wg.Add(1)
	go func() { defer wg.Done(); _ = sched.Run(ctx) }()

	tokA := token("glpat-")
	credA := e.create(map[string]any{"name": "team-a", "kind": "gitlab", "host": "git.example.com", "accessToken": tokA, "projectId": "proj_a"})["credentialId"].(string)
	tokAll := token("ghp_")
	credAll := e.create(map[string]any{"name": "shared", "kind": "github", "host": "git.example.com", "accessToken": tokAll})["credentialId"].(string)
	checkout := func(cred string) map[string]any {
		return map[string]any{"name": "checkout-" + cred, "uses": "actions/git-checkout@v1",
			"args": map[string]any{"repo": "https://git.example.com/team/app.git", "credential": cred}}
	}
	spec := map[string]any{"namespace": "demo.checkout", "version": "v1",
		"jobs": []any{map[string]any{"name": "build", "steps": []any{checkout(credA), checkout(credAll)}}}}
	pA := e.createPipeline("app-a", map[string]any{"projectId": "proj_a", "spec": spec})
	pB := e.createPipeline("app-b", map[string]any{"projectId": "proj_b", "spec": spec})

	claim := func(pid string) *worker.Claim {
		t.Helper()
		rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		c, err := sched.Claim(cctx, "agent_credentialtest0", nil, 10*time.Second)
		if err != nil || c == nil {
			t.Fatalf("claim: %v, %v", c, err)
		}
		if c.RunID != rid {
			t.Fatalf("claimed a job of run %s, want %s", c.RunID, rid)
		}
		if bytes.Contains(c.EncodedRequest, []byte(tokA)) || bytes.Contains(c.EncodedRequest, []byte(tokAll)) {
			t.Errorf("the stored job request contains a token")
		}
		return c
	}
	prepare := func(c *worker.Claim, cred string) (action.Exec, error) {
		return action.GitCheckout{}.Prepare(action.Call{Args: checkout(cred)["args"].(map[string]any), Credentials: c.Request.Credentials})
	}

	a := claim(pA)
	want := map[string]runnel.Credential{
		credA:   {ID: credA, Kind: "gitlab", Host: "git.example.com", Username: "oauth2", Secret: tokA},
		credAll: {ID: credAll, Kind: "github", Host: "git.example.com", Username: "x-access-token", Secret: tokAll},
	}
	if len(a.Request.Credentials) != 2 || a.Request.Credentials[credA] != want[credA] || a.Request.Credentials[credAll] != want[credAll] {
		t.Errorf("project A's claim has credentials %+v, want %+v", a.Request.Credentials, want)
	}
	ex, err := prepare(a, credA)
	if err != nil || ex.Env["RUNNEL_GIT_PASSWORD"] != tokA || ex.Env["RUNNEL_GIT_USERNAME"] != "oauth2" ||
		ex.Env["RUNNEL_GIT_CREDENTIAL_URL"] != "https://git.example.com" || strings.Contains(ex.Script, tokA) {
		t.Errorf("project A's checkout: %v, env %v", err, ex.Env)
	}

	b := claim(pB)
	if _, ok := b.Request.Credentials[credA]; ok || len(b.Request.Credentials) != 1 || b.Request.Credentials[credAll] != want[credAll] {
		t.Errorf("project B's claim has credentials %+v, want only %s", b.Request.Credentials, credAll)
	}
	if _, err := prepare(b, credA); err == nil || !strings.Contains(err.Error(), `"`+credA+`" is not a credential this job may use`) {
		t.Errorf("project B's checkout with project A's credential: %v", err)
	}
	if _, err := prepare(b, credAll); err != nil {
		t.Errorf("project B's checkout with the shared credential: %v", err)
	}

	// Lifting the restriction reaches B's next claim; deleting the
	// credential takes it out of every later one.
	e.do("PUT", "/api/v1/credentials/"+credA, map[string]any{"projectId": ""}).must(t, 200)
	if b2 := claim(pB); b2.Request.Credentials[credA] != want[credA] {
		t.Errorf("after lifting the restriction, B's claim has %+v", b2.Request.Credentials)
	}
	e.do("DELETE", "/api/v1/credentials/"+credA, nil).must(t, 200)
	if a2 := claim(pA); len(a2.Request.Credentials) != 1 || a2.Request.Credentials[credAll] != want[credAll] {
		t.Errorf("after DELETE, A's claim has %+v", a2.Request.Credentials)
	}
}
