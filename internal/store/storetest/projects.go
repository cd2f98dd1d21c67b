package storetest

import (
	"fmt"
	"testing"

	"github.com/runnel-ci/runnel/internal/store"
)

func grantsText(gs []store.Grant) string {
	s := ""
	for _, g := range gs {
		s += fmt.Sprintf("%s=%s/%s;", g.ProjectID, g.Role, g.TeamName)
	}
	return s
}

func testProjects(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CRUD", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		list, err := f.st.ListProjects(f.ctx)
		noErr(t, "ListProjects", err)
		if list == nil || len(list) != 0 {
			t.Fatalf("ListProjects on an empty store = %#v, want an empty list", list)
		}
		b := &store.Project{ID: "beta", Name: "Beta", Description: "second", CreatedBy: "alice", CreatedAt: at(1), UpdatedAt: at(1)}
		a := &store.Project{ID: "alpha", Name: "Alpha", CreatedAt: at(2)}
		noErr(t, "CreateProject beta", f.st.CreateProject(f.ctx, b))
		noErr(t, "CreateProject alpha", f.st.CreateProject(f.ctx, a))
		wantErr(t, "CreateProject beta again", f.st.CreateProject(f.ctx, &store.Project{ID: "beta"}), store.ErrConflict)
		wantErr(t, "CreateProject without id", f.st.CreateProject(f.ctx, &store.Project{}), store.ErrInvalid)
		got, err := f.st.GetProject(f.ctx, "beta")
		noErr(t, "GetProject", err)
		sameJSON(t, "GetProject beta", got, b)
		got, err = f.st.GetProject(f.ctx, "alpha")
		noErr(t, "GetProject alpha", err)
		if !got.UpdatedAt.Equal(at(2)) {
			t.Errorf("a zero UpdatedAt = %v, want the creation time %v", got.UpdatedAt, at(2))
		}
		_, err = f.st.GetProject(f.ctx, "nope")
		wantErr(t, "GetProject nope", err, store.ErrNotFound)
		list, err = f.st.ListProjects(f.ctx)
		noErr(t, "ListProjects", err)
		if len(list) != 2 || list[0].ID != "alpha" || list[1].ID != "beta" {
			t.Fatalf("ListProjects = %v, want alpha, beta", list)
		}
		b.Name, b.Description, b.UpdatedAt = "B", "changed", at(5)
		noErr(t, "UpdateProject", f.st.UpdateProject(f.ctx, b))
		got, _ = f.st.GetProject(f.ctx, "beta")
		sameJSON(t, "after UpdateProject", got, b)
		wantErr(t, "UpdateProject nope", f.st.UpdateProject(f.ctx, &store.Project{ID: "nope"}), store.ErrNotFound)

		u := &store.User{ID: newID("usr"), Login: "dave", CreatedAt: at(1)}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, u))
		noErr(t, "SetMember", f.st.SetMember(f.ctx, &store.Member{ProjectID: "beta", Kind: store.MemberUser, MemberID: u.ID, Role: "viewer"}))
		wantErr(t, "SetMember in no project", f.st.SetMember(f.ctx, &store.Member{ProjectID: "nope", Kind: store.MemberUser, MemberID: u.ID, Role: "viewer"}), store.ErrNotFound)
		wantErr(t, "SetMember of a bad kind", f.st.SetMember(f.ctx, &store.Member{ProjectID: "beta", Kind: "robot", MemberID: u.ID, Role: "viewer"}), store.ErrInvalid)
		noErr(t, "DeleteProject", f.st.DeleteProject(f.ctx, "beta"))
		wantErr(t, "DeleteProject again", f.st.DeleteProject(f.ctx, "beta"), store.ErrNotFound)
		// Its members went with it: a new project of that id starts empty.
		noErr(t, "CreateProject beta again", f.st.CreateProject(f.ctx, &store.Project{ID: "beta"}))
		ms, err := f.st.Members(f.ctx, "beta")
		noErr(t, "Members", err)
		if len(ms) != 0 {
			t.Fatalf("a re-created project has members %v", ms)
		}
	})

	t.Run("MembersAndGrants", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		for _, id := range []string{"p1", "p2", "p3"} {
			noErr(t, "CreateProject", f.st.CreateProject(f.ctx, &store.Project{ID: id}))
		}
		alice := &store.User{ID: "usr_a", Login: "alice"}
		bob := &store.User{ID: "usr_b", Login: "bob"}
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, alice))
		noErr(t, "CreateUser", f.st.CreateUser(f.ctx, bob))
		rel := &store.Team{ID: "tm_r", Name: "release"}
		noErr(t, "CreateTeam", f.st.CreateTeam(f.ctx, rel))
		noErr(t, "AddTeamMember", f.st.AddTeamMember(f.ctx, rel.ID, alice.ID))
		set := func(p, kind, id, role string) {
			t.Helper()
			noErr(t, "SetMember", f.st.SetMember(f.ctx, &store.Member{ProjectID: p, Kind: kind, MemberID: id, Role: role, CreatedAt: at(1), UpdatedAt: at(1)}))
		}
		set("p1", store.MemberUser, alice.ID, "viewer")
		set("p1", store.MemberTeam, rel.ID, "maintainer")
		set("p2", store.MemberTeam, rel.ID, "developer")
		set("p3", store.MemberUser, bob.ID, "owner")
		set("p1", store.MemberUser, alice.ID, "developer") // a change, not a second row
		ms, err := f.st.Members(f.ctx, "p1")
		noErr(t, "Members", err)
		if len(ms) != 2 || ms[0].Kind != store.MemberUser || ms[0].Role != "developer" || ms[1].Kind != store.MemberTeam {
			t.Fatalf("Members(p1) = %+v, want alice as developer then the team", ms)
		}
		gs, err := f.st.GrantsOf(f.ctx, alice.ID)
		noErr(t, "GrantsOf", err)
		if got, want := grantsText(gs), "p1=developer/;p1=maintainer/release;p2=developer/release;"; got != want {
			t.Fatalf("GrantsOf(alice) = %s, want %s", got, want)
		}
		noErr(t, "RemoveTeamMember", f.st.RemoveTeamMember(f.ctx, rel.ID, alice.ID))
		wantErr(t, "RemoveTeamMember again", f.st.RemoveTeamMember(f.ctx, rel.ID, alice.ID), store.ErrNotFound)
		gs, _ = f.st.GrantsOf(f.ctx, alice.ID)
		if got, want := grantsText(gs), "p1=developer/;"; got != want {
			t.Fatalf("GrantsOf(alice) after leaving the team = %s, want %s", got, want)
		}
		noErr(t, "RemoveMember", f.st.RemoveMember(f.ctx, "p1", store.MemberUser, alice.ID))
		wantErr(t, "RemoveMember again", f.st.RemoveMember(f.ctx, "p1", store.MemberUser, alice.ID), store.ErrNotFound)
		// Deleting a user removes their memberships.
		noErr(t, "AddTeamMember", f.st.AddTeamMember(f.ctx, rel.ID, bob.ID))
		noErr(t, "DeleteUser", f.st.DeleteUser(f.ctx, bob.ID))
		gs, _ = f.st.GrantsOf(f.ctx, bob.ID)
		ids, _ := f.st.TeamMembers(f.ctx, rel.ID)
		ms, _ = f.st.Members(f.ctx, "p3")
		if len(gs) != 0 || len(ids) != 0 || len(ms) != 0 {
			t.Fatalf("a deleted user keeps grants %v, team memberships %v, members %v", gs, ids, ms)
		}
	})
}

func testTeams(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	ops := &store.Team{ID: newID("tm"), Name: "ops", Description: "on call", CreatedAt: at(1)}
	dev := &store.Team{ID: newID("tm"), Name: "dev", CreatedAt: at(2)}
	noErr(t, "CreateTeam ops", f.st.CreateTeam(f.ctx, ops))
	noErr(t, "CreateTeam dev", f.st.CreateTeam(f.ctx, dev))
	wantErr(t, "CreateTeam of a used name", f.st.CreateTeam(f.ctx, &store.Team{ID: newID("tm"), Name: "ops"}), store.ErrConflict)
	wantErr(t, "CreateTeam without a name", f.st.CreateTeam(f.ctx, &store.Team{ID: newID("tm")}), store.ErrInvalid)
	got, err := f.st.TeamByName(f.ctx, "ops")
	noErr(t, "TeamByName", err)
	sameJSON(t, "TeamByName ops", got, ops)
	_, err = f.st.GetTeam(f.ctx, "tm_nope")
	wantErr(t, "GetTeam nope", err, store.ErrNotFound)
	list, err := f.st.ListTeams(f.ctx)
	noErr(t, "ListTeams", err)
	if len(list) != 2 || list[0].Name != "dev" || list[1].Name != "ops" {
		t.Fatalf("ListTeams = %v, want dev, ops", list)
	}
	ops.Description = "pager"
	noErr(t, "UpdateTeam", f.st.UpdateTeam(f.ctx, ops))
	got, _ = f.st.GetTeam(f.ctx, ops.ID)
	sameJSON(t, "after UpdateTeam", got, ops)
	u := &store.User{ID: newID("usr"), Login: "erin"}
	noErr(t, "CreateUser", f.st.CreateUser(f.ctx, u))
	noErr(t, "AddTeamMember", f.st.AddTeamMember(f.ctx, ops.ID, u.ID))
	noErr(t, "AddTeamMember twice", f.st.AddTeamMember(f.ctx, ops.ID, u.ID))
	noErr(t, "AddTeamMember dev", f.st.AddTeamMember(f.ctx, dev.ID, u.ID))
	wantErr(t, "AddTeamMember to no team", f.st.AddTeamMember(f.ctx, "tm_nope", u.ID), store.ErrNotFound)
	ids, err := f.st.TeamMembers(f.ctx, ops.ID)
	noErr(t, "TeamMembers", err)
	if len(ids) != 1 || ids[0] != u.ID {
		t.Fatalf("TeamMembers = %v, want [%s]", ids, u.ID)
	}
	ts, err := f.st.TeamsOf(f.ctx, u.ID)
	noErr(t, "TeamsOf", err)
	if len(ts) != 2 || ts[0].Name != "dev" || ts[1].Name != "ops" {
		t.Fatalf("TeamsOf = %v, want dev, ops", ts)
	}
	noErr(t, "CreateProject", f.st.CreateProject(f.ctx, &store.Project{ID: "p"}))
	noErr(t, "SetMember team", f.st.SetMember(f.ctx, &store.Member{ProjectID: "p", Kind: store.MemberTeam, MemberID: ops.ID, Role: "owner"}))
	noErr(t, "DeleteTeam", f.st.DeleteTeam(f.ctx, ops.ID))
	wantErr(t, "DeleteTeam again", f.st.DeleteTeam(f.ctx, ops.ID), store.ErrNotFound)
	gs, _ := f.st.GrantsOf(f.ctx, u.ID)
	ms, _ := f.st.Members(f.ctx, "p")
	ts, _ = f.st.TeamsOf(f.ctx, u.ID)
	if len(gs) != 0 || len(ms) != 0 || len(ts) != 1 {
		t.Fatalf("a deleted team leaves grants %v, members %v, teams %v", gs, ms, ts)
	}
}
