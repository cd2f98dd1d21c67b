package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func hashOf(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func (f *fx) agent(id string) *store.Agent {
	f.t.Helper()
	a, err := f.st.GetAgent(f.ctx, id)
	noErr(f.t, "GetAgent "+id, err)
	return a
}

func testAgents(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetList", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		list, err := f.st.ListAgents(f.ctx)
		noErr(t, "ListAgents", err)
		if list == nil || len(list) != 0 {
			t.Fatalf("ListAgents on an empty store = %#v, want an empty list", list)
		}
		// Created in the other order than their CreatedAt: listed oldest first.
		b := &store.Agent{ID: newID("ag"), Name: "b", Kind: "embedded", CreatedAt: at(2)}
		a := &store.Agent{
			ID: newID("ag"), Name: "a", Kind: "remote",
			ReportedLabels: map[string]string{"os": "linux", "arch": "amd64", "pool": "a"},
			Capacity:       4, Version: "1.2.3", Hostname: "build-1", Platform: "linux/amd64",
			RegistrationTokenID: "rt_1", CreatedAt: at(1), LastSeenAt: ptr(at(5)),
		}
		noErr(t, "CreateAgent b", f.st.CreateAgent(f.ctx, b))
		noErr(t, "CreateAgent a", f.st.CreateAgent(f.ctx, a))

		got := f.agent(a.ID)
		sameJSON(t, "agent a", got, a)
		utc(t, "agent a", &got.CreatedAt, got.LastSeenAt)
		got = f.agent(b.ID)
		if got.ReportedLabels == nil || len(got.ReportedLabels) != 0 || got.AdminLabels != nil {
			t.Fatalf("agent without labels read back with reported %#v and admin %#v, want an empty map and nil",
				got.ReportedLabels, got.AdminLabels)
		}
		if got.LastSeenAt != nil || got.Disabled || got.Kind != "embedded" {
			t.Fatalf("agent b = %+v", got)
		}
		list, err = f.st.ListAgents(f.ctx)
		noErr(t, "ListAgents", err)
		if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
			t.Fatalf("ListAgents = %+v, want a then b", list)
		}

		wantErr(t, "same id", f.st.CreateAgent(f.ctx, &store.Agent{ID: a.ID, Name: "again"}), store.ErrConflict)
		_, err = f.st.GetAgent(f.ctx, "nope")
		wantErr(t, "GetAgent unknown", err, store.ErrNotFound)
		wantErr(t, "no id", f.st.CreateAgent(f.ctx, &store.Agent{Name: "x"}), store.ErrInvalid)
		wantErr(t, "negative capacity",
			f.st.CreateAgent(f.ctx, &store.Agent{ID: newID("ag"), Capacity: -1}), store.ErrInvalid)
		wantErr(t, "nil agent", f.st.CreateAgent(f.ctx, nil), store.ErrInvalid)
	})

	t.Run("ReportAdminTouch", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		a := &store.Agent{ID: newID("ag"), Name: "a", Kind: "remote",
			ReportedLabels: map[string]string{"os": "linux"}, Capacity: 1, CreatedAt: at(1)}
		noErr(t, "CreateAgent", f.st.CreateAgent(f.ctx, a))

		admin := map[string]string{"pool": "gpu"}
		got, err := f.st.UpdateAgentAdmin(f.ctx, a.ID, admin, true)
		noErr(t, "UpdateAgentAdmin", err)
		want := *a
		want.AdminLabels, want.Disabled = admin, true
		sameJSON(t, "returned agent", got, &want)
		sameJSON(t, "stored agent", f.agent(a.ID), &want)
		sameJSON(t, "labels", got.Labels(), admin)

		// A report replaces what the agent says, keeps what the admin set.
		before := time.Now().UTC().Truncate(time.Microsecond)
		r := &store.Agent{ID: a.ID, Name: "renamed", Kind: "embedded",
			ReportedLabels: map[string]string{"os": "linux", "arch": "arm64"}, Capacity: 8, Version: "2.0.0",
			Hostname: "build-2", Platform: "linux/arm64", Disabled: false, AdminLabels: nil,
			RegistrationTokenID: "other", CreatedAt: at(99)}
		noErr(t, "ReportAgent", f.st.ReportAgent(f.ctx, r))
		got = f.agent(a.ID)
		if got.LastSeenAt == nil || got.LastSeenAt.Before(before) || got.LastSeenAt.After(time.Now()) {
			t.Fatalf("LastSeenAt after a report = %v, want the store's clock (about %v)", got.LastSeenAt, before)
		}
		want.Name, want.ReportedLabels, want.Capacity = r.Name, r.ReportedLabels, r.Capacity
		want.Version, want.Hostname, want.Platform, want.LastSeenAt = r.Version, r.Hostname, r.Platform, got.LastSeenAt
		sameJSON(t, "reported agent", got, &want)
		sameJSON(t, "labels after a report", got.Labels(), admin)
		wantErr(t, "ReportAgent unknown", f.st.ReportAgent(f.ctx, &store.Agent{ID: "nope"}), store.ErrNotFound)
		wantErr(t, "ReportAgent negative capacity",
			f.st.ReportAgent(f.ctx, &store.Agent{ID: a.ID, Capacity: -2}), store.ErrInvalid)

		// An empty map means "no labels", not "the reported ones".
		got, err = f.st.UpdateAgentAdmin(f.ctx, a.ID, map[string]string{}, false)
		noErr(t, "UpdateAgentAdmin with no labels", err)
		for _, g := range []*store.Agent{got, f.agent(a.ID)} {
			if g.AdminLabels == nil || len(g.AdminLabels) != 0 || len(g.Labels()) != 0 || g.Disabled {
				t.Fatalf("after setting empty admin labels: admin %#v, labels %#v, disabled %v",
					g.AdminLabels, g.Labels(), g.Disabled)
			}
		}
		// nil resets to the reported labels.
		got, err = f.st.UpdateAgentAdmin(f.ctx, a.ID, nil, false)
		noErr(t, "UpdateAgentAdmin reset", err)
		for _, g := range []*store.Agent{got, f.agent(a.ID)} {
			if g.AdminLabels != nil {
				t.Fatalf("after the reset AdminLabels = %#v, want nil", g.AdminLabels)
			}
			sameJSON(t, "labels after the reset", g.Labels(), r.ReportedLabels)
		}
		_, err = f.st.UpdateAgentAdmin(f.ctx, "nope", nil, true)
		wantErr(t, "UpdateAgentAdmin unknown", err, store.ErrNotFound)

		noErr(t, "TouchAgent", f.st.TouchAgent(f.ctx, a.ID, at(50)))
		if got := f.agent(a.ID); got.LastSeenAt == nil || !got.LastSeenAt.Equal(at(50)) {
			t.Fatalf("LastSeenAt after TouchAgent = %v, want %v", got.LastSeenAt, at(50))
		}
		wantErr(t, "TouchAgent unknown", f.st.TouchAgent(f.ctx, "nope", at(1)), store.ErrNotFound)
	})

	t.Run("DeleteRemovesItsTokens", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		a := &store.Agent{ID: newID("ag"), Name: "a", CreatedAt: at(1)}
		b := &store.Agent{ID: newID("ag"), Name: "b", CreatedAt: at(2)}
		noErr(t, "CreateAgent", f.st.CreateAgent(f.ctx, a))
		noErr(t, "CreateAgent", f.st.CreateAgent(f.ctx, b))
		tokens := map[string]*store.APIToken{
			"a's":             {ID: newID("tok"), Role: "agent", Subject: a.ID, Hash: hashOf("a-1")},
			"a's second":      {ID: newID("tok"), Role: "agent", Subject: a.ID, Hash: hashOf("a-2")},
			"b's":             {ID: newID("tok"), Role: "agent", Subject: b.ID, Hash: hashOf("b-1")},
			"a user's":        {ID: newID("tok"), Role: "user", Subject: a.ID, Hash: hashOf("user")},
			"another admin's": {ID: newID("tok"), Role: "admin", Subject: "alice", Hash: hashOf("admin")},
		}
		for name, tok := range tokens {
			noErr(t, "CreateToken "+name, f.st.CreateToken(f.ctx, tok))
		}
		noErr(t, "DeleteAgent", f.st.DeleteAgent(f.ctx, a.ID))
		_, err := f.st.GetAgent(f.ctx, a.ID)
		wantErr(t, "deleted agent", err, store.ErrNotFound)
		f.agent(b.ID)
		for name, tok := range tokens {
			_, err := f.st.TokenByHash(f.ctx, tok.Hash)
			if tok.Role == "agent" && tok.Subject == a.ID {
				wantErr(t, name+" token after the delete", err, store.ErrNotFound)
			} else {
				noErr(t, name+" token after the delete", err)
			}
		}
		wantErr(t, "delete again", f.st.DeleteAgent(f.ctx, a.ID), store.ErrNotFound)
	})
}

func testRegistration(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Tokens", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		list, err := f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		if list == nil || len(list) != 0 {
			t.Fatalf("ListRegistrationTokens on an empty store = %#v, want an empty list", list)
		}
		r1 := &store.RegistrationToken{ID: newID("rt"), Name: "one", Hash: hashOf("r1"), CreatedBy: "alice",
			CreatedAt: at(2)}
		r2 := &store.RegistrationToken{ID: newID("rt"), Name: "two", Hash: hashOf("r2"), CreatedBy: "bob",
			CreatedAt: at(1), ExpiresAt: ptr(at(100)), MaxUses: 3}
		noErr(t, "CreateRegistrationToken", f.st.CreateRegistrationToken(f.ctx, r1))
		noErr(t, "CreateRegistrationToken", f.st.CreateRegistrationToken(f.ctx, r2))
		list, err = f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		sameJSON(t, "registration tokens, oldest first", list, []*store.RegistrationToken{r2, r1})
		utc(t, "registration token", &list[0].CreatedAt, list[0].ExpiresAt)

		wantErr(t, "same id", f.st.CreateRegistrationToken(f.ctx,
			&store.RegistrationToken{ID: r1.ID, Hash: hashOf("other")}), store.ErrConflict)
		wantErr(t, "same hash", f.st.CreateRegistrationToken(f.ctx,
			&store.RegistrationToken{ID: newID("rt"), Hash: hashOf("r1")}), store.ErrConflict)
		for what, bad := range map[string]*store.RegistrationToken{
			"no id":             {Hash: hashOf("x")},
			"no hash":           {ID: newID("rt")},
			"negative max uses": {ID: newID("rt"), Hash: hashOf("y"), MaxUses: -1},
			"nil":               nil,
		} {
			wantErr(t, what, f.st.CreateRegistrationToken(f.ctx, bad), store.ErrInvalid)
		}

		noErr(t, "DeleteRegistrationToken", f.st.DeleteRegistrationToken(f.ctx, r1.ID))
		list, err = f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		if len(list) != 1 || list[0].ID != r2.ID {
			t.Fatalf("ListRegistrationTokens after the delete = %+v, want r2 only", list)
		}
		wantErr(t, "delete again", f.st.DeleteRegistrationToken(f.ctx, r1.ID), store.ErrNotFound)
	})

	t.Run("RegisterAgent", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		rt := &store.RegistrationToken{ID: newID("rt"), Name: "two agents", Hash: hashOf("reg"), CreatedAt: at(1),
			ExpiresAt: ptr(at(100)), MaxUses: 2}
		noErr(t, "CreateRegistrationToken", f.st.CreateRegistrationToken(f.ctx, rt))
		n := 0
		register := func(now time.Time, secret string) (*store.Agent, *store.APIToken, error) {
			n++
			a := &store.Agent{ID: fmt.Sprintf("ag_%d", n), Name: "agent", Kind: "remote",
				ReportedLabels: map[string]string{"os": "linux"}, Capacity: 2}
			tok := &store.APIToken{ID: fmt.Sprintf("tok_%d", n), Name: "agent " + a.ID, Role: "agent",
				Subject: a.ID, Hash: hashOf(fmt.Sprintf("agent-token-%d", n))}
			return a, tok, f.st.RegisterAgent(f.ctx, hashOf(secret), now, a, tok)
		}
		rejected := func(what string, a *store.Agent, tok *store.APIToken, err error, msg string) {
			t.Helper()
			wantErr(t, what, err, store.ErrRegistrationRejected)
			wantErr(t, what, err, store.ErrInvalid)
			if !strings.Contains(err.Error(), msg) {
				t.Fatalf("%s: error %q does not say %q", what, err, msg)
			}
			_, err = f.st.GetAgent(f.ctx, a.ID)
			wantErr(t, what+": the agent", err, store.ErrNotFound)
			_, err = f.st.TokenByHash(f.ctx, tok.Hash)
			wantErr(t, what+": the agent's token", err, store.ErrNotFound)
		}

		a, tok, err := register(at(10), "reg")
		noErr(t, "RegisterAgent", err)
		got := f.agent(a.ID)
		if got.RegistrationTokenID != rt.ID || got.Name != "agent" || got.Capacity != 2 ||
			got.CreatedAt.IsZero() || got.ReportedLabels["os"] != "linux" {
			t.Fatalf("registered agent = %+v", got)
		}
		if !got.CreatedAt.Equal(at(10)) {
			t.Fatalf("CreatedAt = %v, want the registration time %v", got.CreatedAt, at(10))
		}
		gotTok, err := f.st.TokenByHash(f.ctx, tok.Hash)
		noErr(t, "TokenByHash of the agent's token", err)
		if gotTok.ID != tok.ID || gotTok.Role != "agent" || gotTok.Subject != a.ID {
			t.Fatalf("agent token = %+v, want role agent and subject %s", gotTok, a.ID)
		}
		list, err := f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		if list[0].Uses != 1 || list[0].LastUsedAt == nil || !list[0].LastUsedAt.Equal(at(10)) {
			t.Fatalf("registration token after one use = %+v", list[0])
		}

		// Unknown tokens and invalid input change nothing.
		a2, tok2, err := register(at(10), "not-a-token")
		wantErr(t, "unknown registration token", err, store.ErrNotFound)
		_, err = f.st.GetAgent(f.ctx, a2.ID)
		wantErr(t, "agent of an unknown token", err, store.ErrNotFound)
		_, err = f.st.TokenByHash(f.ctx, tok2.Hash)
		wantErr(t, "token of an unknown registration token", err, store.ErrNotFound)
		wantErr(t, "nil hash", f.st.RegisterAgent(f.ctx, nil, at(10), &store.Agent{ID: "x"},
			&store.APIToken{ID: "t", Hash: hashOf("t")}), store.ErrInvalid)
		wantErr(t, "no agent id", f.st.RegisterAgent(f.ctx, hashOf("reg"), at(10), &store.Agent{},
			&store.APIToken{ID: "t", Hash: hashOf("t")}), store.ErrInvalid)
		wantErr(t, "negative capacity", f.st.RegisterAgent(f.ctx, hashOf("reg"), at(10),
			&store.Agent{ID: "x", Capacity: -1}, &store.APIToken{ID: "t", Hash: hashOf("t")}), store.ErrInvalid)
		wantErr(t, "no agent token", f.st.RegisterAgent(f.ctx, hashOf("reg"), at(10), &store.Agent{ID: "x"}, nil),
			store.ErrInvalid)
		wantErr(t, "a token of another role", f.st.RegisterAgent(f.ctx, hashOf("reg"), at(10),
			&store.Agent{ID: "x"}, &store.APIToken{ID: "t", Role: "admin", Subject: "x", Hash: hashOf("t")}),
			store.ErrInvalid)
		wantErr(t, "a token of another subject", f.st.RegisterAgent(f.ctx, hashOf("reg"), at(10),
			&store.Agent{ID: "x"}, &store.APIToken{ID: "t", Role: "agent", Subject: "y", Hash: hashOf("t")}),
			store.ErrInvalid)
		// An existing agent id is a conflict, and the use is not counted.
		err = f.st.RegisterAgent(f.ctx, hashOf("reg"), at(11), &store.Agent{ID: a.ID},
			&store.APIToken{ID: "t", Role: "agent", Subject: a.ID, Hash: hashOf("t")})
		wantErr(t, "an existing agent id", err, store.ErrConflict)
		list, err = f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		if list[0].Uses != 1 || !list[0].LastUsedAt.Equal(at(10)) {
			t.Fatalf("registration token after refused registrations = %+v, want one use", list[0])
		}

		// The second use is the last; the role and subject default.
		a3 := &store.Agent{ID: "ag_defaults"}
		tok3 := &store.APIToken{ID: "tok_defaults", Hash: hashOf("defaults")}
		noErr(t, "RegisterAgent with token defaults", f.st.RegisterAgent(f.ctx, hashOf("reg"), at(20), a3, tok3))
		gotTok, err = f.st.TokenByHash(f.ctx, tok3.Hash)
		noErr(t, "TokenByHash", err)
		if gotTok.Role != "agent" || gotTok.Subject != a3.ID {
			t.Fatalf("agent token with defaults = %+v", gotTok)
		}
		a, tok, err = register(at(30), "reg")
		rejected("third use of a two-use token", a, tok, err, "has been used 2 times of 2")

		// Expiry: a token expired at now is rejected, a moment before it is not.
		exp := &store.RegistrationToken{ID: newID("rt"), Hash: hashOf("exp"), CreatedAt: at(1),
			ExpiresAt: ptr(at(100))}
		noErr(t, "CreateRegistrationToken", f.st.CreateRegistrationToken(f.ctx, exp))
		a, tok, err = register(at(100), "exp")
		rejected("expired token", a, tok, err, "expired at "+at(100).Format(time.RFC3339))
		_, _, err = register(at(100).Add(-time.Microsecond), "exp")
		noErr(t, "RegisterAgent just before expiry", err)
		list, err = f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		for _, l := range list {
			if want := map[string]int{rt.ID: 2, exp.ID: 1}[l.ID]; l.Uses != want {
				t.Fatalf("registration token %s has %d uses, want %d", l.ID, l.Uses, want)
			}
		}
	})

	t.Run("ConcurrentRegistrationsRespectMaxUses", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		rt := &store.RegistrationToken{ID: newID("rt"), Hash: hashOf("reg"), CreatedAt: at(1), MaxUses: 3}
		noErr(t, "CreateRegistrationToken", f.st.CreateRegistrationToken(f.ctx, rt))
		const n = 8
		var (
			mu       sync.Mutex
			ok       []string
			rejected int
		)
		parallel(n, func(i int) {
			id := fmt.Sprintf("ag_%d", i)
			err := f.st.RegisterAgent(f.ctx, hashOf("reg"), time.Now(), &store.Agent{ID: id},
				&store.APIToken{ID: "tok_" + id, Role: "agent", Subject: id, Hash: hashOf("tok-" + id)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok = append(ok, id)
			case errors.Is(err, store.ErrRegistrationRejected):
				rejected++
			default:
				t.Errorf("RegisterAgent %s: %v", id, err)
			}
		})
		if len(ok) != 3 || rejected != n-3 {
			t.Fatalf("%d registrations succeeded and %d were rejected, want 3 and %d", len(ok), rejected, n-3)
		}
		agents, err := f.st.ListAgents(f.ctx)
		noErr(t, "ListAgents", err)
		if len(agents) != 3 {
			t.Fatalf("%d agents stored, want 3", len(agents))
		}
		list, err := f.st.ListRegistrationTokens(f.ctx)
		noErr(t, "ListRegistrationTokens", err)
		if list[0].Uses != 3 {
			t.Fatalf("registration token uses = %d, want 3", list[0].Uses)
		}
	})
}
