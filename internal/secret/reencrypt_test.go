package secret

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

func rawKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// TestReencrypt: after a key rotation every sealed value — secrets,
// credentials, webhook secrets and sign-in providers' client secrets — opens
// with the new key alone.
func TestReencrypt(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	old, err := NewKeyring(rawKey(1))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	p := &store.Pipeline{ID: "pl_reencrypt0000000000", ProjectID: "p", Name: "n", SaveMode: "direct", CreatedAt: now, UpdatedAt: now}
	if err := st.CreatePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	sec := &store.Secret{ID: "sec_1", Name: "TOKEN", Scope: "pipeline", ScopeID: p.ID, CreatedAt: now, UpdatedAt: now}
	sec.Ciphertext, sec.KeyID = old.Seal(sec.ID, []byte("secret value"))
	cred := &store.Credential{ID: "cred_1", Name: "git", Kind: "github", Host: "github.com", CreatedAt: now, UpdatedAt: now}
	cred.Ciphertext, cred.KeyID = old.Seal(cred.ID, []byte("ghp_token"))
	hook := &store.PipelineWebhook{PipelineID: p.ID, CreatedAt: now, UpdatedAt: now}
	hook.Ciphertext, hook.KeyID = old.Seal(hook.SealID(), []byte("webhook secret"))
	if err := st.CreateSecret(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	if err := st.SetWebhookSecret(ctx, hook); err != nil {
		t.Fatal(err)
	}
	prov := &store.AuthProvider{Name: "gitea", Kind: "gitea", URL: "https://git.example.com", ClientID: "id", CreatedAt: now, UpdatedAt: now}
	prov.Ciphertext, prov.KeyID = old.Seal(prov.SealID(), []byte("client secret"))
	if err := st.CreateAuthProvider(ctx, prov); err != nil {
		t.Fatal(err)
	}

	rotated, err := NewKeyring(rawKey(2), rawKey(1))
	if err != nil {
		t.Fatal(err)
	}
	n, err := rotated.Reencrypt(ctx, st)
	if err != nil || n != 4 {
		t.Fatalf("Reencrypt: %d, %v; want 4 rewritten", n, err)
	}
	if n, err := rotated.Reencrypt(ctx, st); err != nil || n != 0 {
		t.Fatalf("second Reencrypt: %d, %v; want nothing left to do", n, err)
	}

	newOnly, err := NewKeyring(rawKey(2))
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.GetWebhookSecret(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := newOnly.Open(w.SealID(), w.Ciphertext, w.KeyID); err != nil || string(v) != "webhook secret" {
		t.Errorf("webhook secret after rotation: %q, %v", v, err)
	}
	s, _ := st.GetSecret(ctx, sec.ID)
	if v, err := newOnly.Open(s.ID, s.Ciphertext, s.KeyID); err != nil || string(v) != "secret value" {
		t.Errorf("secret after rotation: %q, %v", v, err)
	}
	pv, _ := st.GetAuthProvider(ctx, "gitea")
	if v, err := newOnly.Open(pv.SealID(), pv.Ciphertext, pv.KeyID); err != nil || string(v) != "client secret" {
		t.Errorf("provider's client secret after rotation: %q, %v", v, err)
	}
	// The webhook secret is bound to its pipeline: it does not open as a
	// secret's value.
	if _, err := newOnly.Open(p.ID, w.Ciphertext, w.KeyID); err == nil {
		t.Error("a webhook ciphertext opened under another id")
	}
}
