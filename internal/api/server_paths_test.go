package api

import "testing"

func TestIsUIPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/": true, "/pipelines": true, "/runs/run_1": true, "/assets/app.js": true, "/apix": true, "/v1x": true,
		"/api/v1/pipelines": false, "/api": false, "/api/": false, "/v1/builds": false, "/v1": false,
		"/healthz": false, "/readyz": false,
	} {
		if got := isUIPath(path); got != want {
			t.Errorf("isUIPath(%q) = %v, want %v", path, got, want)
		}
	}
}
