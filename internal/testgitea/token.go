package testgitea

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// CreateToken creates a personal access token of login, signing in with
// its password (HTTP basic authentication, which Gitea requires to create
// tokens), and returns it. scopes are Gitea's ("write:repository",
// "read:user", …); none is write:repository and write:user.
func (s *Server) CreateToken(tb testing.TB, login, password string, scopes ...string) string {
	tb.Helper()
	if len(scopes) == 0 {
		scopes = []string{"write:repository", "write:user"}
	}
	path := "/users/" + url.PathEscape(login) + "/tokens"
	body, err := json.Marshal(map[string]any{"name": "runnel-test-" + randomHex(6), "scopes": scopes})
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/v1"+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.SetBasicAuth(login, password)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		tb.Fatal(&APIError{Method: http.MethodPost, Path: path, StatusCode: resp.StatusCode, Body: string(b)})
	}
	var t struct {
		Token string `json:"sha1"`
	}
	if err := json.Unmarshal(b, &t); err != nil || t.Token == "" {
		tb.Fatalf("gitea POST %s: no token in %s (%v)", path, b, err)
	}
	return t.Token
}
