package worker

import (
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: "(no labels)"},
		{in: " os=linux , arch=amd64,", want: "arch=amd64,os=linux"},
		{in: "gpu=", want: "gpu="},
		{in: "team/x=a.b_c-d", want: "team/x=a.b_c-d"},
		{in: "os", err: `label "os": want key=value`},
		{in: "=linux", err: `label "=linux": want key=value`},
		{in: "os=linux,os=mac", err: "key os given twice"},
		{in: "os=li nux", err: "invalid label value"},
		{in: "o s=linux", err: "invalid label key"},
	} {
		got, err := ParseLabels(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLabels(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseLabels(%q): %v", tc.in, err)
			continue
		}
		if s := FormatLabels(got); s != tc.want {
			t.Errorf("FormatLabels(ParseLabels(%q)) = %q, want %q", tc.in, s, tc.want)
		}
	}
}
