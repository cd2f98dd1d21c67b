package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func testSecrets(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	p := f.pipeline("proj", "with-secrets")
	other := f.pipeline("proj", "other")
	mk := func(name, scope, scopeID string, ct string) *store.Secret {
		x := &store.Secret{ID: newID("sec"), Name: name, Scope: scope, ScopeID: scopeID, Ciphertext: []byte(ct), KeyID: "k1",
			CreatedBy: "tester", CreatedAt: time.Now().UTC()}
		noErr(t, "CreateSecret "+name, f.st.CreateSecret(f.ctx, x))
		return x
	}
	projTok := mk("TOKEN", "project", "proj", "ct-project-token")
	mk("ONLY_PROJECT", "project", "proj", "ct-only-project")
	pipeTok := mk("TOKEN", "pipeline", p.ID, "ct-pipeline-token")
	mk("OTHER", "pipeline", other.ID, "ct-other")
	mk("ELSEWHERE", "project", "proj2", "ct-elsewhere")

	dup := &store.Secret{ID: newID("sec"), Name: "TOKEN", Scope: "project", ScopeID: "proj", Ciphertext: []byte("x"), KeyID: "k1"}
	wantErr(t, "same name in the same scope", f.st.CreateSecret(f.ctx, dup), store.ErrConflict)
	wantErr(t, "bad scope", f.st.CreateSecret(f.ctx, &store.Secret{ID: newID("sec"), Name: "A", Scope: "team", ScopeID: "x", Ciphertext: []byte("x"), KeyID: "k"}), store.ErrInvalid)
	wantErr(t, "no ciphertext", f.st.CreateSecret(f.ctx, &store.Secret{ID: newID("sec"), Name: "A", Scope: "project", ScopeID: "x", KeyID: "k"}), store.ErrInvalid)

	got, err := f.st.GetSecret(f.ctx, pipeTok.ID)
	noErr(t, "GetSecret", err)
	if got.Name != "TOKEN" || got.Scope != "pipeline" || got.ScopeID != p.ID || !bytes.Equal(got.Ciphertext, []byte("ct-pipeline-token")) || got.KeyID != "k1" || got.CreatedBy != "tester" {
		t.Errorf("GetSecret: %+v", got)
	}
	_, err = f.st.GetSecret(f.ctx, "sec_missing")
	wantErr(t, "GetSecret missing", err, store.ErrNotFound)

	forPipeline, err := f.st.SecretsForPipeline(f.ctx, "proj", p.ID)
	noErr(t, "SecretsForPipeline", err)
	var names []string
	for _, x := range forPipeline {
		names = append(names, x.Name+"/"+x.Scope)
	}
	if want := "ONLY_PROJECT/project TOKEN/project TOKEN/pipeline"; join(names) != want {
		t.Errorf("SecretsForPipeline: %s, want %s (project scope first, so the pipeline's own wins when applied in order)", join(names), want)
	}
	list, err := f.st.ListSecrets(f.ctx, store.SecretFilter{Scope: "project", ScopeID: "proj"})
	noErr(t, "ListSecrets", err)
	if len(list) != 2 || list[0].Name != "ONLY_PROJECT" || list[1].Name != "TOKEN" {
		t.Errorf("ListSecrets(project proj): %d", len(list))
	}
	all, err := f.st.ListSecrets(f.ctx, store.SecretFilter{})
	noErr(t, "ListSecrets all", err)
	if len(all) != 5 {
		t.Errorf("ListSecrets all: %d, want 5", len(all))
	}

	projTok.Ciphertext, projTok.KeyID, projTok.Name = []byte("ct-new"), "k2", "TOKEN2"
	noErr(t, "UpdateSecret", f.st.UpdateSecret(f.ctx, projTok))
	got, _ = f.st.GetSecret(f.ctx, projTok.ID)
	if got.Name != "TOKEN2" || string(got.Ciphertext) != "ct-new" || got.KeyID != "k2" {
		t.Errorf("after UpdateSecret: %+v", got)
	}
	projTok.Name = "ONLY_PROJECT"
	wantErr(t, "rename onto an existing name", f.st.UpdateSecret(f.ctx, projTok), store.ErrConflict)

	noErr(t, "DeleteSecret", f.st.DeleteSecret(f.ctx, projTok.ID))
	wantErr(t, "DeleteSecret again", f.st.DeleteSecret(f.ctx, projTok.ID), store.ErrNotFound)

	// Deleting a pipeline deletes its own secrets, not the project's.
	noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
	_, err = f.st.GetSecret(f.ctx, pipeTok.ID)
	wantErr(t, "the deleted pipeline's secret", err, store.ErrNotFound)
	left, _ := f.st.ListSecrets(f.ctx, store.SecretFilter{Scope: "project", ScopeID: "proj"})
	if len(left) != 1 {
		t.Errorf("project secrets after deleting a pipeline: %d, want 1", len(left))
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func testCredentials(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	mk := func(name, kind, project string) *store.Credential {
		c := &store.Credential{ID: newID("cred"), Name: name, Kind: kind, Host: "example.com", Username: "bot", CreatorID: "usr_bot",
			ProjectID: project, Ciphertext: []byte("ct-" + name), KeyID: "k1", CreatedBy: "tester"}
		noErr(t, "CreateCredential "+name, f.st.CreateCredential(f.ctx, c))
		return c
	}
	gh := mk("gh", "github", "")
	mk("deploy-key", "ssh", "proj")
	wantErr(t, "duplicate name", f.st.CreateCredential(f.ctx, &store.Credential{ID: newID("cred"), Name: "gh", Kind: "github", Ciphertext: []byte("x"), KeyID: "k"}), store.ErrConflict)
	wantErr(t, "no ciphertext", f.st.CreateCredential(f.ctx, &store.Credential{ID: newID("cred"), Name: "x", Kind: "github", KeyID: "k"}), store.ErrInvalid)
	got, err := f.st.GetCredential(f.ctx, gh.ID)
	noErr(t, "GetCredential", err)
	if got.Name != "gh" || got.Kind != "github" || got.Host != "example.com" || got.Username != "bot" || string(got.Ciphertext) != "ct-gh" || got.CreatedAt.IsZero() {
		t.Errorf("GetCredential: %+v", got)
	}
	all, err := f.st.ListCredentials(f.ctx, "")
	noErr(t, "ListCredentials", err)
	inProj, err := f.st.ListCredentials(f.ctx, "proj")
	noErr(t, "ListCredentials proj", err)
	if len(all) != 2 || all[0].Name != "deploy-key" || len(inProj) != 1 {
		t.Errorf("ListCredentials: %d all, %d in proj", len(all), len(inProj))
	}
	gh.Username, gh.Ciphertext, gh.KeyID, gh.Name = "bot2", []byte("ct-new"), "k2", "github-bot"
	noErr(t, "UpdateCredential", f.st.UpdateCredential(f.ctx, gh))
	got, _ = f.st.GetCredential(f.ctx, gh.ID)
	if got.Username != "bot2" || string(got.Ciphertext) != "ct-new" || got.KeyID != "k2" || got.Name != "github-bot" || got.Kind != "github" {
		t.Errorf("after UpdateCredential: %+v", got)
	}
	gh.Name = "deploy-key"
	wantErr(t, "rename onto a used name", f.st.UpdateCredential(f.ctx, gh), store.ErrConflict)
	noErr(t, "DeleteCredential", f.st.DeleteCredential(f.ctx, gh.ID))
	wantErr(t, "DeleteCredential again", f.st.DeleteCredential(f.ctx, gh.ID), store.ErrNotFound)
	_, err = f.st.GetCredential(f.ctx, gh.ID)
	wantErr(t, "GetCredential deleted", err, store.ErrNotFound)
}
