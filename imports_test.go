package runnel_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/runnel-ci/runnel"

// forbidden are imports that must not exist: each rule names the importing
// packages (a prefix of the path below the module, "" for the vocabulary),
// the imported ones, and why.
var forbidden = []struct {
	from, to []string
	why      string
}{
	{[]string{""}, []string{"internal/", "cmd/"},
		"the vocabulary (package runnel) imports nothing of the project: everything may import it"},
	{[]string{"internal/spec", "internal/expr", "internal/plan"},
		[]string{"internal/store", "internal/api", "internal/agentrpc", "internal/agentserver", "internal/streamrpc", "internal/backend", "internal/gitdef",
			"internal/scheduler", "internal/engine", "internal/event", "internal/web", "internal/agent", "internal/artifact"},
		"domain packages do no I/O and import no adapter"},
	{[]string{"internal/api"}, []string{"internal/store/sqlstore", "internal/agentrpc", "internal/agentserver", "internal/streamrpc", "internal/backend", "internal/web", "internal/agent"},
		"adapters meet in cmd, never import each other; the UI is handed to the API as an http.Handler"},
	{[]string{"internal/store"}, []string{"internal/api", "internal/agentrpc", "internal/agentserver", "internal/streamrpc", "internal/backend", "internal/scheduler", "internal/engine", "internal/event", "internal/gitdef"},
		"the store knows its model only"},
	{[]string{"internal/backend"}, []string{"internal/store", "internal/api", "internal/scheduler", "internal/agentrpc", "internal/agent"},
		"backends run steps and know nothing of the control plane"},
	{[]string{"internal/agentserver", "internal/streamrpc", "internal/wsgateway"}, []string{"internal/api", "internal/store/sqlstore", "internal/web"},
		"adapters meet in cmd, never import each other"},
	{[]string{"internal/artifact"}, []string{"internal/scheduler"},
		"storage is bound to a claim through the worker protocol (worker.JobRef)"},
	{[]string{"internal/secret", "internal/gitdef"}, []string{"internal/action"},
		"credentials are the vocabulary's (runnel.Credential)"},
	{[]string{"internal/artifact", "internal/event", "internal/api"}, []string{"internal/scheduler"},
		"the scheduler is reached through the interfaces its callers declare, or the worker protocol"},
	{[]string{"internal/worker", "internal/agent", "internal/agentrpc", "internal/agentcmd", "cmd/runnel-agent"},
		[]string{"internal/scheduler", "internal/store", "internal/api", "internal/event", "internal/agentserver", "internal/streamrpc", "internal/web"},
		"an agent speaks the worker protocol and links nothing of the control plane"},
	{[]string{"internal/scheduler"}, []string{"internal/event", "internal/api", "internal/agentrpc", "internal/agentserver", "internal/artifact"},
		"the scheduler decides; what it reports to is wired in cmd"},
	{[]string{"internal/api"}, []string{"internal/trigger/cron"},
		"schedule rules live with the pipeline rules, not in the HTTP layer"},
	{[]string{"internal/forge"}, []string{"internal/store", "internal/api", "internal/scheduler", "internal/engine", "internal/event", "internal/gitdef",
		"internal/trigger", "internal/secret", "internal/web", "internal/agentserver", "internal/streamrpc"},
		"forges speak to forges: what Runnel does with them is its services'"},
	{[]string{"internal/apikit"}, []string{"internal/api", "internal/imageapi", "internal/web", "internal/scheduler", "internal/store/sqlstore",
		"internal/agentserver", "internal/streamrpc", "internal/trigger"},
		"the HTTP kit serves every API dialect and holds no rule of any"},
	{[]string{"internal/imageapi", "internal/accountapi"}, []string{"internal/api", "internal/web", "internal/scheduler", "internal/store/sqlstore", "internal/agentserver", "internal/streamrpc"},
		"a dialect is mounted by the API, never the other way; the image build rules are imagebuild's"},
	{[]string{"internal/pipeline", "internal/check", "internal/fleet", "internal/identity", "internal/access", "internal/project", "internal/signin", "internal/sso"}, []string{"internal/api", "internal/apikit", "internal/web", "internal/agentserver", "internal/streamrpc", "internal/scheduler", "internal/store/sqlstore"},
		"services hold the rules; transports call them, never the other way"},
	{[]string{"internal/access"}, []string{"internal/pipeline", "internal/secret", "internal/imagebuild", "internal/project", "internal/identity", "internal/signin"},
		"the access policy is asked by every service; it depends on none of them (only the store)"},
	{[]string{"internal/sso"}, []string{"internal/store"},
		"the sign-in protocol stores nothing: signin keeps its state"},
}

// knownViolations are imports a rule above forbids that the code still
// has; each is to be removed (and then from this list: the test fails on an
// entry that no longer occurs, so the list only shrinks).
var knownViolations = map[string]string{}

type goPackage struct {
	ImportPath string
	Imports    []string
}

// TestImportRules checks the import arrows of docs/architecture.md with go
// list: the project's packages and their direct imports.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := map[string]bool{}
	var pkgs int
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs++
		from := rel(p.ImportPath)
		for _, imp := range p.Imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := rel(imp)
			for _, r := range forbidden {
				if !matches(from, r.from) || !matches(to, r.to) || from == to || strings.HasPrefix(to, from+"/") {
					continue
				}
				key := from + " -> " + to
				if _, known := knownViolations[key]; known {
					seen[key] = true
					continue
				}
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.why)
			}
		}
	}
	if pkgs < 20 {
		t.Fatalf("go list listed %d packages; is the test running in the module?", pkgs)
	}
	for key := range knownViolations {
		if !seen[key] {
			t.Errorf("%s no longer occurs: remove it from knownViolations", key)
		}
	}
}

// rel is a package's path below the module ("" for the module's root).
func rel(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

// matches reports whether path is one of the prefixes (a package or one
// below it); "" matches only the root package.
func matches(path string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool {
		if p == "" {
			return path == ""
		}
		if strings.HasSuffix(p, "/") {
			return strings.HasPrefix(path, p)
		}
		return path == p || strings.HasPrefix(path, p+"/")
	})
}
