// Command exec benchmarks the runnel binary as a command-line tool, against
// baselines measured in the same run, so the ratios hold on a noisy shared
// machine:
//
//   - start-up: `runnel version`, wall time and peak RSS (targets ≤ 10 ms,
//     ≤ 15 MiB);
//   - a 1-step `echo hi` pipeline: wall time and peak RSS (targets ≤ 15 ms,
//     or ≤ 3 × one bare spawn of bash where spawning is that slow, and
//     ≤ 20 MiB);
//   - per-step overhead: a 100-step `echo hi` pipeline against 100 plain
//     `bash -c 'echo hi'` spawned from Go, and the same with `shell: sh`
//     against `sh -c 'echo hi'` (target: ratio ≤ 1.2 for both);
//   - validate of a 1,000-job file (target ≤ 100 ms).
//
// Rounds interleave the runs under comparison; medians are reported. With
// -compare BIN, a second binary (an earlier build) is measured in the same
// rounds, for a before/after from one run.
//
//	go run ./bench/exec [-rounds 15] [-steps 100] [-compare BIN]
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
	rounds := flag.Int("rounds", 15, "measurement rounds (after one warm-up round)")
	steps := flag.Int("steps", 100, "steps in the overhead pipelines")
	bin := flag.String("bin", "", "runnel binary to measure (default: build ./cmd/runnel as make build does)")
	compare := flag.String("compare", "", "a second runnel binary measured in the same rounds (before/after)")
	flag.Parse()
	if err := run(*rounds, *steps, *bin, *compare); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// sample is one measured command: wall time and peak RSS (KiB).
type sample struct {
	d   time.Duration
	rss int64
}

// series collects the samples of one measurement.
type series map[string][]sample

func (s series) add(name string, x sample) { s[name] = append(s[name], x) }

func (s series) wall(name string) time.Duration {
	ds := make([]time.Duration, len(s[name]))
	for i, x := range s[name] {
		ds[i] = x.d
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func (s series) rss(name string) float64 {
	rs := make([]int64, len(s[name]))
	for i, x := range s[name] {
		rs[i] = x.rss
	}
	slices.Sort(rs)
	return float64(rs[len(rs)/2]) / 1024
}

func run(rounds, steps int, bin, compare string) error {
	dir, err := os.MkdirTemp("", "runnel-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "runnel")
		build := exec.Command("go", "build", "-o", bin, "./cmd/runnel")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	bins := map[string]string{"": bin}
	if compare != "" {
		bins["compare "] = compare
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			panic(err)
		}
		return p
	}
	pipeline := func(shell string) string {
		var b strings.Builder
		b.WriteString("namespace: bench\njobs:\n  - name: j\n    steps:\n")
		for i := 0; i < steps; i++ {
			b.WriteString("      - run: echo hi\n")
			if shell != "" {
				b.WriteString("        shell: " + shell + "\n")
			}
		}
		return b.String()
	}
	manyBash := write("many-bash.yaml", pipeline(""))
	manySh := write("many-sh.yaml", pipeline("sh"))
	one := write("one.yaml", "namespace: bench\njobs:\n  - name: j\n    steps:\n      - run: echo hi\n")
	var b strings.Builder
	b.WriteString("namespace: bench\nvariables: {v: a}\njobs:\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "  - name: job-%d\n    env: {A: '%d'}\n    matrix: {x: [1, 2]}\n    steps:\n      - name: s\n        run: echo ${{ matrix.x }} ${{ variables.v }}\n", i, i)
	}
	big := write("big.yaml", b.String())

	s := series{}
	spawnLoop := func(shell string) (time.Duration, error) {
		t0 := time.Now()
		for i := 0; i < steps; i++ {
			if err := exec.Command(shell, "-c", "echo hi").Run(); err != nil {
				return 0, err
			}
		}
		return time.Since(t0), nil
	}
	for r := 0; r < rounds+1; r++ {
		warm := r == 0 // page cache, build cache
		add := func(name string, x sample) {
			if !warm {
				s.add(name, x)
			}
		}
		for _, shell := range []string{"bash", "sh"} {
			d, err := spawnLoop(shell)
			if err != nil {
				return err
			}
			add(shell+" loop", sample{d: d})
		}
		for i := 0; i < 5; i++ {
			x, err := timed("bash", "-c", "echo hi")
			if err != nil {
				return err
			}
			add("bash once", x)
		}
		for prefix, bin := range bins {
			for _, m := range []struct {
				name string
				args []string
			}{
				{"version", []string{"version"}},
				{"exec one", []string{"exec", "-f", one}},
				{"exec bash", []string{"exec", "-f", manyBash}},
				{"exec sh", []string{"exec", "-f", manySh}},
				{"validate", []string{"validate", "-q", big}},
			} {
				x, err := timed(bin, m.args...)
				if err != nil {
					return err
				}
				add(prefix+m.name, x)
			}
		}
	}

	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, %s/%s, %s; %d rounds, medians; %s\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), rounds, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("| measurement | median | target |\n|---|---|---|\n")
	spawn := s.wall("bash once")
	oneTarget := max(15*time.Millisecond, 3*spawn)
	fmt.Printf("| one `bash -c 'echo hi'` spawned and awaited (baseline) | %s | |\n", ms(spawn))
	fmt.Printf("| %d × `bash -c 'echo hi'` from Go (baseline) | %s | |\n", steps, ms(s.wall("bash loop")))
	fmt.Printf("| %d × `sh -c 'echo hi'` from Go (baseline) | %s | |\n", steps, ms(s.wall("sh loop")))
	for _, prefix := range []string{"", "compare "} {
		if _, ok := bins[prefix]; !ok {
			continue
		}
		label := func(s string) string {
			if prefix != "" {
				return s + " — compare binary"
			}
			return s
		}
		target := func(t string) string {
			if prefix != "" {
				return ""
			}
			return t
		}
		fmt.Printf("| %s | **%s**, %.1f MiB | %s |\n", label("`runnel version`: wall, peak RSS"), ms(s.wall(prefix+"version")), s.rss(prefix+"version"), target("≤ 10 ms, ≤ 15 MiB"))
		fmt.Printf("| %s | **%s**, %.1f MiB | %s |\n", label("`runnel exec` of a 1-step pipeline: wall, peak RSS"), ms(s.wall(prefix+"exec one")), s.rss(prefix+"exec one"),
			target(fmt.Sprintf("≤ %s, ≤ 20 MiB", ms(oneTarget))))
		fmt.Printf("| %s | %s; ratio **%.2f×** | %s |\n", label(fmt.Sprintf("`runnel exec` of %d `echo hi` steps (bash, the default)", steps)), ms(s.wall(prefix+"exec bash")),
			float64(s.wall(prefix+"exec bash"))/float64(s.wall("bash loop")), target("≤ 1.20×"))
		fmt.Printf("| %s | %s; ratio **%.2f×** | %s |\n", label(fmt.Sprintf("`runnel exec` of %d `echo hi` steps with `shell: sh`", steps)), ms(s.wall(prefix+"exec sh")),
			float64(s.wall(prefix+"exec sh"))/float64(s.wall("sh loop")), target("≤ 1.20×"))
		fmt.Printf("| %s | **%s**, %.1f MiB | %s |\n", label("`runnel validate` of a 1,000-job file (2,000 matrix jobs)"), ms(s.wall(prefix+"validate")), s.rss(prefix+"validate"), target("≤ 100 ms"))
	}
	return nil
}

// timed runs a command and returns its wall time and peak RSS.
func timed(name string, args ...string) (sample, error) {
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	var maxrss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = ru.Maxrss
	}
	return sample{d: d, rss: maxrss}, nil
}
