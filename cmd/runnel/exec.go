package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agentcmd"
	"github.com/runnel-ci/runnel/internal/artifact"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/spec"
)

// kvFlag collects repeated k=v flags.
type kvFlag struct {
	name string
	m    map[string]string
}

func (f *kvFlag) String() string { return "" }

func (f *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("expected %s KEY=VALUE, got %q", f.name, s)
	}
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[k] = v
	return nil
}

// namesFlag collects repeated names.
type namesFlag []string

func (f *namesFlag) String() string { return "" }

func (f *namesFlag) Set(s string) error {
	*f = append(*f, s)
	return nil
}

type execConfig struct {
	secrets  namesFlag
	file     string
	vars     kvFlag
	env      kvFlag
	workdir  string
	json     bool
	parallel int
	color    bool
}

func cmdExec(args []string, stdout, stderr io.Writer) int {
	cfg := execConfig{vars: kvFlag{name: "--var"}, env: kvFlag{name: "--env"}}
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.file, "f", ".runnel/pipeline.yaml", "pipeline definition `FILE` (YAML or JSON)")
	fs.Var(&cfg.vars, "var", "set a declared variable: `k=v` (repeatable)")
	fs.Var(&cfg.env, "env", "add an environment variable to every step: `K=V` (repeatable)")
	fs.Var(&cfg.secrets, "secret", "make the environment variable `NAME` available as ${{ secrets.NAME }} (repeatable); its value is masked in the output")
	fs.StringVar(&cfg.workdir, "workdir", "", "`DIR` under which each job gets its workspace (kept); default: a temporary directory, removed afterwards")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON event per line instead of text")
	fs.IntVar(&cfg.parallel, "parallel", runtime.NumCPU(), "jobs of a stage that run at once")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: runnel exec [-f FILE] [--var k=v]… [--env K=V]… [--secret NAME]… [--workdir DIR] [--json]\n\nRuns a pipeline on this machine with the local shell backend.\nExit status: 0 success or partial, 1 failed or cancelled, 2 invalid definition or usage.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "runnel exec: unexpected argument %q (the file is given with -f)\n", fs.Arg(0))
		return exitInvalid
	}
	if cfg.parallel < 1 {
		fmt.Fprintln(stderr, "runnel exec: --parallel must be at least 1")
		return exitInvalid
	}
	for k := range cfg.env.m {
		if !validEnvName(k) {
			fmt.Fprintf(stderr, "runnel exec: --env %s: invalid variable name (letters, digits and '_', not starting with a digit)\n", k)
			return exitInvalid
		}
	}
	secrets := map[string]string{}
	for _, name := range cfg.secrets {
		if !validEnvName(name) {
			fmt.Fprintf(stderr, "runnel exec: --secret %s: invalid name (letters, digits and '_', not starting with a digit); the value is read from the environment variable of that name\n", name)
			return exitInvalid
		}
		v, ok := os.LookupEnv(name)
		if !ok {
			fmt.Fprintf(stderr, "runnel exec: --secret %s: the environment variable %s is not set\n", name, name)
			return exitInvalid
		}
		secrets[name] = v
	}
	cfg.color = !cfg.json && isTerminal(stdout) && os.Getenv("NO_COLOR") == ""

	registry := action.Builtins()
	def, err := spec.ParseFile(cfg.file, registry)
	if err != nil {
		printSpecErrors(stderr, err)
		return exitInvalid
	}

	runID := "exec-" + randomHex(4)
	trigger := runnel.Trigger{Type: runnel.TriggerManual, Event: runnel.TriggerManual, Actor: currentUser()}
	repoURL := ""
	if gi, ok := findGit(filepath.Dir(cfg.file)); ok {
		trigger.Ref, trigger.Branch, trigger.Commit = gi.Ref, gi.Branch, gi.Commit
		repoURL = "file://" + gi.Root
	}
	if def.Source != nil && def.Source.RepoURL != "" && !strings.Contains(def.Source.RepoURL, "${{") {
		repoURL = def.Source.RepoURL
	}
	p, err := plan.New(plan.Input{
		Spec:      def,
		Pipeline:  expr.Pipeline{ID: def.Namespace, Name: def.Namespace, Namespace: def.Namespace},
		Run:       expr.Run{ID: runID, Number: 1},
		Trigger:   trigger,
		Variables: cfg.vars.m,
		Secrets:   secrets,
	})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cfg.file, err)
		return exitInvalid
	}

	root := cfg.workdir
	keep := root != ""
	if root == "" {
		root, err = os.MkdirTemp("", "runnel-exec-")
		if err != nil {
			fmt.Fprintln(stderr, "runnel exec: creating a workspace:", err)
			return exitFailed
		}
		defer os.RemoveAll(root)
	} else if err := os.MkdirAll(root, 0o755); err != nil {
		fmt.Fprintln(stderr, "runnel exec: --workdir:", err)
		return exitInvalid
	}
	be, err := local.New(local.Options{Root: root, KeepWorkspaces: keep})
	if err != nil {
		fmt.Fprintln(stderr, "runnel exec:", err)
		return exitFailed
	}

	var out printer
	if cfg.json {
		out = newJSONPrinter(stdout)
	} else {
		out = newTextPrinter(stdout, cfg.color, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hard, hardCancel := context.WithCancel(context.Background())
	defer hardCancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(stderr, "\nrunnel: cancelling the run (steps with always() still run); press Ctrl-C again to stop at once")
				cancel()
				continue
			}
			fmt.Fprintln(stderr, "\nrunnel: stopping at once")
			hardCancel()
			return
		}
	}()

	// Artifacts live for this run; caches as long as the work directory
	// (kept with --workdir, so a later exec restores them).
	// The artifacts directory is made by the first upload (most runs have
	// none); its name is the run's, so a kept --workdir never mixes runs.
	artifacts := filepath.Join(root, ".artifacts-"+runID)
	defer os.RemoveAll(artifacts)
	files := &artifact.Dir{Artifacts: artifacts, Caches: filepath.Join(root, ".caches")}
	r := &engine.Runner{
		Storage:     files.Bind,
		Executor:    &engine.Executor{Backend: be, Actions: registry, Docker: agentcmd.DockerEngine()},
		Concurrency: cfg.parallel,
		Observer:    out,
		ExtraEnv:    cfg.env.m,
		RepoURL:     repoURL,
	}
	flushDone := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				out.Flush()
			case <-flushDone:
				return
			}
		}
	}()
	res := r.Run(ctx, hard, p)
	close(flushDone)
	out.Summary(res)
	switch res.Status {
	case runnel.RunSuccess, runnel.RunPartial:
		return exitOK
	default:
		return exitFailed
	}
}

func validEnvName(k string) bool {
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return k != ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
