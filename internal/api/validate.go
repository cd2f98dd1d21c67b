package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
)

// idKind describes one kind of id for messages.
type idKind struct {
	param  string // path parameter name
	prefix string
	noun   string
}

var (
	pipelineID = idKind{"pipelineId", "pl_", "pipeline"}
	runID      = idKind{"runId", "run_", "run"}
	stepRunID  = idKind{"stepRunId", "sr_", "step run"}
)

// pathID returns the path parameter of kind k from r, checked.
func pathID(r *http.Request, k idKind) (string, error) {
	id := r.PathValue(k.param)
	if !apikit.IsID(id, k.prefix) {
		article := "a"
		if strings.ContainsRune("aeio", rune(k.noun[0])) { // "a user"
			article = "an"
		}
		return "", apikit.Errorf(http.StatusBadRequest,
			"path parameter %s: %q is not %s %s id; %s ids are %s followed by 10 to 40 lowercase letters and digits",
			k.param, id, article, k.noun, k.noun, k.prefix)
	}
	return id, nil
}

// newID is runnel.NewID for a prefix written with its underscore ("pl_").
func newID(prefix string) string {
	return runnel.NewID(strings.TrimSuffix(prefix, "_"))
}

// loadByPath reads the entity whose id is the path parameter of kind k, or
// answers 404 naming it.
func loadByPath[T any](r *http.Request, k idKind, get func(ctx context.Context, id string) (T, error)) (T, error) {
	var zero T
	id, err := pathID(r, k)
	if err != nil {
		return zero, err
	}
	v, err := get(r.Context(), id)
	if errors.Is(err, runnel.ErrNotFound) {
		return zero, apikit.Errorf(http.StatusNotFound, "%s %s not found", k.noun, id)
	}
	if err != nil {
		return zero, fmt.Errorf("get %s %s: %w", k.noun, id, err)
	}
	return v, nil
}
