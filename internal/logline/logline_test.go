package logline

import (
	"bytes"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// collect runs input through a Splitter, written in pieces of at most chunk
// bytes (chunk <= 0: one Write), then flushed.
func collect(maxLine int, input string, chunk int) []string {
	lines := []string{}
	s := NewSplitter(maxLine, func(l string) { lines = append(lines, l) })
	b := []byte(input)
	if chunk <= 0 {
		chunk = len(b) + 1
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		if w, err := s.Write(b[:n]); w != n || err != nil {
			panic("Write must consume everything")
		}
		b = b[n:]
	}
	s.Flush()
	return lines
}

func TestSplitter(t *testing.T) {
	tests := []struct {
		name    string
		maxLine int
		input   string
		want    []string
	}{
		{"empty", 0, "", []string{}},
		{"one line", 0, "hello\n", []string{"hello"}},
		{"no trailing newline", 0, "hello", []string{"hello"}},
		{"empty lines", 0, "\n\na\n\n", []string{"", "", "a", ""}},
		{"crlf", 0, "a\r\nb\r\n", []string{"a", "b"}},
		{"only one cr stripped", 0, "a\r\r\n", []string{"a\r"}},
		{"lone cr kept", 0, "a\rb\n", []string{"a\rb"}},
		{"cr at end of stream kept", 0, "a\r", []string{"a\r"}},
		{"invalid byte", 0, "a\xffb\n", []string{"a\uFFFDb"}},
		{"invalid run collapses", 0, "a\xff\xfe\xfdb\n", []string{"a\uFFFDb"}},
		{"truncated sequence before newline", 0, "a\xe2\x82\nb", []string{"a\uFFFD", "b"}},
		{"truncated sequence at end", 0, "a\xe2\x82", []string{"a\uFFFD"}},
		{"valid multibyte", 0, "héllo €𝄞\n", []string{"héllo €𝄞"}},
		{"exactly max", 4, "abcd\nefgh", []string{"abcd", "efgh"}},
		{"chunked", 4, "abcdefghij\nk", []string{"abcd", "efgh", "ij", "k"}},
		{"chunk before crlf", 4, "abcd\r\n", []string{"abcd"}},
		{"chunk keeps runes whole", 5, "ab€€\n", []string{"ab€", "€"}},
		{"chunk with 4-byte runes", 4, "𝄞𝄞a\n", []string{"𝄞", "𝄞", "a"}},
		{"tiny max raised to UTFMax", 1, "€abcde", []string{"€a", "bcde"}},
		{"replacement counted in max", 4, "a\xffb\xffc\n", []string{"a\uFFFD", "b\uFFFD", "c"}},
		{"invalid run across chunk boundary", 4, "abc\xff\xffd", []string{"abc", "\uFFFDd"}},
		{"encoded U+FFFD is not collapsed", 0, "\xff\uFFFD\xff", []string{"\uFFFD\uFFFD\uFFFD"}},
		{"surrogate half is invalid", 0, "\xed\xa0\x80x", []string{"\uFFFDx"}},
	}
	for _, tc := range tests {
		for _, chunk := range []int{0, 1, 2, 3, 5} {
			got := collect(tc.maxLine, tc.input, chunk)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s (writes of %d): got %q, want %q", tc.name, chunk, got, tc.want)
			}
		}
	}
}

// TestSplitterMatchesToValidUTF8 checks the documented equivalence with
// strings.ToValidUTF8 on lines that need no chunking.
func TestSplitterMatchesToValidUTF8(t *testing.T) {
	in := "ok\n\xc3(\n\xa0\xa1\n\xe2\x28\xa1\n\xf0\x90\x28\xbc\n\xf8\xa1\xa1\xa1\xa1\n"
	got := collect(0, in, 1)
	var want []string
	for _, l := range strings.Split(strings.TrimSuffix(in, "\n"), "\n") {
		want = append(want, strings.ToValidUTF8(l, "\uFFFD"))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSplitterFlushTwiceAndReuse(t *testing.T) {
	var lines []string
	s := NewSplitter(0, func(l string) { lines = append(lines, l) })
	s.Write([]byte("a"))
	s.Flush()
	s.Flush()
	s.Write([]byte("b\nc"))
	s.Flush()
	if want := []string{"a", "b", "c"}; !reflect.DeepEqual(lines, want) {
		t.Fatalf("got %q, want %q", lines, want)
	}
}

// TestSplitterHugeLine feeds 10 MB without a newline and checks the chunks, the
// time (linear) and the memory (bounded by maxLine, not by the input).
func TestSplitterHugeLine(t *testing.T) {
	const total = 10 << 20
	const maxLine = 64 << 10
	block := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	var n, count, maxLen int
	s := NewSplitter(maxLine, func(l string) {
		n += len(l)
		count++
		maxLen = max(maxLen, len(l))
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for written := 0; written < total; written += len(block) {
		s.Write(block)
	}
	s.Flush()
	runtime.ReadMemStats(&after)
	if n != total || count != total/maxLine || maxLen != maxLine {
		t.Fatalf("got %d bytes in %d lines (longest %d), want %d bytes in %d lines of %d",
			n, count, maxLen, total, total/maxLine, maxLine)
	}
	// Every emitted line is a fresh string of maxLine bytes; anything far above
	// the emitted strings themselves would mean the input was buffered.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*total {
		t.Fatalf("allocated %d bytes for %d bytes of input", alloc, total)
	}
	if after.HeapInuse > before.HeapInuse+16*maxLine+8<<20 {
		t.Fatalf("heap grew from %d to %d", before.HeapInuse, after.HeapInuse)
	}
}

// checkInvariants verifies what FuzzSplitter promises for any input, any
// maxLine and any way of cutting the input into Writes.
func checkInvariants(t *testing.T, input []byte, maxLine int, cuts []byte) {
	var lines []string
	s := NewSplitter(maxLine, func(l string) { lines = append(lines, l) })
	rest := input
	for i := 0; len(rest) > 0; i++ {
		n := len(rest)
		if i < len(cuts) {
			n = min(int(cuts[i])%17, len(rest))
		}
		s.Write(rest[:n])
		rest = rest[n:]
	}
	s.Flush()

	limit := max(maxLine, utf8.UTFMax)
	if maxLine <= 0 {
		limit = DefaultMaxLine
	}
	for _, l := range lines {
		if !utf8.ValidString(l) {
			t.Fatalf("line %q is not valid UTF-8", l)
		}
		if len(l) > limit {
			t.Fatalf("line of %d bytes exceeds maxLine %d", len(l), limit)
		}
		if strings.Contains(l, "\n") {
			t.Fatalf("line %q contains a newline", l)
		}
	}

	// Without chunking, the lines are exactly ToValidUTF8 of the raw lines with
	// the "\r\n" ending removed.
	// raw holds the input's lines without their "\n" or "\r\n" ending; an
	// unterminated last line keeps a trailing '\r'.
	raw := strings.SplitAfter(string(input), "\n")
	if raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	for i, r := range raw {
		if strings.HasSuffix(r, "\n") {
			raw[i] = strings.TrimSuffix(strings.TrimSuffix(r, "\n"), "\r")
		}
	}
	chunked := false
	want := make([]string, 0, len(raw))
	for _, r := range raw {
		if len(r) > limit/3 { // replacement characters may triple the length
			chunked = true
		}
		want = append(want, strings.ToValidUTF8(r, "\uFFFD"))
	}
	if !chunked && !reflect.DeepEqual(lines, want) && !(len(lines) == 0 && len(want) == 0) {
		t.Fatalf("got %q, want %q", lines, want)
	}

	// For valid UTF-8 input, chunks only ever cut between characters: joining
	// every emitted piece reproduces the input without its line endings.
	if utf8.Valid(input) {
		var joined strings.Builder
		for _, r := range raw {
			joined.WriteString(r)
		}
		if got := strings.Join(lines, ""); got != joined.String() {
			t.Fatalf("pieces %q do not reassemble %q", lines, joined.String())
		}
		if !chunked {
			text := strings.Join(lines, "\n")
			if len(input) > 0 && input[len(input)-1] == '\n' {
				text += "\n"
			}
			if want := strings.ReplaceAll(string(input), "\r\n", "\n"); text != want {
				t.Fatalf("lines joined with newlines give %q, want %q", text, want)
			}
		}
	}
}

// FuzzSplitter checks, for any input, maxLine and Write boundaries: every line
// is valid UTF-8, contains no '\n' and is at most maxLine bytes (no slack: the
// limit applies after replacement); without chunking the lines equal
// strings.ToValidUTF8 of the raw lines minus "\r\n"; and valid UTF-8 input is
// reproduced byte for byte by the pieces, and by the lines joined with '\n'
// when nothing was chunked.
func FuzzSplitter(f *testing.F) {
	seeds := []struct {
		in      string
		maxLine int
		cuts    string
	}{
		{"", 0, ""},
		{"hello\nworld\n", 0, ""},
		{"a\r\nb\r\r\n\r", 3, "\x01\x02"},
		{"\xff\xfe\n\xe2\x82\xac\xe2\x82", 4, "\x01\x01\x01"},
		{"héllo wörld €€€ 𝄞𝄞𝄞\n", 5, "\x03\x05\x07"},
		{strings.Repeat("x", 100) + "\n" + strings.Repeat("é", 50), 7, ""},
		{"\xed\xa0\x80\xf4\x90\x80\x80\xc0\xaf", 4, "\x01"},
		{"a\xffb\xffc\xffd\n", 4, ""},
	}
	for _, s := range seeds {
		f.Add([]byte(s.in), s.maxLine, []byte(s.cuts))
	}
	f.Fuzz(func(t *testing.T, input []byte, maxLine int, cuts []byte) {
		if maxLine > 1<<20 || maxLine < -1 {
			maxLine %= 64
		}
		checkInvariants(t, input, maxLine, cuts)
	})
}
