package expr

import (
	"testing"

	"github.com/runnel-ci/runnel"
)

func benchEnv() *Env {
	return &Env{
		Trigger:   runnel.Trigger{Branch: "main", Ref: "refs/heads/main", Event: "push"},
		Run:       Run{ID: "r1", Number: 42},
		Variables: map[string]string{"region": "eu-west-1"},
		Steps:     map[string]StepResult{"go-build": {Outputs: map[string]string{"bin": "/out/app"}, Outcome: "success"}},
	}
}

func BenchmarkTemplateEval(b *testing.B) {
	t, err := ParseTemplate("build-${{ trigger.branch }}-${{ run.number }}")
	if err != nil {
		b.Fatal(err)
	}
	env := benchEnv()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Eval(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTemplateEvalSteps(b *testing.B) {
	t, err := ParseTemplate("${{ steps.go-build.outputs.bin }} ${{ format('{0}/{1}', variables.region, trigger.branch) }}")
	if err != nil {
		b.Fatal(err)
	}
	env := benchEnv()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Eval(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConditionEval(b *testing.B) {
	c, err := ParseCondition("${{ trigger.branch == 'main' && contains(trigger.ref, 'heads') }}")
	if err != nil {
		b.Fatal(err)
	}
	env := benchEnv()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Eval(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConditionEvalStatus(b *testing.B) {
	c, err := ParseCondition("failure() || steps.go-build.outcome == 'success'")
	if err != nil {
		b.Fatal(err)
	}
	env := benchEnv()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Eval(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseTemplate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTemplate("build-${{ trigger.branch }}-${{ run.number }}"); err != nil {
			b.Fatal(err)
		}
	}
}
