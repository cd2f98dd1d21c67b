package backend

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseOutputs(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     map[string]string
		warnings []string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "simple", in: "a=1\nb=two words\n", want: map[string]string{"a": "1", "b": "two words"}},
		{name: "no trailing newline", in: "a=1", want: map[string]string{"a": "1"}},
		{name: "crlf", in: "a=1\r\nb=2\r\n", want: map[string]string{"a": "1", "b": "2"}},
		{name: "empty value", in: "a=\n", want: map[string]string{"a": ""}},
		{name: "value with equals and heredoc marker", in: "a=b=c<<d\n", want: map[string]string{"a": "b=c<<d"}},
		{name: "blank lines skipped", in: "\n  \na=1\n\n", want: map[string]string{"a": "1"}},
		{name: "last wins", in: "a=1\na=2\n", want: map[string]string{"a": "2"}},
		{name: "key charset", in: "_a-B9=x\n", want: map[string]string{"_a-B9": "x"}},
		{
			name: "heredoc",
			in:   "json<<EOF\n{\n  \"a\": 1\n}\nEOF\nafter=yes\n",
			want: map[string]string{"json": "{\n  \"a\": 1\n}", "after": "yes"},
		},
		{name: "empty heredoc", in: "a<<X\nX\n", want: map[string]string{"a": ""}},
		{name: "heredoc with crlf", in: "a<<X\r\nl1\r\nl2\r\nX\r\n", want: map[string]string{"a": "l1\nl2"}},
		{name: "heredoc keeps blank and KEY=V lines", in: "a<<X\n\nb=1\nX\n", want: map[string]string{"a": "\nb=1"}},
		{name: "heredoc delimiter with equals", in: "a<<X=Y\nv\nX=Y\n", want: map[string]string{"a": "v"}},
		{
			name:     "no separator",
			in:       "a=1\njunk\nb=2\n",
			want:     map[string]string{"a": "1", "b": "2"},
			warnings: []string{`ignoring malformed line 2 in $RUNNEL_OUTPUT: expected KEY=VALUE or KEY<<DELIMITER, got "junk"`},
		},
		{
			name:     "bad keys",
			in:       "1a=x\n=y\na b=z\nok=1\n",
			want:     map[string]string{"ok": "1"},
			warnings: []string{`ignoring malformed line 1 in $RUNNEL_OUTPUT: invalid key "1a" (want [A-Za-z_][A-Za-z0-9_-]*)`, `ignoring malformed line 2 in $RUNNEL_OUTPUT: invalid key "" (want [A-Za-z_][A-Za-z0-9_-]*)`, `ignoring malformed line 3 in $RUNNEL_OUTPUT: invalid key "a b" (want [A-Za-z_][A-Za-z0-9_-]*)`},
		},
		{
			name:     "unterminated heredoc swallows the rest",
			in:       "a=1\nb<<EOF\nline\nc=3\n",
			want:     map[string]string{"a": "1"},
			warnings: []string{`ignoring malformed line 2 in $RUNNEL_OUTPUT: heredoc for "b" is not closed by a line "EOF"; the rest of the file is ignored`},
		},
		{
			name:     "empty delimiter",
			in:       "b<<\nc=3\n",
			want:     map[string]string{"c": "3"},
			warnings: []string{`ignoring malformed line 1 in $RUNNEL_OUTPUT: heredoc for "b" has an empty delimiter`},
		},
		{
			name:     "bad heredoc key skips its body",
			in:       "9<<X\nv=1\nX\nok=2\n",
			want:     map[string]string{"ok": "2"},
			warnings: []string{`ignoring malformed line 1 in $RUNNEL_OUTPUT: invalid key "9" (want [A-Za-z_][A-Za-z0-9_-]*)`},
		},
		{
			name:     "long malformed line is clipped",
			in:       strings.Repeat("é", 40) + "\n",
			want:     map[string]string{},
			warnings: []string{`ignoring malformed line 1 in $RUNNEL_OUTPUT: expected KEY=VALUE or KEY<<DELIMITER, got "` + strings.Repeat("é", 30) + `…"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, warnings := ParseOutputs(strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("outputs: got %q, want %q", got, tc.want)
			}
			if !reflect.DeepEqual(warnings, tc.warnings) {
				t.Errorf("warnings: got %q, want %q", warnings, tc.warnings)
			}
		})
	}
}

func TestParseOutputsSizeLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("first=1\n")
	for b.Len() < MaxOutputFileSize-10 {
		b.WriteString("pad=" + strings.Repeat("x", 1000) + "\n")
	}
	b.WriteString("cut=" + strings.Repeat("y", 100) + "\nlate=1\n")
	got, warnings := ParseOutputs(strings.NewReader(b.String()))
	if got["first"] != "1" || got["pad"] == "" {
		t.Fatalf("lost outputs before the limit: first=%q", got["first"])
	}
	if _, ok := got["cut"]; ok {
		t.Errorf("the line cut by the limit must be dropped, got cut=%q", got["cut"])
	}
	if _, ok := got["late"]; ok {
		t.Errorf("a line past the limit was read")
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "larger than 1048576 bytes") {
		t.Errorf("warnings: %q", warnings)
	}
}

// failingReader returns some data, then an error.
type failingReader struct{ data io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.data.Read(p)
	if err == io.EOF {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func TestParseOutputsReadError(t *testing.T) {
	got, warnings := ParseOutputs(&failingReader{strings.NewReader("a=1\n")})
	if got["a"] != "1" {
		t.Errorf("outputs read before the error are kept: got %q", got)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "disk on fire") {
		t.Errorf("warnings: %q", warnings)
	}
}
