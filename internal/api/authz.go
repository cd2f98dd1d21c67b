package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/apikit"
)

// idPrefixes are the path parameters whose values have a fixed id form: a
// malformed one is left to the handler, which answers 400 naming it (no
// resource can have it, so nothing is revealed).
var idPrefixes = map[string]string{
	"pipelineId": "pl_", "runId": "run_", "buildId": "run_", "build_id": "run_", "approvalId": "apr_", "secretId": "sec_", "credentialId": "cred_",
}

// nouns name what a path parameter is, for the messages.
var nouns = map[string]string{
	"projectId": "project", "namespace": "namespace", "pipelineId": "pipeline", "runId": "run", "buildId": "build", "build_id": "build",
	"approvalId": "approval", "secretId": "secret", "credentialId": "credential",
}

var pathPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\{[A-Za-z_]+\}`) })

// rules caches the parsed Access rules by route.
var rules sync.Map // string → access.Rule

// ruleOf parses a route's Access rule (checked by TestRoutesHaveRules; a
// route without a valid one is refused, never let through).
func ruleOf(rt apikit.Route) (access.Rule, error) {
	key := rt.Method + " " + rt.Path + " " + rt.Access
	if v, ok := rules.Load(key); ok {
		return v.(access.Rule), nil
	}
	rule, err := access.ParseRule(rt.Access)
	if err != nil {
		return access.Rule{}, fmt.Errorf("route %s %s: %w", rt.Method, rt.Path, err)
	}
	rules.Store(key, rule)
	return rule, nil
}

// authorize applies a route's rule to its caller (the mux's Authorize).
func (s *Server) authorize(r *http.Request, rt apikit.Route) error {
	rule, err := ruleOf(rt)
	if err != nil {
		return err
	}
	if rule.Kind == "project" {
		v := r.PathValue(rule.Param)
		if pre, ok := idPrefixes[rule.Param]; ok && !apikit.IsID(v, pre) {
			return nil
		}
	}
	action := rt.Method + " " + pathPattern().ReplaceAllStringFunc(rt.Path, func(w string) string {
		return r.PathValue(strings.Trim(w, "{}"))
	})
	return s.access.Check(r.Context(), rule, r.PathValue, nouns[rule.Param], action)
}
