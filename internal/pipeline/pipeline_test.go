package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

type sealer struct{}

func (sealer) Seal(id string, v []byte) ([]byte, string) { return append([]byte(id+":"), v...), "k1" }

func newService(t *testing.T, seal pipeline.Sealer) (*pipeline.Service, store.Store) {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "runnel.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o := pipeline.Options{Store: st, CronMinInterval: time.Hour, Clock: func() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }}
	if seal != nil {
		o.Sealer = seal
	}
	return pipeline.New(o), st
}

func present(fields ...string) pipeline.Present {
	return func(f string) bool {
		for _, x := range fields {
			if x == f {
				return true
			}
		}
		return false
	}
}

const okSpec = `{"namespace":"demo.app","version":"v1","jobs":[{"name":"build","steps":[{"name":"hi","run":"echo hi"}]}]}`

func TestCreateLeavesNothingBehindOnBadInput(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t, nil)
	for _, tc := range []struct {
		name    string
		req     pipeline.CreateRequest
		present pipeline.Present
		kind    error
		msg     string
	}{
		{"invalid spec", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app"},
			Spec: json.RawMessage(`{"namespace":"demo.app","version":"v1","jobs":[{"name":"build","steps":[{"name":"x"}]}]}`)},
			present("projectId", "name", "spec"), runnel.ErrInvalid, "body.spec: invalid definition: jobs[0].steps[0]"},
		{"webhook secret without a key", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app",
			WebhookSecret: "0123456789abcdef"}}, present("projectId", "name", "webhookSecret"), runnel.ErrUnavailable, "no secret key"},
		{"pr without repo", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app", SaveMode: "pr"}},
			present("projectId", "name", "saveMode"), runnel.ErrInvalid, `body.saveMode: "pr" needs body.repoUrl`},
		{"zone alias differs", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app",
			TriggerTimezone: "UTC", TriggerCronTimezone: "Europe/Paris"}},
			present("projectId", "name", "triggerTimezone", "triggerCronTimezone"), runnel.ErrInvalid, "the two differ"},
		{"cron too often", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app",
			TriggerCronExpression: "* * * * *"}}, present("projectId", "name", "triggerCronExpression"), runnel.ErrInvalid,
			"body.triggerCronExpression"},
		{"unknown credential", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app",
			RepoURL: "https://git.example.com/a/b.git", CredentialID: "cred_nothere0000"}},
			present("projectId", "name", "repoUrl", "credentialId"), runnel.ErrInvalid, `no credential "cred_nothere0000"`},
		{"format without spec", pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app"}, Format: "json"},
			present("projectId", "name", "format"), runnel.ErrInvalid, "body.format: only meaningful with body.spec"},
	} {
		req := tc.req
		_, err := svc.Create(ctx, &req, tc.present, "user_a")
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %v with %q", tc.name, err, tc.kind, tc.msg)
		}
	}
	if _, n, err := st.ListPipelines(ctx, store.PipelineFilter{}); err != nil || n != 0 {
		t.Fatalf("pipelines left behind: %d (%v)", n, err)
	}
}

func TestCreateUpdateDeleteAndSpecs(t *testing.T) {
	ctx := context.Background()
	svc, st := newService(t, sealer{})
	req := &pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app", WebhookSecret: "0123456789abcdef",
		TriggerCronTimezone: "Europe/Paris", TriggerCronExpression: "0 3 * * *"}, Spec: json.RawMessage(okSpec)}
	p, err := svc.Create(ctx, req, present("projectId", "name", "webhookSecret", "spec", "triggerCronTimezone", "triggerCronExpression"), "user_a")
	if err != nil {
		t.Fatal(err)
	}
	if p.CreatedBy != "user_a" || p.HeadVersion != 1 || p.SaveMode != "direct" || p.TriggerTimezone != "Europe/Paris" {
		t.Errorf("created %+v", p)
	}
	if set, err := svc.WebhookSecretSet(ctx, p.ID); err != nil || !set {
		t.Errorf("webhook secret set: %v %v", set, err)
	}
	next, err := svc.NextStart(ctx, p)
	if err != nil || next == nil || !next.Equal(time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)) {
		t.Errorf("next start %v, %v; want 03:00 Paris the next day", next, err)
	}

	// A second pipeline of the same name in the project is a conflict.
	_, err = svc.Create(ctx, &pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: "p1", Name: "app"}}, present("projectId", "name"), "")
	if !errors.Is(err, runnel.ErrConflict) || err.Error() != `body.name: project "p1" already has a pipeline named "app"` {
		t.Errorf("duplicate name: %v", err)
	}

	// Only the fields present change.
	up, err := svc.Update(ctx, p.ID, &pipeline.Fields{Description: "new", Name: "ignored"}, present("description"))
	if err != nil || up.Description != "new" || up.Name != "app" {
		t.Fatalf("update: %+v, %v", up, err)
	}

	// Saves: a same-definition save with the same request id replays; the
	// same id with another definition is a conflict; a stale head says
	// which head is current.
	save := func(def, reqID, head string) (*pipeline.Saved, error) {
		r := &pipeline.SaveRequest{Spec: json.RawMessage(def), RequestID: reqID, ExpectedHeadCommitSHA: head}
		format, err := pipeline.CheckSave(r)
		if err != nil {
			return nil, err
		}
		cur, err := svc.Get(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		return svc.SaveSpec(ctx, cur, r, format, []byte(def), "user_b")
	}
	second := strings.Replace(okSpec, "echo hi", "echo two", 1)
	s1, err := save(second, "req-1", "")
	if err != nil || s1.Version.Version != 2 || s1.Replayed || s1.Version.Editor != "user_b" {
		t.Fatalf("save: %+v, %v", s1, err)
	}
	if s2, err := save(second, "req-1", ""); err != nil || !s2.Replayed || s2.Version.Version != 2 {
		t.Errorf("replayed save: %+v, %v", s2, err)
	}
	if _, err := save(okSpec, "req-1", ""); !errors.Is(err, runnel.ErrConflict) || !strings.Contains(err.Error(), `body.requestId: "req-1" was already used`) {
		t.Errorf("reused request id: %v", err)
	}
	var stale *store.HeadConflictError
	if _, err := save(okSpec, "req-2", strings.Repeat("a", 64)); !errors.As(err, &stale) || stale.Current != s1.Version.CommitSHA {
		t.Errorf("stale head: %v", err)
	}
	var bad *pipeline.InvalidSpecError
	if _, err := save(`{"namespace":"demo.app"}`, "req-3", ""); !errors.As(err, &bad) || len(bad.Errors) == 0 || bad.Field != "body.spec" {
		t.Errorf("invalid definition: %v", err)
	}

	d, err := svc.GetSpec(ctx, p, 1, true)
	if err != nil || d.Version != 1 || d.Text == nil || !strings.Contains(*d.Text, "echo hi") {
		t.Errorf("version 1: %+v, %v", d, err)
	}
	if _, err := svc.GetSpec(ctx, p, 9, false); !errors.Is(err, runnel.ErrNotFound) || !strings.Contains(err.Error(), "no definition version 9 (its newest is 1)") {
		t.Errorf("missing version: %v", err)
	}

	if err := svc.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Get(ctx, p.ID); !errors.Is(err, runnel.ErrNotFound) || err.Error() != "pipeline "+p.ID+" not found" {
		t.Errorf("after delete: %v", err)
	}
	_ = st
}
