package api

import (
	"reflect"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/apikit"
)

func reflectType(v any) reflect.Type { return reflect.TypeOf(v).Elem() }

func nowForTest() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newID("pl_")
		if !apikit.IsID(id, "pl_") || len(id) != 23 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}
