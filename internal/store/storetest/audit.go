package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// audit appends an entry at at(sec) and returns it (its ID set).
func (f *fx) audit(sec int, actor, action, resource string) *store.AuditEntry {
	f.t.Helper()
	e := &store.AuditEntry{Time: at(sec), Actor: actor, ActorID: "usr_" + actor, TokenID: "tok_" + actor,
		Action: action, Resource: resource, Status: 200, RemoteAddr: "192.0.2.1:4242", RequestID: newID("req")}
	noErr(f.t, "AppendAudit", f.st.AppendAudit(f.ctx, e))
	return e
}

// auditIDs lists the entries f selects and checks the total; it returns their
// ids in the order listed.
func (f *fx) auditIDs(what string, filter store.AuditFilter, wantTotal int) []int64 {
	f.t.Helper()
	es, total, err := f.st.ListAudit(f.ctx, filter)
	noErr(f.t, what, err)
	if es == nil {
		f.t.Fatalf("%s: nil list, want an empty one", what)
	}
	if total != wantTotal {
		f.t.Errorf("%s: total %d, want %d", what, total, wantTotal)
	}
	ids := []int64{}
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

// idsOf is the ids of es, newest (last appended) first.
func idsOf(es ...*store.AuditEntry) []int64 {
	ids := []int64{}
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids
}

func testAudit(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("AppendList", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		es, total, err := f.st.ListAudit(f.ctx, store.AuditFilter{})
		noErr(t, "ListAudit on an empty store", err)
		if es == nil || len(es) != 0 || total != 0 {
			t.Fatalf("ListAudit on an empty store = %#v, %d; want an empty list, 0", es, total)
		}

		// Every field round-trips; the time, given in another zone, comes
		// back in UTC to the microsecond.
		cet := time.FixedZone("CET", 3600)
		full := &store.AuditEntry{
			Time: at(5).In(cet), Actor: "alice", ActorID: "usr_alice", TokenID: "tok_alice",
			Action:     "POST /api/v1/pipelines/{pipelineId}/trigger",
			Resource:   "/api/v1/pipelines/pl_x/runs/7",
			Status:     201,
			RemoteAddr: "[2001:db8::1]:51234", RequestID: "req-0123",
		}
		noErr(t, "AppendAudit", f.st.AppendAudit(f.ctx, full))
		if full.ID <= 0 {
			t.Fatalf("AppendAudit set the id %d, want a positive one", full.ID)
		}
		// A token no user owns; a failed request; an earlier time than the
		// previous entry's.
		bare := &store.AuditEntry{Time: at(1), Actor: "ci-bot", TokenID: "tok_bot",
			Action: "DELETE /api/v1/pipelines/{pipelineId}", Resource: "/api/v1/pipelines/pl_y", Status: 409}
		noErr(t, "AppendAudit", f.st.AppendAudit(f.ctx, bare))
		third := f.audit(3, "bob", "PUT /api/v1/secrets/{name}", "/api/v1/secrets/s")
		if !(bare.ID > full.ID && third.ID > bare.ID) {
			t.Fatalf("ids %d, %d, %d: want them increasing in append order", full.ID, bare.ID, third.ID)
		}

		es, total, err = f.st.ListAudit(f.ctx, store.AuditFilter{})
		noErr(t, "ListAudit", err)
		if total != 3 {
			t.Fatalf("total %d, want 3", total)
		}
		want := *full
		want.Time = full.Time.UTC()
		// Newest first by id, whatever the times.
		sameJSON(t, "entries", es, []*store.AuditEntry{third, bare, &want})
		for _, e := range es {
			utc(t, "entry time", &e.Time)
		}
		if !es[2].Time.Equal(at(5)) {
			t.Fatalf("time %v, want %v", es[2].Time, at(5))
		}

		// Concurrent appends get distinct ids.
		const n = 8
		ids := make([]int64, n)
		errs := make([]error, n)
		parallel(n, func(i int) {
			e := &store.AuditEntry{Time: at(10 + i), Actor: fmt.Sprintf("user%d", i), Action: "POST /x", Status: 200}
			errs[i] = f.st.AppendAudit(f.ctx, e)
			ids[i] = e.ID
		})
		for i, err := range errs {
			noErr(t, fmt.Sprintf("concurrent AppendAudit %d", i), err)
		}
		slices.Sort(ids)
		if len(slices.Compact(slices.Clone(ids))) != n || ids[0] <= third.ID {
			t.Fatalf("concurrent appends got the ids %v, want %d distinct ones after %d", ids, n, third.ID)
		}
		if got := f.auditIDs("after concurrent appends", store.AuditFilter{}, n+3); len(got) != n+3 {
			t.Fatalf("listed %d entries, want %d", len(got), n+3)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		const (
			create  = "POST /api/v1/pipelines"
			del     = "DELETE /api/v1/pipelines/{pipelineId}"
			trigger = "POST /api/v1/pipelines/{pipelineId}/trigger"
			secret  = "PUT /api/v1/secrets/{name}"
		)
		e0 := f.audit(0, "alice", create, "/api/v1/pipelines/pl_a")
		e1 := f.audit(10, "bob", del, "/api/v1/pipelines/pl_a")
		e2 := f.audit(20, "alice", trigger, "/api/v1/pipelines/pl_b/runs/1")
		e3 := f.audit(30, "carol", secret, "/api/v1/secrets/db_pass")
		e4 := f.audit(40, "alice", secret, "/api/v1/secrets/dbXpass")
		e5 := f.audit(50, "bob", secret, "/api/v1/secrets/50%off")
		e6 := f.audit(60, "bob", secret, "/api/v1/secrets/50xoff")
		// Appended last with an earlier time; upper case; a backslash.
		e7 := f.audit(25, "dave", create, "/API/v1/pipelines/pl_a")
		e8 := f.audit(35, "dave", secret, `/api/v1/secrets/a\b`)
		all := []*store.AuditEntry{e0, e1, e2, e3, e4, e5, e6, e7, e8}

		cases := []struct {
			name   string
			filter store.AuditFilter
			want   []*store.AuditEntry
		}{
			{"no filter", store.AuditFilter{}, all},
			{"actor", store.AuditFilter{Actor: "alice"}, []*store.AuditEntry{e0, e2, e4}},
			{"actor is case-sensitive", store.AuditFilter{Actor: "ALICE"}, nil},
			{"unknown actor", store.AuditFilter{Actor: "nobody"}, nil},
			{"action", store.AuditFilter{Action: secret}, []*store.AuditEntry{e3, e4, e5, e6, e8}},
			{"action matches exactly", store.AuditFilter{Action: "POST /api/v1/pipelines/"}, nil},
			{"resource prefix", store.AuditFilter{Resource: "/api/v1/pipelines/"}, []*store.AuditEntry{e0, e1, e2}},
			{"resource whole", store.AuditFilter{Resource: "/api/v1/pipelines/pl_a"}, []*store.AuditEntry{e0, e1}},
			{"resource longer than any", store.AuditFilter{Resource: "/api/v1/pipelines/pl_a/x"}, nil},
			{"resource is case-sensitive", store.AuditFilter{Resource: "/API/"}, []*store.AuditEntry{e7}},
			{"underscore is literal", store.AuditFilter{Resource: "/api/v1/secrets/db_"}, []*store.AuditEntry{e3}},
			{"percent is literal", store.AuditFilter{Resource: "/api/v1/secrets/50%"}, []*store.AuditEntry{e5}},
			{"lone percent", store.AuditFilter{Resource: "%"}, nil},
			{"lone underscore", store.AuditFilter{Resource: "_"}, nil},
			{"backslash is literal", store.AuditFilter{Resource: `/api/v1/secrets/a\`}, []*store.AuditEntry{e8}},
			{"since is inclusive", store.AuditFilter{Since: ptr(at(20))},
				[]*store.AuditEntry{e2, e3, e4, e5, e6, e7, e8}},
			{"until is exclusive", store.AuditFilter{Until: ptr(at(20))}, []*store.AuditEntry{e0, e1}},
			{"since and until", store.AuditFilter{Since: ptr(at(20)), Until: ptr(at(35))},
				[]*store.AuditEntry{e2, e3, e7}},
			{"since just after", store.AuditFilter{Since: ptr(at(20).Add(time.Nanosecond))},
				[]*store.AuditEntry{e3, e4, e5, e6, e7, e8}},
			{"until just after", store.AuditFilter{Until: ptr(at(20).Add(time.Nanosecond))},
				[]*store.AuditEntry{e0, e1, e2}},
			{"since in another zone", store.AuditFilter{Since: ptr(at(50).In(time.FixedZone("X", -5*3600)))},
				[]*store.AuditEntry{e5, e6}},
			{"empty window", store.AuditFilter{Since: ptr(at(30)), Until: ptr(at(30))}, nil},
			{"actor and action", store.AuditFilter{Actor: "bob", Action: secret}, []*store.AuditEntry{e5, e6}},
			{"actor and since", store.AuditFilter{Actor: "bob", Since: ptr(at(55))}, []*store.AuditEntry{e6}},
			{"every filter", store.AuditFilter{Actor: "alice", Action: secret, Resource: "/api/v1/secrets/",
				Since: ptr(at(40)), Until: ptr(at(41))}, []*store.AuditEntry{e4}},
		}
		for _, c := range cases {
			got := f.auditIDs(c.name, c.filter, len(c.want))
			sameJSON(t, c.name, got, idsOf(c.want...))
		}

		// The entries come back whole whatever selects them.
		es, _, err := f.st.ListAudit(f.ctx, store.AuditFilter{Resource: "/api/v1/secrets/50%"})
		noErr(t, "ListAudit", err)
		sameJSON(t, "filtered entry", es, []*store.AuditEntry{e5})
	})

	t.Run("Paging", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		var es []*store.AuditEntry
		for i := range 23 {
			actor := "alice"
			if i%3 == 0 {
				actor = "bob" // 0, 3, …, 21: 8 entries
			}
			es = append(es, f.audit(i, actor, "POST /x", fmt.Sprintf("/x/%02d", i)))
		}
		newest := idsOf(es...)
		var bobs []*store.AuditEntry
		for i := 0; i < 23; i += 3 {
			bobs = append(bobs, es[i])
		}
		cases := []struct {
			name   string
			filter store.AuditFilter
			total  int
			want   []int64
		}{
			{"first page", store.AuditFilter{Limit: 10}, 23, newest[:10]},
			{"second page", store.AuditFilter{Limit: 10, Offset: 10}, 23, newest[10:20]},
			{"last partial page", store.AuditFilter{Limit: 10, Offset: 20}, 23, newest[20:]},
			{"offset at end", store.AuditFilter{Limit: 10, Offset: 23}, 23, []int64{}},
			{"offset past end", store.AuditFilter{Limit: 10, Offset: 500}, 23, []int64{}},
			{"no limit", store.AuditFilter{}, 23, newest},
			{"offset without limit", store.AuditFilter{Offset: 21}, 23, newest[21:]},
			{"filtered page", store.AuditFilter{Actor: "bob", Limit: 3, Offset: 3}, 8, idsOf(bobs...)[3:6]},
		}
		for _, c := range cases {
			sameJSON(t, c.name, f.auditIDs(c.name, c.filter, c.total), c.want)
		}
		_, _, err := f.st.ListAudit(f.ctx, store.AuditFilter{Offset: -1})
		wantErr(t, "negative offset", err, store.ErrInvalid)
		_, _, err = f.st.ListAudit(f.ctx, store.AuditFilter{Limit: -1})
		wantErr(t, "negative limit", err, store.ErrInvalid)
	})

	t.Run("DeleteBefore", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		n, err := f.st.DeleteAuditBefore(f.ctx, at(100))
		noErr(t, "DeleteAuditBefore on an empty store", err)
		if n != 0 {
			t.Fatalf("DeleteAuditBefore on an empty store removed %d", n)
		}
		e30 := f.audit(30, "alice", "POST /x", "/x/1")
		f.audit(0, "alice", "POST /x", "/x/2")
		e10a := f.audit(10, "bob", "POST /x", "/x/3")
		e10b := f.audit(10, "carol", "POST /x", "/x/4")
		e20 := f.audit(20, "bob", "POST /x", "/x/5")
		// A microsecond before is older.
		e10m := &store.AuditEntry{Time: at(10).Add(-time.Microsecond), Actor: "dave", Action: "POST /x", Status: 200}
		noErr(t, "AppendAudit", f.st.AppendAudit(f.ctx, e10m))

		steps := []struct {
			before time.Time
			n      int
			left   []*store.AuditEntry
		}{
			// Entries at exactly t are not older than t.
			{at(10), 2, []*store.AuditEntry{e30, e10a, e10b, e20}},
			{at(10), 0, []*store.AuditEntry{e30, e10a, e10b, e20}},
			{at(10).Add(time.Nanosecond), 2, []*store.AuditEntry{e30, e20}},
			{at(25), 1, []*store.AuditEntry{e30}},
			{at(100), 1, nil},
		}
		for _, s := range steps {
			what := fmt.Sprintf("DeleteAuditBefore %v", s.before)
			n, err := f.st.DeleteAuditBefore(f.ctx, s.before)
			noErr(t, what, err)
			if n != s.n {
				t.Fatalf("%s removed %d, want %d", what, n, s.n)
			}
			sameJSON(t, what, f.auditIDs(what, store.AuditFilter{}, len(s.left)), idsOf(s.left...))
		}

		// Ids keep increasing after the newest entries were removed.
		next := f.audit(40, "alice", "POST /x", "/x/6")
		if next.ID <= e10m.ID {
			t.Fatalf("id %d after deleting every entry up to id %d: want a greater one", next.ID, e10m.ID)
		}
	})
}
