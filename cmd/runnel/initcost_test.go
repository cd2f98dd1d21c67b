package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Package initialisation is paid by every start of the binary: runnel
// version, every exec and validate, every agent and server. These limits keep
// a dependency that does heavy work at init (one compiled JSON schemas there:
// 150 ms and 33 MB at each start) from slipping in unnoticed.
const (
	maxInitMillis = 2.0
	maxInitBytes  = 2 << 20
)

// initExceptions are dependencies whose init is over the limits above and
// that the binary cannot do without; each must still stay under its own
// limit. Keep the list short, and say why.
var initExceptions = map[string]struct {
	millis float64
	bytes  int64
	why    string
}{
	// Compiles its reference-grammar regexps at init (about 1 ms and
	// 400 KB); the Moby client uses it for every image name.
	"github.com/distribution/reference": {5, 1 << 20, "image reference grammar, used by the Moby client"},
	// Compiles its URL regexps at init (about 1 ms).
	"github.com/go-git/go-git/v5/internal/url": {5, 1 << 20, "Git URL parsing, used by go-git"},
}

// TestInitCost runs the binary with GODEBUG=inittrace=1 and fails on any
// package whose initialisation takes over 2 ms or allocates over 2 MB. Times
// are the least of several starts: a busy machine only makes them longer.
func TestInitCost(t *testing.T) {
	type cost struct {
		millis float64
		bytes  int64
	}
	least := map[string]cost{}
	const starts = 5
	for i := 0; i < starts; i++ {
		cmd := exec.Command(binary, "version")
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("runnel version: %v\n%s", err, stderr.String())
		}
		n := 0
		sc := bufio.NewScanner(&stderr)
		for sc.Scan() {
			// init PKG @T ms, C ms clock, B bytes, A allocs
			f := strings.Fields(sc.Text())
			if len(f) < 9 || f[0] != "init" || f[5] != "ms" || f[8] != "bytes," {
				continue
			}
			ms, err1 := strconv.ParseFloat(f[4], 64)
			b, err2 := strconv.ParseInt(f[7], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("unexpected inittrace line %q", sc.Text())
			}
			n++
			c, seen := least[f[1]]
			if !seen || ms < c.millis {
				c.millis = ms
			}
			if !seen || b < c.bytes {
				c.bytes = b
			}
			least[f[1]] = c
		}
		if n == 0 {
			t.Fatalf("no inittrace lines from runnel version:\n%s", stderr.String())
		}
	}
	var total float64
	for pkg, c := range least {
		total += c.millis
		maxMs, maxB := maxInitMillis, int64(maxInitBytes)
		if ex, ok := initExceptions[pkg]; ok {
			maxMs, maxB = ex.millis, ex.bytes
		}
		if c.millis > maxMs || c.bytes > maxB {
			t.Errorf("package %s: init takes %.2f ms and allocates %d bytes (limit %.0f ms, %d bytes): do the work when it is used, not at package init",
				pkg, c.millis, c.bytes, maxMs, maxB)
		}
	}
	for pkg := range initExceptions {
		if _, ok := least[pkg]; !ok {
			t.Errorf("initExceptions lists %s, which is no longer in the binary: remove it", pkg)
		}
	}
	t.Logf("%d packages initialise in %.1f ms in all (least of %d starts each)", len(least), total, starts)
}
