package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func testSignIn(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Providers", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := &store.AuthProvider{Name: "gitea", Kind: "gitea", DisplayName: "Our Gitea", URL: "https://git.example.com", ClientID: "cid",
			Ciphertext: []byte{1, 2, 3}, KeyID: "k1", Scopes: []string{"openid", "email"}, AllowedOrgs: []string{"acme"},
			AllowedDomains: []string{}, CreatedAt: at(1), UpdatedAt: at(1)}
		noErr(t, "CreateAuthProvider", f.st.CreateAuthProvider(f.ctx, p))
		wantErr(t, "CreateAuthProvider again", f.st.CreateAuthProvider(f.ctx, p), store.ErrConflict)
		got, err := f.st.GetAuthProvider(f.ctx, "gitea")
		noErr(t, "GetAuthProvider", err)
		sameJSON(t, "GetAuthProvider", got, p)
		p.ClientID, p.Scopes, p.UpdatedAt = "cid2", []string{}, at(2)
		noErr(t, "UpdateAuthProvider", f.st.UpdateAuthProvider(f.ctx, p))
		list, err := f.st.ListAuthProviders(f.ctx)
		noErr(t, "ListAuthProviders", err)
		if len(list) != 1 {
			t.Fatalf("ListAuthProviders = %v", list)
		}
		sameJSON(t, "after UpdateAuthProvider", list[0], p)
		wantErr(t, "UpdateAuthProvider of none", f.st.UpdateAuthProvider(f.ctx, &store.AuthProvider{Name: "nope"}), store.ErrNotFound)

		u := &store.User{ID: newID("usr"), Login: "gina"}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, u))
		noErr(t, "LinkIdentity", f.st.LinkIdentity(f.ctx, "gitea", "42", u.ID, at(3)))
		wantErr(t, "LinkIdentity twice", f.st.LinkIdentity(f.ctx, "gitea", "42", u.ID, at(3)), store.ErrConflict)
		id, err := f.st.UserOfIdentity(f.ctx, "gitea", "42")
		noErr(t, "UserOfIdentity", err)
		if id != u.ID {
			t.Fatalf("UserOfIdentity = %s, want %s", id, u.ID)
		}
		_, err = f.st.UserOfIdentity(f.ctx, "github", "42")
		wantErr(t, "UserOfIdentity at another provider", err, store.ErrNotFound)
		// Deleting the provider forgets who it signed in.
		noErr(t, "DeleteAuthProvider", f.st.DeleteAuthProvider(f.ctx, "gitea"))
		wantErr(t, "DeleteAuthProvider again", f.st.DeleteAuthProvider(f.ctx, "gitea"), store.ErrNotFound)
		_, err = f.st.UserOfIdentity(f.ctx, "gitea", "42")
		wantErr(t, "UserOfIdentity after the deletion", err, store.ErrNotFound)
	})

	t.Run("LoginStatesAndSessions", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		l := &store.LoginState{State: "s1", Provider: "gitea", Nonce: "n", Verifier: "v", ReturnTo: "/runs", ExpiresAt: at(600)}
		noErr(t, "PutLoginState", f.st.PutLoginState(f.ctx, l))
		noErr(t, "PutLoginState expired", f.st.PutLoginState(f.ctx, &store.LoginState{State: "old", Provider: "gitea", ExpiresAt: at(10)}))
		// Used once: the second take finds nothing; so does an expired one.
		got, err := f.st.TakeLoginState(f.ctx, "s1", at(100))
		noErr(t, "TakeLoginState", err)
		sameJSON(t, "TakeLoginState", got, l)
		_, err = f.st.TakeLoginState(f.ctx, "s1", at(100))
		wantErr(t, "TakeLoginState again", err, store.ErrNotFound)
		_, err = f.st.TakeLoginState(f.ctx, "old", at(100))
		wantErr(t, "TakeLoginState expired", err, store.ErrNotFound)

		u := &store.User{ID: newID("usr"), Login: "sam"}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, u))
		a := &store.Session{ID: newID("ses"), Hash: hashOf("a"), UserID: u.ID, Provider: "gitea", CreatedAt: at(1), ExpiresAt: at(1000),
			LastSeenAt: at(1), UserAgent: "ua", RemoteAddr: "127.0.0.1"}
		b := &store.Session{ID: newID("ses"), Hash: hashOf("b"), UserID: u.ID, CreatedAt: at(2), ExpiresAt: at(20), LastSeenAt: at(2),
			Scopes: []string{"read", "run"}}
		noErr(t, "CreateSession a", f.st.CreateSession(f.ctx, a))
		noErr(t, "CreateSession b", f.st.CreateSession(f.ctx, b))
		got2, err := f.st.SessionByHash(f.ctx, hashOf("a"))
		noErr(t, "SessionByHash", err)
		sameJSON(t, "SessionByHash", got2, a)
		_, err = f.st.SessionByHash(f.ctx, hashOf("c"))
		wantErr(t, "SessionByHash of none", err, store.ErrNotFound)
		noErr(t, "TouchSession", f.st.TouchSession(f.ctx, a.ID, at(50)))
		list, err := f.st.ListSessions(f.ctx, u.ID)
		noErr(t, "ListSessions", err)
		if len(list) != 2 || list[0].ID != b.ID || len(list[0].Scopes) != 2 || list[1].Scopes != nil || !list[1].LastSeenAt.Equal(at(50)) || !bytes.Equal(list[1].Hash, a.Hash) {
			t.Fatalf("ListSessions = %+v", list)
		}
		n, err := f.st.DeleteExpiredSessions(f.ctx, at(100))
		noErr(t, "DeleteExpiredSessions", err)
		if n != 1 {
			t.Fatalf("DeleteExpiredSessions removed %d, want 1", n)
		}
		noErr(t, "DeleteSession", f.st.DeleteSession(f.ctx, a.ID))
		wantErr(t, "DeleteSession again", f.st.DeleteSession(f.ctx, a.ID), store.ErrNotFound)
		// The command line's grants: one use, until they expire.
		g := &store.CLIGrant{CodeHash: hashOf("code"), UserID: u.ID, Challenge: "chal", Scopes: []string{"read"}, ExpiresAt: at(700)}
		noErr(t, "PutCLIGrant", f.st.PutCLIGrant(f.ctx, g))
		noErr(t, "PutCLIGrant expired", f.st.PutCLIGrant(f.ctx, &store.CLIGrant{CodeHash: hashOf("old"), UserID: u.ID, Challenge: "c", ExpiresAt: at(5)}))
		gg, err := f.st.TakeCLIGrant(f.ctx, hashOf("code"), at(100))
		noErr(t, "TakeCLIGrant", err)
		sameJSON(t, "TakeCLIGrant", gg, g)
		_, err = f.st.TakeCLIGrant(f.ctx, hashOf("code"), at(100))
		wantErr(t, "TakeCLIGrant again", err, store.ErrNotFound)
		_, err = f.st.TakeCLIGrant(f.ctx, hashOf("old"), at(100))
		wantErr(t, "TakeCLIGrant expired", err, store.ErrNotFound)
		// Deleting a user ends their sessions.
		c := &store.Session{ID: newID("ses"), Hash: hashOf("c"), UserID: u.ID, CreatedAt: at(3), ExpiresAt: at(3).Add(time.Hour)}
		noErr(t, "CreateSession c", f.st.CreateSession(f.ctx, c))
		noErr(t, "DeleteUser", f.st.DeleteUser(f.ctx, u.ID))
		_, err = f.st.SessionByHash(f.ctx, hashOf("c"))
		wantErr(t, "a deleted user's session", err, store.ErrNotFound)
	})
}
