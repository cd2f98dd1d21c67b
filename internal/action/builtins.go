package action

import "fmt"

// Builtins returns a registry holding the built-in actions: actions/shell@v1,
// actions/git-checkout@v1 and actions/go-build@v1. Each call returns a new
// registry, so callers may add their own actions without affecting others.
func Builtins() *Registry {
	r := NewRegistry()
	for _, a := range []Action{Shell{}, GitCheckout{}, GoBuild{}, ArtifactUpload{}, ArtifactDownload{}, Cache{}, DockerBuild{}} {
		if err := r.Register(a); err != nil {
			// Only a duplicate name can fail, and the names above are distinct.
			panic(fmt.Sprintf("action.Builtins: %v", err))
		}
	}
	return r
}
