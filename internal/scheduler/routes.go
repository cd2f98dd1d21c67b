package scheduler

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/runnel-ci/runnel/internal/spec"
)

// RouteKey is the canonical, stored form of a job's runsOn: "" for a job any
// agent may take, else compact JSON — an object of exact label matches
// (`{"os":"linux","pool":"a"}`, keys sorted) or a list of selector expressions
// (`["!gpu","pool=a"]`, sorted and de-duplicated). Equal requirements give
// equal keys, so the queue can be grouped by key and each distinct key is
// matched against an agent's labels once.
func RouteKey(r *spec.RunsOn) string {
	if r == nil {
		return ""
	}
	if r.Selectors != nil {
		sels := make([]string, 0, len(r.Selectors))
		for _, s := range r.Selectors {
			if s = strings.TrimSpace(s); s != "" {
				sels = append(sels, s)
			}
		}
		sort.Strings(sels)
		sels = slices.Compact(sels)
		if len(sels) == 0 {
			return ""
		}
		b, _ := json.Marshal(sels)
		return string(b)
	}
	if len(r.Labels) == 0 {
		return ""
	}
	b, _ := json.Marshal(r.Labels) // encoding/json sorts map keys
	return string(b)
}

// route is a parsed route key.
type route struct {
	labels    map[string]string
	selectors []spec.Selector
	err       error
}

func parseRoute(key string) route {
	var r route
	switch {
	case key == "":
	case strings.HasPrefix(key, "{"):
		if err := json.Unmarshal([]byte(key), &r.labels); err != nil {
			r.err = fmt.Errorf("runsOn %s: %v", key, err)
		}
	case strings.HasPrefix(key, "["):
		var sels []string
		if err := json.Unmarshal([]byte(key), &sels); err != nil {
			r.err = fmt.Errorf("runsOn %s: %v", key, err)
			break
		}
		for _, s := range sels {
			sel, err := spec.ParseSelector(s)
			if err != nil {
				r.err = err
				break
			}
			r.selectors = append(r.selectors, sel)
		}
	default:
		r.err = fmt.Errorf("runsOn %q: not a label map or selector list", key)
	}
	return r
}

func (r route) matches(labels map[string]string) bool {
	if r.err != nil {
		return false
	}
	for k, v := range r.labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, s := range r.selectors {
		if !s.Matches(labels) {
			return false
		}
	}
	return true
}

// routeCache parses each route key once.
type routeCache struct {
	mu sync.Mutex
	m  map[string]route
}

func (c *routeCache) get(key string) route {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[key]; ok {
		return r
	}
	if c.m == nil || len(c.m) > 10000 {
		c.m = map[string]route{}
	}
	r := parseRoute(key)
	c.m[key] = r
	return r
}

// Matches reports whether an agent with labels may take a job whose route
// key is key.
func (c *routeCache) Matches(key string, labels map[string]string) bool {
	return c.get(key).matches(labels)
}

// labelSignature identifies a label set: agents with equal labels accept
// the same jobs, so the dispatcher groups waiting claimers by it.
func labelSignature(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	return b.String()
}
