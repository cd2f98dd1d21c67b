// Package secret seals secret values for storage (AES-256-GCM with the
// server's key) and opens them again when a job that may use them is handed
// to an agent.
//
// The key comes from RUNNEL_SECRET_KEY (32 bytes, base64 or hex) or from a key
// file the server generates in its data directory (mode 0600). Every sealed
// value records the id of the key that sealed it, and the secret's id is
// bound to the ciphertext (GCM additional data), so a ciphertext copied onto
// another secret's row does not open. Rotation: start the server with the new
// key and the old one in RUNNEL_SECRET_OLD_KEYS; it re-encrypts every secret
// under the new key at startup (Reencrypt), after which the old key can go.
package secret

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
)

// KeyFile is the generated key's file name in the data directory.
const KeyFile = "secret.key"

// Keyring holds the current key and, during a rotation, old ones.
type Keyring struct {
	current *key
	byID    map[string]*key
}

type key struct {
	id   string
	aead cipher.AEAD
}

func newKey(raw []byte) (*key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("a secret key is 32 bytes, got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("runnel secret key id\x00"), raw...))
	return &key{id: hex.EncodeToString(sum[:6]), aead: aead}, nil
}

// ParseKey reads a 32-byte key written as base64 (standard or URL, padded
// or not) or as 64 hex digits.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("not a 32-byte key in base64 or hex (generate one with: head -c 32 /dev/urandom | base64)")
}

// NewKeyring builds a keyring from raw keys: current seals, all open.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	k, err := newKey(current)
	if err != nil {
		return nil, err
	}
	kr := &Keyring{current: k, byID: map[string]*key{k.id: k}}
	for i, raw := range old {
		ok, err := newKey(raw)
		if err != nil {
			return nil, fmt.Errorf("old key %d: %w", i+1, err)
		}
		kr.byID[ok.id] = ok
	}
	return kr, nil
}

// Load builds the server's keyring: the key from envKey (RUNNEL_SECRET_KEY)
// when set, else the key file in dataDir (generated on first use); old keys
// (RUNNEL_SECRET_OLD_KEYS, comma-separated) may still open values.
func Load(dataDir, envKey, oldKeys string) (*Keyring, error) {
	var raw []byte
	if envKey != "" {
		b, err := ParseKey(envKey)
		if err != nil {
			return nil, fmt.Errorf("RUNNEL_SECRET_KEY: %w", err)
		}
		raw = b
	} else {
		b, err := loadOrCreateKeyFile(dataDir + string(os.PathSeparator) + KeyFile)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	var old [][]byte
	for i, s := range strings.Split(oldKeys, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		b, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("RUNNEL_SECRET_OLD_KEYS, key %d: %w", i+1, err)
		}
		old = append(old, b)
	}
	return NewKeyring(raw, old...)
}

func loadOrCreateKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		st, serr := os.Stat(path)
		if serr == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("secret key file %s is readable by others (mode %o): chmod 600 it", path, st.Mode().Perm())
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("secret key file %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return loadOrCreateKeyFile(path) // created by a concurrent start
	}
	if err != nil {
		return nil, fmt.Errorf("create secret key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write secret key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write secret key file: %w", err)
	}
	return raw, nil
}

// KeyID is the id of the current key.
func (k *Keyring) KeyID() string { return k.current.id }

// Seal encrypts a value for the secret id with the current key.
func (k *Keyring) Seal(secretID string, value []byte) (ciphertext []byte, keyID string) {
	nonce := make([]byte, k.current.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return k.current.aead.Seal(nonce, nonce, value, []byte(secretID)), k.current.id
}

// Open decrypts a value sealed for the secret id.
func (k *Keyring) Open(secretID string, ciphertext []byte, keyID string) ([]byte, error) {
	key := k.byID[keyID]
	if key == nil {
		return nil, fmt.Errorf("secret %s was sealed with key %s, which this server does not have (current key %s): give every replica the same RUNNEL_SECRET_KEY, and during a rotation the old key in RUNNEL_SECRET_OLD_KEYS", secretID, keyID, k.current.id)
	}
	n := key.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, fmt.Errorf("secret %s: ciphertext too short", secretID)
	}
	v, err := key.aead.Open(nil, ciphertext[:n], ciphertext[n:], []byte(secretID))
	if err != nil {
		return nil, fmt.Errorf("secret %s: cannot be decrypted with key %s (damaged, or not sealed for this secret)", secretID, keyID)
	}
	return v, nil
}

// Reencrypt seals every secret, credential, pipeline webhook secret and
// sign-in provider's client secret that another key sealed with the
// current key. It returns how many it rewrote.
func (k *Keyring) Reencrypt(ctx context.Context, st interface {
	store.Secrets
	store.Credentials
	store.Webhooks
	store.SignIn
}) (int, error) {
	list, err := st.ListSecrets(ctx, store.SecretFilter{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, x := range list {
		if x.KeyID == k.current.id {
			continue
		}
		v, err := k.Open(x.ID, x.Ciphertext, x.KeyID)
		if err != nil {
			return n, err
		}
		x.Ciphertext, x.KeyID = k.Seal(x.ID, v)
		if err := st.UpdateSecret(ctx, x); err != nil {
			return n, err
		}
		n++
	}
	creds, err := st.ListCredentials(ctx, "")
	if err != nil {
		return n, err
	}
	for _, c := range creds {
		refresh := len(c.RefreshCiphertext) > 0 && c.RefreshKeyID != k.current.id
		if c.KeyID == k.current.id && !refresh {
			continue
		}
		v, err := k.Open(c.ID, c.Ciphertext, c.KeyID)
		if err != nil {
			return n, err
		}
		c.Ciphertext, c.KeyID = k.Seal(c.ID, v)
		if refresh {
			// A connected account's refresh token, sealed beside it.
			rv, err := k.Open(c.RefreshSealID(), c.RefreshCiphertext, c.RefreshKeyID)
			if err != nil {
				return n, err
			}
			c.RefreshCiphertext, c.RefreshKeyID = k.Seal(c.RefreshSealID(), rv)
		}
		if err := st.UpdateCredential(ctx, c); err != nil {
			return n, err
		}
		n++
	}
	hooks, err := st.ListWebhookSecrets(ctx)
	if err != nil {
		return n, err
	}
	for _, w := range hooks {
		if w.KeyID == k.current.id {
			continue
		}
		v, err := k.Open(w.SealID(), w.Ciphertext, w.KeyID)
		if err != nil {
			return n, err
		}
		w.Ciphertext, w.KeyID = k.Seal(w.SealID(), v)
		if err := st.SetWebhookSecret(ctx, w); err != nil {
			return n, err
		}
		n++
	}
	providers, err := st.ListAuthProviders(ctx)
	if err != nil {
		return n, err
	}
	for _, p := range providers {
		if p.KeyID == k.current.id {
			continue
		}
		v, err := k.Open(p.SealID(), p.Ciphertext, p.KeyID)
		if err != nil {
			return n, err
		}
		p.Ciphertext, p.KeyID = k.Seal(p.SealID(), v)
		if err := st.UpdateAuthProvider(ctx, p); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Resolver opens the secrets a pipeline's runs may use.
type Resolver struct {
	Store   store.Store
	Keyring *Keyring
	// Tokens opens connected accounts' tokens, renewing one about to
	// expire (signin.Service); nil: they are opened as stored.
	Tokens interface {
		AccessToken(ctx context.Context, c *store.Credential) (string, error)
	}
}

// Credentials opens the credentials with the given ids that the pipeline's
// jobs may use: those of no project or of the pipeline's project. Others
// (unknown, deleted, another project's) are left out; the step that names
// one fails with a message saying so.
func (r Resolver) Credentials(ctx context.Context, pipelineID string, ids []string) (map[string]runnel.Credential, error) {
	p, err := r.Store.GetPipeline(ctx, pipelineID)
	if err != nil {
		return nil, err
	}
	out := map[string]runnel.Credential{}
	for _, id := range ids {
		c, err := r.Store.GetCredential(ctx, id)
		if errors.Is(err, runnel.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c.ProjectID != "" && c.ProjectID != p.ProjectID {
			continue
		}
		var v []byte
		if c.OwnerID != "" && r.Tokens != nil {
			tok, err := r.Tokens.AccessToken(ctx, c)
			if err != nil {
				return nil, err
			}
			v = []byte(tok)
		} else if v, err = r.Keyring.Open(c.ID, c.Ciphertext, c.KeyID); err != nil {
			return nil, err
		}
		out[c.ID] = runnel.Credential{ID: c.ID, Kind: c.Kind, Host: c.Host, Username: c.Username, Secret: string(v)}
	}
	return out, nil
}

// ForPipeline returns name → value for the pipeline: the project's secrets,
// then the pipeline's own (which win on a name clash).
func (r Resolver) ForPipeline(ctx context.Context, pipelineID string) (map[string]string, error) {
	p, err := r.Store.GetPipeline(ctx, pipelineID)
	if err != nil {
		return nil, err
	}
	list, err := r.Store.SecretsForPipeline(ctx, p.ProjectID, p.ID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for _, x := range list {
		v, err := r.Keyring.Open(x.ID, x.Ciphertext, x.KeyID)
		if err != nil {
			return nil, err
		}
		out[x.Name] = string(v)
	}
	return out, nil
}
