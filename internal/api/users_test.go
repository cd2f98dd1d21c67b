package api

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/runnel-ci/runnel"
)

// TestRoutesHaveScopes: every route that needs a token says which scope,
// so a route added without one fails here.
func TestRoutesHaveScopes(t *testing.T) {
	s := &Server{}
	for _, rt := range s.routes() {
		if !rt.Public && !slices.Contains(runnel.Scopes, rt.Scope) {
			t.Errorf("%s %s: scope %q is not one of %v", rt.Method, rt.Path, rt.Scope, runnel.Scopes)
		}
	}
}

// TestUsersAndTokens: an admin creates a user and tokens for them; scopes
// bound what each token may do; users see only themselves and their own
// tokens; a disabled user's tokens stop working; the last admin stays.
func TestUsersAndTokens(t *testing.T) {
	e := newEnv(t)
	// Not a user: bob below is the only admin user.
	admin := e.addUnlinkedToken("root", "admin_root", "admin")
	asAdmin := withToken(admin)

	// A user token cannot administer users.
	e.do("GET", "/api/v1/users", nil).mustErr(t, http.StatusForbidden, "GET /api/v1/users needs a site admin")

	alice := e.do("POST", "/api/v1/users", map[string]any{"login": "alice", "name": "Alice", "email": "alice@example.com"}, asAdmin).
		must(t, http.StatusCreated).detail()
	aliceID := alice["userId"].(string)
	if alice["login"] != "alice" || alice["admin"] != false || alice["disabled"] != false || alice["lastLoginAt"] != nil {
		t.Fatalf("created user: %v", alice)
	}
	e.do("POST", "/api/v1/users", map[string]any{"login": "alice"}, asAdmin).mustErr(t, http.StatusConflict, "body.login: a user alice exists")
	e.do("POST", "/api/v1/users", map[string]any{"login": "-bad"}, asAdmin).mustErr(t, http.StatusBadRequest, "body.login")
	e.do("POST", "/api/v1/users", map[string]any{"login": "bob", "email": "not an address"}, asAdmin).mustErr(t, http.StatusBadRequest, "body.email")
	e.do("PUT", "/api/v1/users/"+aliceID, map[string]any{"login": "alicia"}, asAdmin).mustErr(t, http.StatusBadRequest, "body.login: cannot change")
	e.do("PUT", "/api/v1/users/"+aliceID, map[string]any{"name": nil}, asAdmin).mustErr(t, http.StatusBadRequest, "body.name: must not be null")

	// Tokens for alice: shown once, with the scopes asked.
	mk := func(scopes []string, tok string, status int) map[string]any {
		body := map[string]any{"name": fmt.Sprint(scopes)}
		if scopes != nil {
			body["scopes"] = scopes
		}
		path := "/api/v1/tokens"
		if tok == admin {
			path = "/api/v1/users/" + aliceID + "/tokens"
		}
		return e.do("POST", path, body, withToken(tok)).must(t, status).detail()
	}
	read := mk([]string{"read"}, admin, http.StatusCreated)
	if read["token"] == "" || read["userId"] != aliceID || fmt.Sprint(read["scopes"]) != "[read]" {
		t.Fatalf("read token: %v", read)
	}
	readTok := read["token"].(string)
	e.do("GET", "/api/v1/pipelines", nil, withToken(readTok)).must(t, http.StatusOK)
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "p", "name": "x"}, withToken(readTok)).
		mustErr(t, http.StatusForbidden, "do not include write")
	e.do("POST", "/api/v1/tokens", map[string]any{"name": "more"}, withToken(readTok)).mustErr(t, http.StatusForbidden, "do not include write")

	full := mk(nil, admin, http.StatusCreated)
	if fmt.Sprint(full["scopes"]) != "[read run write]" {
		t.Fatalf("default scopes of a non-admin: %v", full["scopes"])
	}
	fullTok := full["token"].(string)
	me := e.do("GET", "/api/v1/me", nil, withToken(fullTok)).must(t, http.StatusOK).detail()
	if me["subject"] != "alice" || me["role"] != "user" || me["user"].(map[string]any)["userId"] != aliceID {
		t.Fatalf("me: %v", me)
	}
	// A pipeline created by alice records her login.
	p := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "p", "name": "by-alice"}, withToken(fullTok)).must(t, http.StatusCreated).detail()
	if p["createdBy"] != "alice" {
		t.Fatalf("createdBy %v", p["createdBy"])
	}
	e.do("POST", "/api/v1/tokens", map[string]any{"name": "x", "scopes": []string{"admin"}}, withToken(fullTok)).
		mustErr(t, http.StatusBadRequest, "admin is only for admins")
	own := e.do("POST", "/api/v1/tokens", map[string]any{"name": "ci", "scopes": []string{"run"}, "expiresAt": "2099-01-01T00:00:00Z"}, withToken(fullTok)).
		must(t, http.StatusCreated).detail()
	list := e.do("GET", "/api/v1/tokens", nil, withToken(fullTok)).must(t, http.StatusOK).detail()
	if list["total"] != 3.0 {
		t.Fatalf("alice's tokens: %v", list)
	}
	// Users see themselves only; admins everyone.
	e.do("GET", "/api/v1/users/"+aliceID, nil, withToken(readTok)).must(t, http.StatusOK)
	bob := e.do("POST", "/api/v1/users", map[string]any{"login": "bob", "admin": true}, asAdmin).must(t, http.StatusCreated).detail()
	bobID := bob["userId"].(string)
	e.do("GET", "/api/v1/users/"+bobID, nil, withToken(readTok)).mustErr(t, http.StatusNotFound, "user "+bobID+" not found")
	bobTok := e.do("POST", "/api/v1/users/"+bobID+"/tokens", map[string]any{"name": "bob"}, asAdmin).must(t, http.StatusCreated).detail()
	if fmt.Sprint(bobTok["scopes"]) != "[read run write admin]" {
		t.Fatalf("default scopes of an admin: %v", bobTok["scopes"])
	}
	e.do("DELETE", "/api/v1/tokens/"+bobTok["tokenId"].(string), nil, withToken(fullTok)).mustErr(t, http.StatusNotFound, "not found")
	e.do("DELETE", "/api/v1/tokens/"+own["tokenId"].(string), nil, withToken(fullTok)).must(t, http.StatusOK)
	e.do("GET", "/api/v1/pipelines", nil, withToken(own["token"].(string))).mustErr(t, http.StatusUnauthorized, "unknown or revoked")

	// Bob is an admin with his token; the last enabled admin cannot go.
	bobAdmin := withToken(bobTok["token"].(string))
	e.do("GET", "/api/v1/users", nil, bobAdmin).must(t, http.StatusOK)
	e.do("PUT", "/api/v1/users/"+bobID, map[string]any{"admin": false}, bobAdmin).mustErr(t, http.StatusConflict, "last enabled admin")
	e.do("DELETE", "/api/v1/users/"+bobID, nil, bobAdmin).mustErr(t, http.StatusConflict, "last enabled admin")

	// Disabling alice stops her tokens at once.
	e.do("PUT", "/api/v1/users/"+aliceID, map[string]any{"disabled": true}, bobAdmin).must(t, http.StatusOK)
	e.do("GET", "/api/v1/pipelines", nil, withToken(fullTok)).mustErr(t, http.StatusUnauthorized, "user alice is disabled")
	e.do("PUT", "/api/v1/users/"+aliceID, map[string]any{"disabled": false}, bobAdmin).must(t, http.StatusOK)
	e.do("GET", "/api/v1/pipelines", nil, withToken(fullTok)).must(t, http.StatusOK)

	// Deleting her removes her tokens.
	e.do("DELETE", "/api/v1/users/"+aliceID, nil, bobAdmin).must(t, http.StatusOK)
	e.do("GET", "/api/v1/pipelines", nil, withToken(readTok)).mustErr(t, http.StatusUnauthorized, "unknown or revoked")
	users := e.do("GET", "/api/v1/users", nil, bobAdmin).must(t, http.StatusOK).detail()
	// bob and the env's own user remain.
	if users["total"] != 2.0 {
		t.Fatalf("users after the deletion: %v", users)
	}
}
