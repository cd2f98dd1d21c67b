package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
)

// scenario is one engine test: a pipeline and the outcome it must produce, run on
// the real local backend (real processes).
type scenario struct {
	Pipeline  any               `yaml:"pipeline"`
	Variables map[string]string `yaml:"variables"`
	Trigger   runnel.Trigger    `yaml:"trigger"`
	// CancelOn cancels the run when a log line contains this text.
	CancelOn string `yaml:"cancelOn"`
	Expect   struct {
		Status string `yaml:"status"`
		// Jobs: job ID → status.
		Jobs map[string]string `yaml:"jobs"`
		// Attempts: job ID → attempts.
		Attempts map[string]int `yaml:"attempts"`
		// Steps: "jobID/step" → status.
		Steps map[string]string `yaml:"steps"`
		// Logs: "jobID/step" → substrings that must appear in that step's log.
		Logs map[string][]string `yaml:"logs"`
		// NoLogs: substrings that must appear in no log line.
		NoLogs []string `yaml:"noLogs"`
		// MaxSeconds bounds the run's wall time.
		MaxSeconds float64 `yaml:"maxSeconds"`
	} `yaml:"expect"`
}

type recorder struct {
	mu     sync.Mutex
	logs   map[string][]string
	cancel func()
	on     string
}

func (r *recorder) Event(e engine.Event) {
	if e.Type != engine.EventLog {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := e.JobID + "/" + e.StepName
	r.logs[key] = append(r.logs[key], e.Message)
	if r.on != "" && strings.Contains(e.Message, r.on) && r.cancel != nil {
		r.cancel()
	}
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runScenario(t, file)
		})
	}
}

func runScenario(t *testing.T, file string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var sc scenario
	if err := yaml.Unmarshal(raw, &sc); err != nil {
		t.Fatalf("scenario: %v", err)
	}
	def, err := yaml.Marshal(sc.Pipeline)
	if err != nil {
		t.Fatal(err)
	}
	registry := action.Builtins()
	p, err := spec.Parse(def, spec.Options{File: file, Catalog: registry})
	if err != nil {
		t.Fatalf("definition: %v", err)
	}
	trig := sc.Trigger
	if trig.Type == "" {
		trig.Type, trig.Event = "manual", "manual"
	}
	pl, err := plan.New(plan.Input{Spec: p, Run: expr.Run{ID: "r1", Number: 1}, Trigger: trig, Variables: sc.Variables})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	be, err := local.New(local.Options{Root: t.TempDir(), GracePeriod: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{logs: map[string][]string{}, cancel: cancel, on: sc.CancelOn}
	r := &engine.Runner{Executor: &engine.Executor{Backend: be, Actions: registry}, Concurrency: 4, Observer: rec}
	start := time.Now()
	res := r.Run(ctx, context.Background(), pl)
	elapsed := time.Since(start)

	if string(res.Status) != sc.Expect.Status {
		t.Errorf("run status = %s, want %s", res.Status, sc.Expect.Status)
	}
	jobs := map[string]engine.JobSummary{}
	for _, j := range res.Jobs {
		jobs[j.Job.ID] = j
	}
	for id, want := range sc.Expect.Jobs {
		j, ok := jobs[id]
		if !ok {
			t.Errorf("no job %q; jobs: %v", id, keys(jobs))
			continue
		}
		if string(j.Status) != want {
			t.Errorf("job %s = %s (%s), want %s", id, j.Status, j.Reason, want)
		}
	}
	if len(sc.Expect.Jobs) > 0 && len(sc.Expect.Jobs) != len(jobs) {
		t.Errorf("run has %d jobs %v, scenario expects %d", len(jobs), keys(jobs), len(sc.Expect.Jobs))
	}
	for id, want := range sc.Expect.Attempts {
		if got := jobs[id].Attempts; got != want {
			t.Errorf("job %s attempts = %d, want %d", id, got, want)
		}
	}
	for key, want := range sc.Expect.Steps {
		i := strings.LastIndex(key, "/")
		j, ok := jobs[key[:i]]
		if !ok {
			t.Errorf("no job for step %q", key)
			continue
		}
		found := false
		for _, s := range j.Steps {
			if s.Name == key[i+1:] {
				found = true
				if string(s.Status) != want {
					t.Errorf("step %s = %s (%s), want %s", key, s.Status, s.Error, want)
				}
			}
		}
		if !found {
			t.Errorf("no step %q", key)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for key, subs := range sc.Expect.Logs {
		all := strings.Join(rec.logs[key], "\n")
		for _, s := range subs {
			if !strings.Contains(all, s) {
				t.Errorf("log of %s lacks %q; log:\n%s", key, s, all)
			}
		}
	}
	for _, s := range sc.Expect.NoLogs {
		for key, lines := range rec.logs {
			for _, l := range lines {
				if strings.Contains(l, s) {
					t.Errorf("log of %s contains %q", key, s)
				}
			}
		}
	}
	if sc.Expect.MaxSeconds > 0 && elapsed.Seconds() > sc.Expect.MaxSeconds {
		t.Errorf("run took %s, want at most %.1fs", elapsed, sc.Expect.MaxSeconds)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
