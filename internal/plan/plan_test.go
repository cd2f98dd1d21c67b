package plan_test

import (
	"strings"
	"testing"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
)

func mustSpec(t *testing.T, src string) *spec.Pipeline {
	t.Helper()
	p, err := spec.Parse([]byte(src), spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVariables(t *testing.T) {
	def := mustSpec(t, `namespace: t
variables:
  env: dev
  region: {default: eu, options: [eu, us]}
  token: {required: true}
jobs: [{name: a, steps: [{run: x}]}]
`)
	tests := []struct {
		name  string
		given map[string]string
		want  map[string]string
		err   string
	}{
		{"defaults and required", map[string]string{"token": "t"}, map[string]string{"env": "dev", "region": "eu", "token": "t"}, ""},
		{"override", map[string]string{"token": "t", "env": "prod", "region": "us"}, map[string]string{"env": "prod", "region": "us", "token": "t"}, ""},
		{"required missing", nil, nil, `variable "token" is required`},
		{"not an option", map[string]string{"token": "t", "region": "mars"}, nil, `variable "region": "mars" is not one of eu, us`},
		{"undeclared", map[string]string{"token": "t", "nope": "1"}, nil, `variable "nope" is not declared in the definition (declared: env, region, token)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := plan.New(plan.Input{Spec: def, Variables: tt.given})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if p.Base.Variables[k] != v {
					t.Errorf("%s = %q, want %q", k, p.Base.Variables[k], v)
				}
			}
		})
	}
}

func TestJobsAndNeeds(t *testing.T) {
	def := mustSpec(t, `namespace: t
stages:
  - name: build
    jobs:
      - name: test
        matrix: {go: ["1.24", "1.25"]}
        steps: [{run: x}]
      - name: pack
        needs: test
        steps: [{run: x}]
  - name: ship
    jobs: [{name: deploy, timeout: 5m, retry: {max: 2, delay: 3s}, steps: [{run: x}]}]
`)
	p, err := plan.New(plan.Input{Spec: def, Run: expr.Run{ID: "r", Number: 7}, Trigger: runnel.Trigger{Type: "manual"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			ids = append(ids, j.ID+"|"+j.Name)
		}
	}
	want := "build/test[go=1.24]|test (1.24) build/test[go=1.25]|test (1.25) build/pack|pack ship/deploy|deploy"
	if got := strings.Join(ids, " "); got != want {
		t.Fatalf("jobs\n got %s\nwant %s", got, want)
	}
	pack := p.Jobs["build/pack"]
	if strings.Join(pack.Needs, ",") != "build/test[go=1.24],build/test[go=1.25]" || len(pack.NeedNames["test"]) != 2 {
		t.Fatalf("needs %v %v", pack.Needs, pack.NeedNames)
	}
	deploy := p.Jobs["ship/deploy"]
	if deploy.Timeout.String() != "5m0s" || deploy.RetryMax != 2 || deploy.RetryWait.String() != "3s" {
		t.Fatalf("deploy %+v", deploy)
	}
	if pack.Timeout != plan.DefaultJobTimeout {
		t.Fatalf("default timeout %s", pack.Timeout)
	}
	if p.Base.Pipeline.Namespace != "t" || p.Base.Run.Number != 7 {
		t.Fatalf("base %+v", p.Base)
	}
}
