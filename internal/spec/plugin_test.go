package spec_test

import (
	"reflect"
	"testing"

	"github.com/runnel-ci/runnel/internal/spec"
)

// TestPullPolicy: pullPolicy accepts never, if-not-present and always, and
// explains any other value.
func TestPullPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		err    string
	}{
		{"", ""},
		{"never", ""},
		{"if-not-present", ""},
		{"always", ""},
		{"Always", `p.yaml:4:17: jobs[0].pullPolicy: invalid pullPolicy "Always" (did you mean "always"?); accepted: never, if-not-present, always`},
		{"ifnotpresent", `invalid pullPolicy "ifnotpresent" (did you mean "if-not-present"?); accepted: never, if-not-present, always`},
		{"sometimes", `invalid pullPolicy "sometimes"`},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			src := "namespace: a\njobs:\n  - name: a\n    pullPolicy: " + tc.policy + "\n    image: alpine:3\n    steps: [{run: x}]\n"
			if tc.policy == "" {
				src = "namespace: a\njobs:\n  - name: a\n    image: alpine:3\n    steps: [{run: x}]\n"
			}
			p, errs := parse(t, src)
			if tc.err == "" {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors: %v", errs)
				}
				if p.Jobs[0].PullPolicy != tc.policy {
					t.Errorf("pullPolicy = %q", p.Jobs[0].PullPolicy)
				}
				return
			}
			assertErrors(t, errs, tc.err)
		})
	}
}

// TestPluginSteps: docker:// steps bypass the action catalog; their image
// reference and args are checked.
func TestPluginSteps(t *testing.T) {
	p, errs := parse(t, `namespace: a
jobs:
  - name: a
    steps:
      - uses: docker://plugins/s3:1.2
        args: {bucket: b, dry-run: true, files: [a, b], target: "${{ trigger.ref }}"}
      - uses: docker://registry.example.com:5000/team/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      - uses: docker://alpine
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := p.Jobs[0].PluginImages(); len(got) != 3 || got[0] != "plugins/s3:1.2" || got[2] != "alpine" {
		t.Errorf("PluginImages = %q", got)
	}
	for _, tc := range []struct{ name, step, err string }{
		{"no image", "{uses: 'docker://'}", `uses "docker://" names no image`},
		{"bad reference", "{uses: 'docker://Alpine:3'}", `docker://Alpine:3: invalid image reference "Alpine:3"`},
		{"expression", "{uses: 'docker://alpine:${{ trigger.ref }}'}", "cannot contain expressions"},
		{"action field", "{uses: 'docker://alpine', action: build}", "action applies only to catalog actions"},
		{"shell", "{uses: 'docker://alpine', shell: bash}", "shell applies only to run steps"},
		{"colliding args", "{uses: 'docker://alpine', args: {dry-run: 1, dry_run: 2}}", `args "dry-run" and "dry_run" both become PLUGIN_DRY_RUN`},
		{"bad expression", "{uses: 'docker://alpine', args: {x: '${{ nope }}'}}", `unknown name "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parse(t, "namespace: a\njobs: [{name: a, steps: ["+tc.step+"]}]\n")
			assertErrors(t, errs, tc.err)
		})
	}
}

func TestPluginEnv(t *testing.T) {
	names := map[string]string{"bucket": "PLUGIN_BUCKET", "dry-run": "PLUGIN_DRY_RUN", "a.b c": "PLUGIN_A_B_C", "Mixed_9": "PLUGIN_MIXED_9"}
	for in, want := range names {
		if got := spec.PluginEnvName(in); got != want {
			t.Errorf("PluginEnvName(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"text", "text"},
		{nil, ""},
		{true, "true"},
		{int64(42), "42"},
		{3.0, "3"},
		{2.5, "2.5"},
		{[]any{"a", int64(1), false}, "a,1,false"},
		{[]any{"a", map[string]any{"k": "v"}}, `["a",{"k":"v"}]`},
		{map[string]any{"b": int64(1), "a": []any{"x"}}, `{"a":["x"],"b":1}`},
	} {
		got, err := spec.PluginEnvValue(tc.v)
		if err != nil || got != tc.want {
			t.Errorf("PluginEnvValue(%#v) = %q, %v; want %q", tc.v, got, err, tc.want)
		}
	}
	if !reflect.DeepEqual(spec.PullPolicies, []string{"never", "if-not-present", "always"}) {
		t.Errorf("PullPolicies = %q", spec.PullPolicies)
	}
}
