package storetest

import (
	"testing"

	"github.com/runnel-ci/runnel/internal/store"
)

func (f *fx) user(id string) *store.User {
	f.t.Helper()
	u, err := f.st.GetUser(f.ctx, id)
	noErr(f.t, "GetUser "+id, err)
	return u
}

// userToken stores a token of user u made at at(sec), with the given scopes.
func (f *fx) userToken(u *store.User, secret string, sec int, scopes ...string) *store.APIToken {
	f.t.Helper()
	role := "user"
	if u.Admin {
		role = "admin"
	}
	tok := &store.APIToken{ID: newID("tok"), Name: secret, Subject: u.Login, Role: role, UserID: u.ID,
		Scopes: scopes, Hash: hashOf(secret), CreatedAt: at(sec)}
	noErr(f.t, "CreateToken "+secret, f.st.CreateToken(f.ctx, tok))
	return tok
}

func testUsers(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetList", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		list, err := f.st.ListUsers(f.ctx)
		noErr(t, "ListUsers", err)
		if list == nil || len(list) != 0 {
			t.Fatalf("ListUsers on an empty store = %#v, want an empty list", list)
		}
		// Created in another order than their logins': listed by login.
		carol := &store.User{ID: newID("usr"), Login: "carol", CreatedAt: at(1)}
		alice := &store.User{
			ID: newID("usr"), Login: "alice", Name: "Alice Liddell", Email: "alice@example.com",
			AvatarURL: "https://avatars.example/alice.png", Admin: true, CreatedAt: at(2),
			LastLoginAt: ptr(at(7)),
		}
		bob := &store.User{ID: newID("usr"), Login: "bob", Name: "Bob", Disabled: true, CreatedAt: at(3)}
		for _, u := range []*store.User{carol, alice, bob} {
			noErr(t, "CreateUser "+u.Login, f.st.CreateUser(f.ctx, u))
		}

		got := f.user(alice.ID)
		sameJSON(t, "alice", got, alice)
		utc(t, "alice", &got.CreatedAt, got.LastLoginAt)
		sameJSON(t, "bob", f.user(bob.ID), bob)
		got = f.user(carol.ID)
		if got.LastLoginAt != nil || got.Admin || got.Disabled || got.Name != "" {
			t.Fatalf("carol = %+v, want no last login, not admin nor disabled, no name", got)
		}
		got, err = f.st.UserByLogin(f.ctx, "alice")
		noErr(t, "UserByLogin", err)
		sameJSON(t, "alice by login", got, alice)

		list, err = f.st.ListUsers(f.ctx)
		noErr(t, "ListUsers", err)
		sameJSON(t, "users by login", list, []*store.User{alice, bob, carol})
	})

	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		alice := &store.User{ID: newID("usr"), Login: "alice", CreatedAt: at(1)}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, alice))

		wantErr(t, "same id", f.st.CreateUser(f.ctx,
			&store.User{ID: alice.ID, Login: "other", CreatedAt: at(2)}), store.ErrConflict)
		wantErr(t, "same login", f.st.CreateUser(f.ctx,
			&store.User{ID: newID("usr"), Login: "alice", CreatedAt: at(2)}), store.ErrConflict)
		for what, bad := range map[string]*store.User{
			"no login": {ID: newID("usr"), CreatedAt: at(2)},
			"no id":    {Login: "dave", CreatedAt: at(2)},
			"nil":      nil,
		} {
			wantErr(t, what, f.st.CreateUser(f.ctx, bad), store.ErrInvalid)
		}
		list, err := f.st.ListUsers(f.ctx)
		noErr(t, "ListUsers", err)
		sameJSON(t, "users after the refused creations", list, []*store.User{alice})

		_, err = f.st.GetUser(f.ctx, "nope")
		wantErr(t, "GetUser unknown", err, store.ErrNotFound)
		_, err = f.st.UserByLogin(f.ctx, "nobody")
		wantErr(t, "UserByLogin unknown", err, store.ErrNotFound)
		_, err = f.st.UserByLogin(f.ctx, alice.ID)
		wantErr(t, "UserByLogin with an id", err, store.ErrNotFound)
		wantErr(t, "UpdateUser unknown", f.st.UpdateUser(f.ctx,
			&store.User{ID: "nope", Login: "nobody"}), store.ErrNotFound)
		wantErr(t, "DeleteUser unknown", f.st.DeleteUser(f.ctx, "nope"), store.ErrNotFound)
	})

	t.Run("Update", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		u := &store.User{ID: newID("usr"), Login: "alice", Name: "Alice", Email: "a@example.com",
			CreatedAt: at(1)}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, u))

		// Everything but the login and the creation time changes.
		up := &store.User{ID: u.ID, Login: "mallory", Name: "Alice L.", Email: "alice@example.com",
			AvatarURL: "https://avatars.example/a.png", Admin: true, Disabled: true, CreatedAt: at(99),
			LastLoginAt: ptr(at(10))}
		noErr(t, "UpdateUser", f.st.UpdateUser(f.ctx, up))
		want := *up
		want.Login, want.CreatedAt = u.Login, u.CreatedAt
		sameJSON(t, "updated user", f.user(u.ID), &want)
		got, err := f.st.UserByLogin(f.ctx, "alice")
		noErr(t, "UserByLogin after the update", err)
		sameJSON(t, "updated user by login", got, &want)
		_, err = f.st.UserByLogin(f.ctx, "mallory")
		wantErr(t, "UserByLogin with the login of the update", err, store.ErrNotFound)

		// And back: no last login, neither admin nor disabled.
		up = &store.User{ID: u.ID, Login: u.Login}
		noErr(t, "UpdateUser back", f.st.UpdateUser(f.ctx, up))
		want = store.User{ID: u.ID, Login: u.Login, CreatedAt: u.CreatedAt}
		sameJSON(t, "user updated back", f.user(u.ID), &want)
	})

	t.Run("DeleteRemovesItsTokens", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		alice := &store.User{ID: newID("usr"), Login: "alice", Admin: true, CreatedAt: at(1)}
		bob := &store.User{ID: newID("usr"), Login: "bob", CreatedAt: at(2)}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, alice))
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, bob))
		gone := []*store.APIToken{f.userToken(alice, "alice-1", 3), f.userToken(alice, "alice-2", 4, "read")}
		kept := []*store.APIToken{
			f.userToken(bob, "bob-1", 5),
			// An agent's token, with no user.
			{ID: newID("tok"), Role: "agent", Subject: "ag_1", Hash: hashOf("agent"), CreatedAt: at(6)},
		}
		noErr(t, "CreateToken agent", f.st.CreateToken(f.ctx, kept[1]))

		noErr(t, "DeleteUser", f.st.DeleteUser(f.ctx, alice.ID))
		_, err := f.st.GetUser(f.ctx, alice.ID)
		wantErr(t, "deleted user", err, store.ErrNotFound)
		_, err = f.st.UserByLogin(f.ctx, "alice")
		wantErr(t, "deleted user by login", err, store.ErrNotFound)
		for _, tok := range gone {
			_, err := f.st.TokenByHash(f.ctx, tok.Hash)
			wantErr(t, "deleted user's token "+tok.Name, err, store.ErrNotFound)
			_, err = f.st.GetToken(f.ctx, tok.ID)
			wantErr(t, "GetToken of the deleted user's token "+tok.Name, err, store.ErrNotFound)
		}
		for _, tok := range kept {
			got, err := f.st.TokenByHash(f.ctx, tok.Hash)
			noErr(t, "kept token "+tok.Subject, err)
			sameJSON(t, "kept token "+tok.Subject, got, tok)
		}
		toks, err := f.st.TokensOfUser(f.ctx, alice.ID)
		noErr(t, "TokensOfUser of the deleted user", err)
		if len(toks) != 0 {
			t.Fatalf("TokensOfUser of the deleted user = %+v, want none", toks)
		}
		sameJSON(t, "users after the delete", mustUsers(t, f), []*store.User{bob})
		wantErr(t, "delete again", f.st.DeleteUser(f.ctx, alice.ID), store.ErrNotFound)

		// The login is free again.
		again := &store.User{ID: newID("usr"), Login: "alice", CreatedAt: at(9)}
		noErr(t, "CreateUser with the deleted user's login", f.st.CreateUser(f.ctx, again))
	})
}

func mustUsers(t *testing.T, f *fx) []*store.User {
	t.Helper()
	list, err := f.st.ListUsers(f.ctx)
	noErr(t, "ListUsers", err)
	return list
}

func testUserTokens(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("UserIDAndScopes", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		u := &store.User{ID: newID("usr"), Login: "alice", CreatedAt: at(1)}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, u))
		all := f.userToken(u, "all", 2)
		some := f.userToken(u, "some", 3, "read", "run")
		agent := &store.APIToken{ID: newID("tok"), Role: "agent", Subject: "ag_1", Hash: hashOf("agent"),
			CreatedAt: at(4)}
		noErr(t, "CreateToken agent", f.st.CreateToken(f.ctx, agent))

		for _, want := range []*store.APIToken{all, some, agent} {
			got, err := f.st.TokenByHash(f.ctx, want.Hash)
			noErr(t, "TokenByHash "+want.ID, err)
			sameJSON(t, "token by hash", got, want)
			got, err = f.st.GetToken(f.ctx, want.ID)
			noErr(t, "GetToken "+want.ID, err)
			sameJSON(t, "token by id", got, want)
			utc(t, "token", &got.CreatedAt)
		}
		got, err := f.st.GetToken(f.ctx, all.ID)
		noErr(t, "GetToken", err)
		if got.Scopes != nil || got.UserID != u.ID {
			t.Fatalf("token without scopes read back with scopes %#v and user %q, want nil and %q",
				got.Scopes, got.UserID, u.ID)
		}
		got, err = f.st.GetToken(f.ctx, agent.ID)
		noErr(t, "GetToken", err)
		if got.UserID != "" || got.Scopes != nil {
			t.Fatalf("agent token read back with user %q and scopes %#v, want none", got.UserID, got.Scopes)
		}
		list, err := f.st.ListTokens(f.ctx)
		noErr(t, "ListTokens", err)
		sameJSON(t, "every token", list, []*store.APIToken{all, some, agent})

		// Scopes that would not read back as they were given are refused.
		for what, scopes := range map[string][]string{
			"an empty list":  {},
			"an empty scope": {"read", ""},
			"a scope with ,": {"read,run"},
		} {
			tok := &store.APIToken{ID: newID("tok"), Role: "user", Subject: u.Login, UserID: u.ID,
				Scopes: scopes, Hash: hashOf("bad " + what), CreatedAt: at(5)}
			wantErr(t, "CreateToken with "+what, f.st.CreateToken(f.ctx, tok), store.ErrInvalid)
		}
		_, err = f.st.GetToken(f.ctx, "nope")
		wantErr(t, "GetToken unknown", err, store.ErrNotFound)
	})

	t.Run("OfUserAndDelete", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		alice := &store.User{ID: newID("usr"), Login: "alice", CreatedAt: at(1)}
		bob := &store.User{ID: newID("usr"), Login: "bob", CreatedAt: at(1)}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, alice))
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, bob))
		// Made in another order than their CreatedAt: listed oldest first.
		a3 := f.userToken(alice, "a3", 30, "admin")
		a1 := f.userToken(alice, "a1", 10)
		b1 := f.userToken(bob, "b1", 15, "read")
		a2 := f.userToken(alice, "a2", 20, "read", "run")

		toks, err := f.st.TokensOfUser(f.ctx, alice.ID)
		noErr(t, "TokensOfUser alice", err)
		sameJSON(t, "alice's tokens", toks, []*store.APIToken{a1, a2, a3})
		toks, err = f.st.TokensOfUser(f.ctx, bob.ID)
		noErr(t, "TokensOfUser bob", err)
		sameJSON(t, "bob's tokens", toks, []*store.APIToken{b1})
		for _, id := range []string{"nope", ""} {
			toks, err = f.st.TokensOfUser(f.ctx, id)
			noErr(t, "TokensOfUser "+id, err)
			if toks == nil || len(toks) != 0 {
				t.Fatalf("TokensOfUser(%q) = %#v, want an empty list", id, toks)
			}
		}

		noErr(t, "DeleteToken", f.st.DeleteToken(f.ctx, a2.ID))
		_, err = f.st.GetToken(f.ctx, a2.ID)
		wantErr(t, "deleted token", err, store.ErrNotFound)
		_, err = f.st.TokenByHash(f.ctx, a2.Hash)
		wantErr(t, "deleted token by hash", err, store.ErrNotFound)
		toks, err = f.st.TokensOfUser(f.ctx, alice.ID)
		noErr(t, "TokensOfUser alice", err)
		sameJSON(t, "alice's tokens after the delete", toks, []*store.APIToken{a1, a3})
		wantErr(t, "delete again", f.st.DeleteToken(f.ctx, a2.ID), store.ErrNotFound)
		wantErr(t, "delete unknown", f.st.DeleteToken(f.ctx, "nope"), store.ErrNotFound)
		// The user stays.
		f.user(alice.ID)
	})
}
