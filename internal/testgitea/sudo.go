package testgitea

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// As calls the API as user login (the admin acting through Gitea's Sudo
// header): what a test needs of another user's hands (forking, opening a
// pull request). It fails the test on error.
func (s *Server) As(tb testing.TB, login, method, path string, in, out any) {
	tb.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			tb.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+"/api/v1"+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	req.SetBasicAuth(s.AdminUser, s.AdminPassword)
	req.Header.Set("Sudo", login)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("gitea %s %s as %s: %s", method, path, login, (&APIError{Method: method, Path: path, StatusCode: resp.StatusCode, Body: string(b)}).Error())
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatal(fmt.Errorf("gitea %s %s: %w: %s", method, path, err, b))
		}
	}
}
