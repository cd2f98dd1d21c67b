package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

// Forges: pipelines' repository bindings, the commit statuses of their
// runs, the outbox's queue for store.ForgeStatusSink, and the fields forges
// added to credentials, pipelines, sign-in providers and login states.

// binding is a binding of pipelineID with every field set.
func binding(pipelineID, kind, fullName string) *store.RepoBinding {
	return &store.RepoBinding{
		PipelineID: pipelineID, Provider: "gitea-app", Kind: kind, APIBase: "https://git.example.com/api/v1", FullName: fullName,
		HookID: "17", HookState: "active", HookError: "", HookCheckedAt: ptr(at(5)),
		StatusContext: "ci/runnel", JobStatuses: true, CreatedAt: at(1), UpdatedAt: at(2),
	}
}

func (f *fx) getBinding(what, pipelineID string) *store.RepoBinding {
	f.t.Helper()
	b, err := f.st.GetRepoBinding(f.ctx, pipelineID)
	noErr(f.t, what, err)
	utc(f.t, what, &b.CreatedAt, &b.UpdatedAt, b.HookCheckedAt)
	return b
}

func testRepos(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("PutGetBinding", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "app")

		_, err := f.st.GetRepoBinding(f.ctx, p.ID)
		wantErr(t, "GetRepoBinding of a pipeline without one", err, store.ErrNotFound)
		_, err = f.st.GetRepoBinding(f.ctx, "pl_nope")
		wantErr(t, "GetRepoBinding of an unknown pipeline", err, store.ErrNotFound)

		wantErr(t, "PutRepoBinding of an unknown pipeline",
			f.st.PutRepoBinding(f.ctx, binding("pl_nope", "gitea", "acme/app")), store.ErrNotFound)
		invalid := []struct {
			name string
			edit func(b *store.RepoBinding)
		}{
			{"no pipeline id", func(b *store.RepoBinding) { b.PipelineID = "" }},
			{"no kind", func(b *store.RepoBinding) { b.Kind = "" }},
			{"no API base", func(b *store.RepoBinding) { b.APIBase = "" }},
			{"no full name", func(b *store.RepoBinding) { b.FullName = "" }},
		}
		for _, c := range invalid {
			b := binding(p.ID, "gitea", "acme/app")
			c.edit(b)
			wantErr(t, "PutRepoBinding with "+c.name, f.st.PutRepoBinding(f.ctx, b), store.ErrInvalid)
		}
		wantErr(t, "PutRepoBinding(nil)", f.st.PutRepoBinding(f.ctx, nil), store.ErrInvalid)
		_, err = f.st.GetRepoBinding(f.ctx, p.ID)
		wantErr(t, "GetRepoBinding after refused puts", err, store.ErrNotFound)

		// Every field round-trips.
		b := binding(p.ID, "gitea", "acme/app")
		noErr(t, "PutRepoBinding", f.st.PutRepoBinding(f.ctx, b))
		sameJSON(t, "stored binding", f.getBinding("GetRepoBinding", p.ID), b)

		// An upsert replaces every field but CreatedAt; HookCheckedAt goes
		// back to nil, JobStatuses to false.
		upd := &store.RepoBinding{PipelineID: p.ID, Provider: "", Kind: "github", APIBase: "https://api.github.com",
			FullName: "acme/app2", HookID: "", HookState: "missing", HookError: "the webhook was deleted at the forge",
			HookCheckedAt: nil, StatusContext: "", JobStatuses: false, CreatedAt: at(40), UpdatedAt: at(50)}
		noErr(t, "PutRepoBinding again", f.st.PutRepoBinding(f.ctx, upd))
		want := *upd
		want.CreatedAt = b.CreatedAt
		sameJSON(t, "replaced binding", f.getBinding("GetRepoBinding", p.ID), &want)

		// And back: a hook checked again.
		upd.HookID, upd.HookState, upd.HookError, upd.HookCheckedAt, upd.JobStatuses, upd.UpdatedAt =
			"18", "active", "", ptr(at(70)), true, at(70)
		noErr(t, "PutRepoBinding a third time", f.st.PutRepoBinding(f.ctx, upd))
		want = *upd
		want.CreatedAt = b.CreatedAt
		sameJSON(t, "binding with its hook checked", f.getBinding("GetRepoBinding", p.ID), &want)

		// Zero times are the store's now.
		q := f.pipeline("proj", "lib")
		before := time.Now().Add(-time.Minute)
		noErr(t, "PutRepoBinding without times", f.st.PutRepoBinding(f.ctx, &store.RepoBinding{PipelineID: q.ID, Kind: "gitea",
			APIBase: "https://git.example.com/api/v1", FullName: "acme/lib"}))
		got := f.getBinding("GetRepoBinding", q.ID)
		if got.CreatedAt.Before(before) || got.UpdatedAt.Before(before) || got.HookCheckedAt != nil {
			t.Fatalf("binding stored without times: created %v updated %v checked %v", got.CreatedAt, got.UpdatedAt, got.HookCheckedAt)
		}
	})

	t.Run("ListDeleteBindings", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		ids := map[string]string{} // label → pipeline id
		for _, c := range []struct{ label, kind, full string }{
			{"gitea-app", "gitea", "acme/app"},
			{"gitea-app-2", "gitea", "acme/app"},
			{"gitea-lib", "gitea", "acme/lib"},
			{"github-app", "github", "acme/app"},
		} {
			p := f.pipeline("proj", c.label)
			ids[c.label] = p.ID
			noErr(t, "PutRepoBinding "+c.label, f.st.PutRepoBinding(f.ctx, binding(p.ID, c.kind, c.full)))
		}
		f.pipeline("proj", "unbound")
		list := func(kind, full string) []string {
			t.Helper()
			bs, err := f.st.ListRepoBindings(f.ctx, kind, full)
			noErr(t, "ListRepoBindings", err)
			out := []string{}
			for i, b := range bs {
				if i > 0 && bs[i-1].PipelineID >= b.PipelineID {
					t.Fatalf("ListRepoBindings(%q, %q) is not ordered by pipeline id", kind, full)
				}
				for label, id := range ids {
					if id == b.PipelineID {
						out = append(out, label)
					}
				}
			}
			return sortStrings(out)
		}
		cases := []struct {
			kind, full string
			want       []string
		}{
			{"", "", []string{"gitea-app", "gitea-app-2", "gitea-lib", "github-app"}},
			{"gitea", "", []string{"gitea-app", "gitea-app-2", "gitea-lib"}},
			{"", "acme/app", []string{"gitea-app", "gitea-app-2", "github-app"}},
			{"gitea", "acme/app", []string{"gitea-app", "gitea-app-2"}},
			{"github", "acme/lib", []string{}},
			{"gitlab", "", []string{}},
			{"", "acme/APP", []string{}}, // exact match
		}
		for _, c := range cases {
			sameList(t, fmt.Sprintf("ListRepoBindings(%q, %q)", c.kind, c.full), list(c.kind, c.full), c.want)
		}
		bs, err := f.st.ListRepoBindings(f.ctx, "gitea", "acme/lib")
		noErr(t, "ListRepoBindings", err)
		if len(bs) != 1 {
			t.Fatalf("ListRepoBindings(gitea, acme/lib): %d bindings", len(bs))
		}
		sameJSON(t, "listed binding", bs[0], binding(ids["gitea-lib"], "gitea", "acme/lib"))

		// Deleting is idempotent, and so is deleting what never was.
		noErr(t, "DeleteRepoBinding", f.st.DeleteRepoBinding(f.ctx, ids["gitea-app"]))
		_, err = f.st.GetRepoBinding(f.ctx, ids["gitea-app"])
		wantErr(t, "GetRepoBinding after the deletion", err, store.ErrNotFound)
		noErr(t, "DeleteRepoBinding again", f.st.DeleteRepoBinding(f.ctx, ids["gitea-app"]))
		noErr(t, "DeleteRepoBinding of an unknown pipeline", f.st.DeleteRepoBinding(f.ctx, "pl_nope"))
		sameList(t, "after DeleteRepoBinding", list("", ""), []string{"gitea-app-2", "gitea-lib", "github-app"})
		if _, err := f.st.GetPipeline(f.ctx, ids["gitea-app"]); err != nil {
			t.Fatalf("the pipeline went with its binding: %v", err)
		}

		// A binding goes with its pipeline.
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, ids["gitea-lib"]))
		_, err = f.st.GetRepoBinding(f.ctx, ids["gitea-lib"])
		wantErr(t, "GetRepoBinding of a deleted pipeline", err, store.ErrNotFound)
		sameList(t, "after DeletePipeline", list("", ""), []string{"gitea-app-2", "github-app"})
	})

	t.Run("CommitStatuses", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "app")
		r1 := f.run(p.ID, 1, 1).Run
		r2 := f.run(p.ID, 1, 1).Run

		list := func(what, runID string) []*store.CommitStatusRecord {
			t.Helper()
			cs, err := f.st.ListCommitStatuses(f.ctx, runID)
			noErr(t, what, err)
			for _, c := range cs {
				utc(t, what, &c.UpdatedAt)
			}
			return cs
		}
		if cs := list("ListCommitStatuses of a run without any", r1.ID); len(cs) != 0 {
			t.Fatalf("a new run has %d commit statuses", len(cs))
		}
		if cs := list("ListCommitStatuses of an unknown run", "run_nope"); len(cs) != 0 {
			t.Fatalf("an unknown run has %d commit statuses", len(cs))
		}

		sha := "0123456789abcdef0123456789abcdef01234567"
		job := &store.CommitStatusRecord{RunID: r1.ID, Context: "runnel/app/build/job0", SHA: sha, State: "running",
			Description: "Job job 0 running", TargetURL: "https://ci.example.com/runs/" + r1.ID, Attempts: 1, UpdatedAt: at(3)}
		run := &store.CommitStatusRecord{RunID: r1.ID, Context: "runnel/app", SHA: sha, State: "pending",
			Description: "Run #1 queued", TargetURL: "https://ci.example.com/runs/" + r1.ID, Attempts: 1, UpdatedAt: at(1)}
		other := &store.CommitStatusRecord{RunID: r2.ID, Context: "runnel/app", SHA: "fedcba9", State: "success", UpdatedAt: at(2)}
		// Stored out of order: listed by context.
		for _, c := range []*store.CommitStatusRecord{job, run, other} {
			noErr(t, "PutCommitStatus "+c.Context, f.st.PutCommitStatus(f.ctx, c))
		}
		sameJSON(t, "run 1's statuses", list("ListCommitStatuses", r1.ID), []*store.CommitStatusRecord{run, job})
		sameJSON(t, "run 2's statuses", list("ListCommitStatuses", r2.ID), []*store.CommitStatusRecord{other})

		// One row per (run, context): a later state replaces the earlier,
		// with the outcome of sending it.
		failed := &store.CommitStatusRecord{RunID: r1.ID, Context: "runnel/app", SHA: sha, State: "failure",
			Description: "Run #1 failed: job failed", TargetURL: run.TargetURL, Error: "gitea failed: 500 Internal Server Error",
			Attempts: 3, UpdatedAt: at(9)}
		noErr(t, "PutCommitStatus replacing", f.st.PutCommitStatus(f.ctx, failed))
		sameJSON(t, "after the replacement", list("ListCommitStatuses", r1.ID), []*store.CommitStatusRecord{failed, job})
		sent := *failed
		sent.Error, sent.Attempts, sent.UpdatedAt = "", 4, at(10)
		noErr(t, "PutCommitStatus sent at last", f.st.PutCommitStatus(f.ctx, &sent))
		sameJSON(t, "after a successful retry", list("ListCommitStatuses", r1.ID), []*store.CommitStatusRecord{&sent, job})
		sameJSON(t, "run 2's statuses are its own", list("ListCommitStatuses", r2.ID), []*store.CommitStatusRecord{other})

		// A zero UpdatedAt is the store's now.
		before := time.Now().Add(-time.Minute)
		noErr(t, "PutCommitStatus without a time", f.st.PutCommitStatus(f.ctx,
			&store.CommitStatusRecord{RunID: r2.ID, Context: "runnel/app/x", SHA: "fedcba9", State: "pending"}))
		if cs := list("ListCommitStatuses", r2.ID); len(cs) != 2 || cs[1].UpdatedAt.Before(before) {
			t.Fatalf("status stored without a time: %+v", cs)
		}

		wantErr(t, "PutCommitStatus of an unknown run", f.st.PutCommitStatus(f.ctx,
			&store.CommitStatusRecord{RunID: "run_nope", Context: "runnel/app", SHA: sha, State: "pending", UpdatedAt: at(1)}), store.ErrNotFound)
		wantErr(t, "PutCommitStatus without a run", f.st.PutCommitStatus(f.ctx,
			&store.CommitStatusRecord{Context: "runnel/app", SHA: sha, State: "pending"}), store.ErrInvalid)
		wantErr(t, "PutCommitStatus without a context", f.st.PutCommitStatus(f.ctx,
			&store.CommitStatusRecord{RunID: r1.ID, SHA: sha, State: "pending"}), store.ErrInvalid)

		// Statuses go with their run, which goes with its pipeline.
		f.setRunStatus(r1.ID, "success")
		f.setRunStatus(r2.ID, "cancelled")
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
		for _, id := range []string{r1.ID, r2.ID} {
			if cs := list("ListCommitStatuses of a deleted run", id); len(cs) != 0 {
				t.Fatalf("run %s has %d commit statuses after its pipeline was deleted", id, len(cs))
			}
		}
		// A new run under the same id starts with none (no orphans left).
		q := f.pipeline("proj", "app")
		nr := newRun(q.ID, 0, 0)
		nr.Run.ID = r1.ID
		_, _, err := f.st.CreateRun(f.ctx, nr)
		noErr(t, "CreateRun reusing the deleted run's id", err)
		if cs := list("ListCommitStatuses", r1.ID); len(cs) != 0 {
			t.Fatalf("the deleted run's statuses survived: %+v", cs)
		}
	})

	t.Run("Outbox", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		bound := f.pipeline("proj", "bound")
		plain := f.pipeline("proj", "plain")
		noErr(t, "PutRepoBinding", f.st.PutRepoBinding(f.ctx, binding(bound.ID, "gitea", "acme/app")))

		r1 := f.run(bound.ID, 1, 1)
		r2 := f.run(plain.ID, 1, 1)
		label := map[string]string{r1.Run.ID: "r1", r2.Run.ID: "r2"}

		// r1: its job queued (not the start of an attempt), claimed and
		// acknowledged (the start), the run running, the job and the run
		// done. r2 the same without a binding.
		for _, tr := range []*store.RunTree{r1, r2} {
			f.queueOn(tr.Run.ID, "", time.Now().UTC().Add(-time.Second), nil, tr.Jobs[0].ID)
			c, err := f.st.ClaimJob(f.ctx, "agent-1", []string{""}, time.Minute)
			noErr(t, "ClaimJob", err)
			_, err = f.st.ExtendLease(f.ctx, c.ID, c.LeaseID, time.Minute)
			noErr(t, "ExtendLease", err)
			f.setRunStatus(tr.Run.ID, "running")
			noErr(t, "finish", f.st.UpdateRunTx(f.ctx, tr.Run.ID, func(tx store.RunTx) error {
				tree, err := tx.Tree()
				if err != nil {
					return err
				}
				j := tree.Jobs[0]
				j.Status, j.EndedAt = "success", ptr(at(3))
				if err := tx.UpdateJob(j); err != nil {
					return err
				}
				tree.Run.Status, tree.Run.EndedAt = "success", ptr(at(3))
				if err := tx.UpdateRun(tree.Run); err != nil {
					return err
				}
				// An explicit event is no status: not for the forge.
				_, err = tx.AddEvent("approval.requested", json.RawMessage(`{"approvalId":"ap_1"}`))
				return err
			}))
		}
		r3 := f.run(bound.ID, 0, 0)
		label[r3.Run.ID] = "r3"

		// drain claims every delivery, in order per (sink, run), settling
		// each, and describes them.
		drain := func(what string) []string {
			t.Helper()
			var out []string
			for range 50 {
				ds, err := f.st.ClaimDeliveries(f.ctx, time.Now().UTC(), time.Minute, 100)
				noErr(t, what, err)
				if len(ds) == 0 {
					return out
				}
				var ids []int64
				for _, d := range ds {
					ids = append(ids, d.ID)
					if d.Event.PipelineID == "" || d.Event.RunID == "" {
						t.Fatalf("%s: delivery %d without its event's run: %+v", what, d.ID, d.Event)
					}
					var sc store.StatusChange
					noErr(t, what, json.Unmarshal(d.Event.Data, &sc))
					out = append(out, fmt.Sprintf("%s %s %s %s<-%s", d.Sink, label[d.Event.RunID], d.Event.Type, sc.Status, sc.Previous))
				}
				noErr(t, what, f.st.DeliveriesDone(f.ctx, ids))
			}
			t.Fatalf("%s: the outbox never empties", what)
			return nil
		}
		fs := store.ForgeStatusSink
		// with keeps the deliveries whose description starts with prefix,
		// in order: runs interleave as claims go, each run's in order.
		with := func(all []string, prefix string) []string {
			out := []string{}
			for _, s := range all {
				if strings.HasPrefix(s, prefix) {
					out = append(out, s)
				}
			}
			return out
		}
		all := drain("drain")
		perRun := func(all []string, run string) []string { return with(all, fs+" "+run+" ") }
		sameList(t, "the bound pipeline's run r1, for the forge", perRun(all, "r1"), []string{
			fs + " r1 run.status pending<-",
			fs + " r1 job.status running<-queued",
			fs + " r1 run.status running<-pending",
			fs + " r1 job.status success<-running",
			fs + " r1 run.status success<-running",
		})
		sameList(t, "the bound pipeline's run r3, for the forge", perRun(all, "r3"), []string{fs + " r3 run.status pending<-"})
		sameList(t, "the unbound pipeline's run r2, for the forge", perRun(all, "r2"), []string{})
		// The notifier still hears of both ends, whatever the binding.
		sameList(t, "for the notifier", sortStrings(with(all, store.NotifySink+" ")), []string{
			store.NotifySink + " r1 run.status success<-running",
			store.NotifySink + " r2 run.status success<-running",
		})
		if len(all) != 5+1+2 {
			t.Fatalf("deliveries: %q; want r1's 5 and r3's 1 for the forge, and r1's and r2's ends for the notifier", all)
		}

		// The binding is looked up at each event: unbound, no more; bound
		// later, from then on.
		noErr(t, "DeleteRepoBinding", f.st.DeleteRepoBinding(f.ctx, bound.ID))
		f.setRunStatus(r3.Run.ID, "cancelled")
		noErr(t, "PutRepoBinding of the other pipeline", f.st.PutRepoBinding(f.ctx, binding(plain.ID, "gitea", "acme/lib")))
		r4 := f.run(plain.ID, 0, 0)
		label[r4.Run.ID] = "r4"
		all = drain("drain again")
		sameList(t, "after the bindings changed, for the forge", with(all, fs+" "), []string{fs + " r4 run.status pending<-"})
		n, err := f.st.PendingDeliveries(f.ctx)
		noErr(t, "PendingDeliveries", err)
		if n != 0 {
			t.Fatalf("%d deliveries pending after draining", n)
		}
	})
}

// testForgeFields checks the fields forges added to credentials, pipelines,
// sign-in providers and login states round-trip.
func testForgeFields(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Credentials", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		acct := &store.Credential{ID: newID("cred"), Name: "gitea-app-gina", Kind: "gitea", Host: "git.example.com", Username: "gina",
			Ciphertext: []byte("access"), KeyID: "k1", CreatedBy: "gina", CreatorID: "usr_gina", CreatedAt: at(1), UpdatedAt: at(1),
			OwnerID: "usr_gina", Provider: "gitea-app", AccountID: "42", LoginName: "gina", AvatarURL: "https://git.example.com/avatars/42",
			RefreshCiphertext: []byte("refresh"), RefreshKeyID: "k1", ExpiresAt: ptr(at(3600))}
		plain := &store.Credential{ID: newID("cred"), Name: "hand-made", Kind: "github", Host: "github.com", Username: "bot",
			Ciphertext: []byte("pat"), KeyID: "k1", CreatedBy: "admin", CreatedAt: at(2), UpdatedAt: at(2)}
		noErr(t, "CreateCredential (a connected account)", f.st.CreateCredential(f.ctx, acct))
		noErr(t, "CreateCredential (hand-made)", f.st.CreateCredential(f.ctx, plain))

		get := func(what, id string) *store.Credential {
			t.Helper()
			c, err := f.st.GetCredential(f.ctx, id)
			noErr(t, what, err)
			utc(t, what, &c.CreatedAt, &c.UpdatedAt, c.ExpiresAt)
			return c
		}
		sameJSON(t, "connected account", get("GetCredential", acct.ID), acct)
		got := get("GetCredential", plain.ID)
		sameJSON(t, "hand-made credential", got, plain)
		if got.RefreshCiphertext != nil || got.ExpiresAt != nil {
			t.Fatalf("a credential without a refresh token reads back with one: %q, expires %v", got.RefreshCiphertext, got.ExpiresAt)
		}
		list, err := f.st.ListCredentials(f.ctx, "")
		noErr(t, "ListCredentials", err)
		sameJSON(t, "listed credentials", list, []*store.Credential{acct, plain})

		// A renewal replaces the tokens, the expiry and the account's names.
		acct.Ciphertext, acct.LoginName, acct.AvatarURL = []byte("access-2"), "gina2", "https://git.example.com/avatars/42?v=2"
		acct.RefreshCiphertext, acct.RefreshKeyID, acct.ExpiresAt, acct.UpdatedAt = []byte("refresh-2"), "k2", ptr(at(7200)), at(60)
		noErr(t, "UpdateCredential", f.st.UpdateCredential(f.ctx, acct))
		sameJSON(t, "renewed account", get("GetCredential", acct.ID), acct)
		// A forge that stops sending a refresh token or an expiry.
		acct.RefreshCiphertext, acct.RefreshKeyID, acct.ExpiresAt, acct.UpdatedAt = nil, "", nil, at(70)
		noErr(t, "UpdateCredential without refresh token", f.st.UpdateCredential(f.ctx, acct))
		sameJSON(t, "account without a refresh token", get("GetCredential", acct.ID), acct)

		// The account's identity (whose it is, through which application,
		// which forge account) is what finds it again when its user
		// reconnects: an update keeps it.
		moved := *acct
		moved.OwnerID, moved.Provider, moved.AccountID, moved.UpdatedAt = "usr_mallory", "other-app", "666", at(80)
		noErr(t, "UpdateCredential changing the identity", f.st.UpdateCredential(f.ctx, &moved))
		want := moved
		want.OwnerID, want.Provider, want.AccountID = acct.OwnerID, acct.Provider, acct.AccountID
		sameJSON(t, "account after an update of its identity", get("GetCredential", acct.ID), &want)
		list, err = f.st.ListCredentials(f.ctx, "")
		noErr(t, "ListCredentials", err)
		sameJSON(t, "listed after the updates", list, []*store.Credential{&want, plain})
	})

	t.Run("Pipelines", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := &store.Pipeline{ID: newID("pl"), ProjectID: "proj", Name: "app", RepoURL: "https://git.example.com/acme/app.git",
			Metadata: map[string]any{}, CreatedAt: t0, UpdatedAt: t0,
			Deactivated: true, WebhookDisabled: true, ForkPullRequests: "approve"}
		noErr(t, "CreatePipeline", f.st.CreatePipeline(f.ctx, p))
		plain := f.pipeline("proj", "plain")
		got, err := f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		sameJSON(t, "created pipeline", got, p)

		p.Deactivated, p.WebhookDisabled, p.ForkPullRequests, p.UpdatedAt = false, false, "allow", at(10)
		noErr(t, "UpdatePipeline", f.st.UpdatePipeline(f.ctx, p))
		got, err = f.st.GetPipeline(f.ctx, p.ID)
		noErr(t, "GetPipeline", err)
		sameJSON(t, "updated pipeline", got, p)
		p.Deactivated, p.ForkPullRequests, p.UpdatedAt = true, "", at(20)
		noErr(t, "UpdatePipeline", f.st.UpdatePipeline(f.ctx, p))

		ps, total, err := f.st.ListPipelines(f.ctx, store.PipelineFilter{ProjectID: "proj"})
		noErr(t, "ListPipelines", err)
		if total != 2 || len(ps) != 2 {
			t.Fatalf("ListPipelines: %d of %d", len(ps), total)
		}
		sameJSON(t, "listed pipelines", ps, []*store.Pipeline{p, plain})
	})

	t.Run("AuthProviders", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		mk := func(name string, signIn, connect bool) *store.AuthProvider {
			p := &store.AuthProvider{Name: name, Kind: "gitea", DisplayName: name, URL: "https://git.example.com", ClientID: "cid",
				Ciphertext: []byte{1}, KeyID: "k1", Scopes: []string{"read:user"}, AllowedOrgs: []string{}, AllowedDomains: []string{},
				SignIn: signIn, Connect: connect, CreatedAt: at(1), UpdatedAt: at(1)}
			noErr(t, "CreateAuthProvider "+name, f.st.CreateAuthProvider(f.ctx, p))
			return p
		}
		a := mk("a-connect-only", false, true)
		b := mk("b-both", true, true)
		c := mk("c-sign-in-only", true, false)
		for _, p := range []*store.AuthProvider{a, b, c} {
			got, err := f.st.GetAuthProvider(f.ctx, p.Name)
			noErr(t, "GetAuthProvider", err)
			sameJSON(t, "provider "+p.Name, got, p)
		}
		a.SignIn, a.Connect, a.UpdatedAt = true, false, at(2)
		c.SignIn, c.Connect, c.UpdatedAt = false, true, at(2)
		noErr(t, "UpdateAuthProvider", f.st.UpdateAuthProvider(f.ctx, a))
		noErr(t, "UpdateAuthProvider", f.st.UpdateAuthProvider(f.ctx, c))
		list, err := f.st.ListAuthProviders(f.ctx)
		noErr(t, "ListAuthProviders", err)
		sameJSON(t, "listed providers", list, []*store.AuthProvider{a, b, c})
	})

	t.Run("LoginStates", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		connect := &store.LoginState{State: "s-connect", Provider: "gitea", Nonce: "n", Verifier: "v", ReturnTo: "/settings/accounts",
			ExpiresAt: at(600), UserID: "usr_gina"}
		signIn := &store.LoginState{State: "s-sign-in", Provider: "gitea", Nonce: "n2", Verifier: "v2", ReturnTo: "/", ExpiresAt: at(600)}
		noErr(t, "PutLoginState", f.st.PutLoginState(f.ctx, connect))
		noErr(t, "PutLoginState", f.st.PutLoginState(f.ctx, signIn))
		for _, l := range []*store.LoginState{connect, signIn} {
			got, err := f.st.TakeLoginState(f.ctx, l.State, at(100))
			noErr(t, "TakeLoginState "+l.State, err)
			sameJSON(t, "login state "+l.State, got, l)
		}
	})
}
