package secret

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

// TestReencryptRefreshTokens: a key rotation reseals a connected account's
// refresh token (under its own seal id) along with its access token, also
// when only the refresh token was left under the old key (a refresh that
// renewed the access token alone).
func TestReencryptRefreshTokens(t *testing.T) {
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
	rotated, err := NewKeyring(rawKey(2), rawKey(1))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	exp := now.Add(time.Hour)
	connected := func(id, access, refresh string, accessKeys *Keyring) *store.Credential {
		c := &store.Credential{ID: id, Name: id, Kind: "gitea", Host: "git.example.com", Username: "robin", CreatedAt: now, UpdatedAt: now,
			OwnerID: "usr_1", Provider: "gitea", AccountID: "77", LoginName: "robin", ExpiresAt: &exp}
		c.Ciphertext, c.KeyID = accessKeys.Seal(c.ID, []byte(access))
		c.RefreshCiphertext, c.RefreshKeyID = old.Seal(c.RefreshSealID(), []byte(refresh))
		if err := st.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	both := connected("cred_both", "tok-access-1", "ref-refresh-1", old)
	onlyRefresh := connected("cred_onlyrefresh", "tok-access-2", "ref-refresh-2", rotated)
	if onlyRefresh.KeyID != rotated.KeyID() || onlyRefresh.RefreshKeyID == rotated.KeyID() {
		t.Fatalf("setup: access key %s refresh key %s", onlyRefresh.KeyID, onlyRefresh.RefreshKeyID)
	}
	// A hand-made credential under the current key: nothing to do.
	hand := &store.Credential{ID: "cred_hand", Name: "hand", Kind: "github", Host: "github.com", CreatedAt: now, UpdatedAt: now}
	hand.Ciphertext, hand.KeyID = rotated.Seal(hand.ID, []byte("ghp_by_hand"))
	if err := st.CreateCredential(ctx, hand); err != nil {
		t.Fatal(err)
	}

	n, err := rotated.Reencrypt(ctx, st)
	if err != nil || n != 2 {
		t.Fatalf("Reencrypt: %d, %v; want the 2 connected accounts rewritten", n, err)
	}
	if n, err := rotated.Reencrypt(ctx, st); err != nil || n != 0 {
		t.Fatalf("second Reencrypt: %d, %v; want nothing left to do", n, err)
	}

	newOnly, err := NewKeyring(rawKey(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ id, access, refresh string }{
		{both.ID, "tok-access-1", "ref-refresh-1"},
		{onlyRefresh.ID, "tok-access-2", "ref-refresh-2"},
	} {
		c, err := st.GetCredential(ctx, want.id)
		if err != nil {
			t.Fatal(err)
		}
		if c.KeyID != newOnly.KeyID() || c.RefreshKeyID != newOnly.KeyID() {
			t.Errorf("%s: keys %s and %s, want both %s", c.ID, c.KeyID, c.RefreshKeyID, newOnly.KeyID())
		}
		if v, err := newOnly.Open(c.ID, c.Ciphertext, c.KeyID); err != nil || string(v) != want.access {
			t.Errorf("%s: access token %q, %v; want %q", c.ID, v, err, want.access)
		}
		if v, err := newOnly.Open(c.RefreshSealID(), c.RefreshCiphertext, c.RefreshKeyID); err != nil || string(v) != want.refresh {
			t.Errorf("%s: refresh token %q, %v; want %q", c.ID, v, err, want.refresh)
		}
		// Still bound to its seal id: it does not open as the access token.
		if _, err := newOnly.Open(c.ID, c.RefreshCiphertext, c.RefreshKeyID); err == nil {
			t.Errorf("%s: the refresh token opens under the credential's own id", c.ID)
		}
		// The connection's other fields are kept.
		if c.OwnerID != "usr_1" || c.Provider != "gitea" || c.AccountID != "77" || c.ExpiresAt == nil || !c.ExpiresAt.Equal(exp.Truncate(time.Microsecond)) {
			t.Errorf("%s after rotation: %+v", c.ID, *c)
		}
	}
	h, _ := st.GetCredential(ctx, hand.ID)
	if h.RefreshCiphertext != nil || h.RefreshKeyID != "" {
		t.Errorf("a hand-made credential got a refresh token: %+v", *h)
	}
}

// fakeTokens is a sign-in service's AccessToken.
type fakeTokens struct{ calls []string }

func (f *fakeTokens) AccessToken(_ context.Context, c *store.Credential) (string, error) {
	f.calls = append(f.calls, c.ID)
	return "renewed-" + c.ID, nil
}

// TestResolverTokens: a connected account's credential is opened by
// Resolver.Tokens (which renews it); a hand-made one by the keyring.
func TestResolverTokens(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := NewKeyring(rawKey(3))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	p := &store.Pipeline{ID: runnel.NewID("pl"), ProjectID: "p", Name: "n", SaveMode: "direct", CreatedAt: now, UpdatedAt: now}
	if err := st.CreatePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	conn := &store.Credential{ID: runnel.NewID("cred"), Name: "conn", Kind: "gitea", Host: "git.example.com", Username: "robin",
		CreatedAt: now, OwnerID: "usr_1", Provider: "gitea", AccountID: "77"}
	conn.Ciphertext, conn.KeyID = kr.Seal(conn.ID, []byte("stored-access"))
	hand := &store.Credential{ID: runnel.NewID("cred"), Name: "hand", Kind: "github", Host: "github.com", CreatedAt: now}
	hand.Ciphertext, hand.KeyID = kr.Seal(hand.ID, []byte("ghp_hand"))
	for _, c := range []*store.Credential{conn, hand} {
		if err := st.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	tokens := &fakeTokens{}
	got, err := Resolver{Store: st, Keyring: kr, Tokens: tokens}.Credentials(ctx, p.ID, []string{conn.ID, hand.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got[conn.ID].Secret != "renewed-"+conn.ID || got[hand.ID].Secret != "ghp_hand" || len(tokens.calls) != 1 || tokens.calls[0] != conn.ID {
		t.Errorf("resolved %+v with AccessToken called for %v", got, tokens.calls)
	}
	// Without Tokens, a connected account's token is opened as stored.
	got, err = Resolver{Store: st, Keyring: kr}.Credentials(ctx, p.ID, []string{conn.ID})
	if err != nil || got[conn.ID].Secret != "stored-access" {
		t.Errorf("without Tokens: %+v, %v", got, err)
	}
}
