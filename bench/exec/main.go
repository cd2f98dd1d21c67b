// Command exec benchmarks `runnel exec` and `runnel validate` against baselines
// measured in the same run, so the ratios hold on a noisy shared machine:
//
//   - per-step overhead: a 100-step `echo hi` pipeline vs 100 plain
//     `bash -c 'echo hi'` spawns (target: ratio ≤ 1.3);
//   - a 1-step pipeline: wall time and peak RSS (targets: < 15 ms, < 20 MiB);
//   - validate of a 1,000-job file (target: < 200 ms).
//
// Rounds interleave the runs under comparison; medians are reported.
//
//	go run ./bench/exec [-rounds 15] [-steps 100]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	rounds := flag.Int("rounds", 15, "measurement rounds")
	steps := flag.Int("steps", 100, "steps in the overhead pipeline")
	flag.Parse()
	if err := run(*rounds, *steps); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(rounds, steps int) error {
	dir, err := os.MkdirTemp("", "runnel-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "runnel")
	build := exec.Command("go", "build", "-o", bin, "./cmd/runnel")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			panic(err)
		}
		return p
	}
	var b strings.Builder
	b.WriteString("namespace: bench\njobs:\n  - name: j\n    steps:\n")
	for i := 0; i < steps; i++ {
		b.WriteString("      - run: echo hi\n")
	}
	many := write("many.yaml", b.String())
	one := write("one.yaml", "namespace: bench\njobs:\n  - name: j\n    steps:\n      - run: echo hi\n")
	b.Reset()
	b.WriteString("namespace: bench\nvariables: {v: a}\njobs:\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "  - name: job-%d\n    env: {A: '%d'}\n    matrix: {x: [1, 2]}\n    steps:\n      - name: s\n        run: echo ${{ matrix.x }} ${{ variables.v }}\n", i, i)
	}
	big := write("big.yaml", b.String())

	var spawns, manyRuns, oneRuns, validates []time.Duration
	var rss []int64
	for r := 0; r < rounds+1; r++ {
		t0 := time.Now()
		for i := 0; i < steps; i++ {
			if err := exec.Command("bash", "-c", "echo hi").Run(); err != nil {
				return err
			}
		}
		d1 := time.Since(t0)
		d2, _, err := timed(bin, "exec", "-f", many)
		if err != nil {
			return err
		}
		d3, maxrss, err := timed(bin, "exec", "-f", one)
		if err != nil {
			return err
		}
		d4, _, err := timed(bin, "validate", "-q", big)
		if err != nil {
			return err
		}
		if r == 0 {
			continue // warm-up: page cache, build cache
		}
		spawns, manyRuns, oneRuns, validates = append(spawns, d1), append(manyRuns, d2), append(oneRuns, d3), append(validates, d4)
		rss = append(rss, maxrss)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, %s/%s, %s; %d rounds, medians\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), rounds)
	fmt.Printf("| measurement | median | target |\n|---|---|---|\n")
	fmt.Printf("| %d × `bash -c 'echo hi'` (baseline) | %s | |\n", steps, ms(median(spawns)))
	fmt.Printf("| `runnel exec` of a %d-step `echo hi` pipeline | %s | |\n", steps, ms(median(manyRuns)))
	fmt.Printf("| ratio exec / baseline | **%.2f×** | ≤ 1.30× |\n", float64(median(manyRuns))/float64(median(spawns)))
	fmt.Printf("| `runnel exec` of a 1-step pipeline, wall | **%s** | < 15 ms |\n", ms(median(oneRuns)))
	fmt.Printf("| `runnel exec` of a 1-step pipeline, peak RSS | **%.1f MiB** | < 20 MiB |\n", float64(medianInt(rss))/1024)
	fmt.Printf("| `runnel validate` of a 1,000-job file (2,000 matrix jobs) | **%s** | < 200 ms |\n", ms(median(validates)))
	return nil
}

// timed runs a command and returns its wall time and peak RSS in KiB.
func timed(name string, args ...string) (time.Duration, int64, error) {
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	var maxrss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = ru.Maxrss
	}
	return d, maxrss, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
