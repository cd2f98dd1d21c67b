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

// idKind describes one kind of id for messages (apikit.IDKind).
type idKind = apikit.IDKind

var (
	pipelineID = idKind{Param: "pipelineId", Prefix: "pl_", Noun: "pipeline"}
	runID      = idKind{Param: "runId", Prefix: "run_", Noun: "run"}
	stepRunID  = idKind{Param: "stepRunId", Prefix: "sr_", Noun: "step run"}
)

// pathID is apikit.PathID.
func pathID(r *http.Request, k idKind) (string, error) { return apikit.PathID(r, k) }

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
		return zero, apikit.Errorf(http.StatusNotFound, "%s %s not found", k.Noun, id)
	}
	if err != nil {
		return zero, fmt.Errorf("get %s %s: %w", k.Noun, id, err)
	}
	return v, nil
}
