package mask

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	m := New([]string{"hunter22", "s3cr3t-token", "ab", "line-one\nline-two\nx", "  padded-value  "})
	tests := []struct{ in, want string }{
		{"password is hunter22.", "password is ***."},
		{"s3cr3t-token and hunter22", "*** and ***"},
		{"ab stays: too short", "ab stays: too short"},
		{"key: line-two", "key: ***"},
		{"x alone is short", "x alone is short"},
		{"got padded-value here", "got *** here"},
		{"nothing here", "nothing here"},
	}
	for _, tt := range tests {
		if got := m.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if New([]string{"ab", ""}) != nil {
		t.Error("values without a pattern should give a nil Masker")
	}
	var nilM *Masker
	if nilM.String("hunter22") != "hunter22" || nilM.Map(nil) != nil {
		t.Error("a nil Masker masks nothing")
	}
}

// TestWriterSplits writes a stream in every possible pair of pieces, and in
// random small pieces, and checks the output equals masking the whole.
func TestWriterSplits(t *testing.T) {
	secrets := []string{"hunter22", "hunter2222-longer", "tok_ABCDEF"}
	m := New(secrets)
	input := "start hunter22 mid hunter2222-longer x tok_ABCDEF\nhunte hunter2 tok_ABCDE end tok_ABCDEF"
	want := m.String(input)
	if strings.Contains(want, "hunter22") || strings.Contains(want, "tok_ABCDEF") {
		t.Fatalf("String leaks: %q", want)
	}
	for cut := 0; cut <= len(input); cut++ {
		var out bytes.Buffer
		w := m.Writer(&out)
		w.Write([]byte(input[:cut]))
		w.Write([]byte(input[cut:]))
		w.Flush()
		if out.String() != want {
			t.Fatalf("cut at %d: %q, want %q", cut, out.String(), want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var out bytes.Buffer
		w := m.Writer(&out)
		for s := input; s != ""; {
			n := min(len(s), 1+r.IntN(5))
			w.Write([]byte(s[:n]))
			s = s[n:]
		}
		w.Flush()
		if out.String() != want {
			t.Fatalf("random pieces: %q, want %q", out.String(), want)
		}
	}
}

// TestWriterHoldsBackLittle: only a possible start of a secret waits.
func TestWriterHoldsBackLittle(t *testing.T) {
	m := New([]string{"hunter22"})
	var out bytes.Buffer
	w := m.Writer(&out)
	w.Write([]byte("line one\nhunt"))
	if out.String() != "line one\n" {
		t.Fatalf("passed on %q", out.String())
	}
	w.Write([]byte("ing season\n"))
	if out.String() != "line one\nhunting season\n" {
		t.Fatalf("passed on %q", out.String())
	}
	w.Write([]byte("hunter"))
	w.Flush()
	if out.String() != "line one\nhunting season\nhunter" {
		t.Fatalf("after flush %q", out.String())
	}
}

func FuzzWriter(f *testing.F) {
	f.Add("abc hunter22 def", 3)
	f.Add("hunter2hunter22", 7)
	f.Fuzz(func(t *testing.T, s string, cut int) {
		m := New([]string{"hunter22", "unter2"})
		if cut < 0 || cut > len(s) {
			cut = len(s) / 2
		}
		var out bytes.Buffer
		w := m.Writer(&out)
		w.Write([]byte(s[:cut]))
		w.Write([]byte(s[cut:]))
		w.Flush()
		if out.String() != m.String(s) {
			t.Fatalf("stream %q, string %q", out.String(), m.String(s))
		}
	})
}
