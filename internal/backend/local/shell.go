package local

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// defaultPath is searched for interpreters when the step environment has no
// PATH, as a POSIX shell would.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// interpreter returns the argv that runs script according to shell (see
// backend.Step.Shell). Interpreters are looked up in path, the PATH the step
// itself will see, not runnel's own. Templates are split on whitespace and run
// without a shell, so "{0}" never goes through shell parsing.
func interpreter(shell, script, path string) ([]string, error) {
	switch shell {
	case "":
		if bash, err := lookPath("bash", path); err == nil {
			return []string{bash, "--noprofile", "--norc", "-eo", "pipefail", script}, nil
		}
		sh, err := lookPath("sh", path)
		if err != nil {
			return nil, fmt.Errorf("default shell: neither bash nor sh found in PATH %q", path)
		}
		return []string{sh, "-e", script}, nil
	case "bash":
		bash, err := lookPath("bash", path)
		if err != nil {
			return nil, fmt.Errorf("shell %q: %w", shell, err)
		}
		return []string{bash, "--noprofile", "--norc", "-eo", "pipefail", script}, nil
	case "sh":
		sh, err := lookPath("sh", path)
		if err != nil {
			return nil, fmt.Errorf("shell %q: %w", shell, err)
		}
		return []string{sh, "-e", script}, nil
	}
	argv := strings.Fields(shell)
	if len(argv) == 0 {
		return nil, fmt.Errorf("shell %q: empty command template", shell)
	}
	substituted := false
	for i, a := range argv {
		if strings.Contains(a, "{0}") {
			argv[i] = strings.ReplaceAll(a, "{0}", script)
			substituted = true
		}
	}
	if !substituted {
		argv = append(argv, script)
	}
	prog, err := lookPath(argv[0], path)
	if err != nil {
		return nil, fmt.Errorf("shell %q: %w", shell, err)
	}
	argv[0] = prog
	return argv, nil
}

// scriptPlaceholder stands for the script in the argv templates that
// Backend.interpreter caches.
const scriptPlaceholder = "\x00script\x00"

// interpreter is the package's interpreter with the interpreter's path looked
// up once per shell and PATH: a lookup stats every PATH directory up to the
// one that has it, for every step. forget drops a cached entry (its program
// could not be started).
func (b *Backend) interpreter(shell, script, path string) (argv []string, forget func(), err error) {
	key := shell + "\x00" + path
	b.mu.Lock()
	tmpl, ok := b.interpreters[key]
	b.mu.Unlock()
	if !ok {
		if tmpl, err = interpreter(shell, scriptPlaceholder, path); err != nil {
			return nil, nil, err
		}
		b.mu.Lock()
		b.interpreters[key] = tmpl
		b.mu.Unlock()
	}
	argv = make([]string, len(tmpl))
	for i, a := range tmpl {
		argv[i] = strings.ReplaceAll(a, scriptPlaceholder, script)
	}
	forget = func() {
		b.mu.Lock()
		delete(b.interpreters, key)
		b.mu.Unlock()
	}
	return argv, forget, nil
}

// lookPath finds an executable like exec.LookPath, but in the given PATH value.
// Names containing a slash are returned as they are (relative ones resolve
// against the working directory when started). Empty PATH entries, which mean
// the current directory, are skipped: runnel's own directory is no place to
// find a step's interpreter.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable not found in PATH %q", name, path)
}

// stepEnv builds a step's environment: base, overlaid with the step's variables,
// overlaid with forced (the backend's own variables, which a step cannot
// override). CI=true is added unless the step sets CI itself. Later entries of
// base replace earlier ones with the same name.
func stepEnv(base []string, step, forced map[string]string) ([]string, error) {
	env := make([]string, 0, len(base)+len(step)+len(forced)+1)
	index := map[string]int{}
	set := func(k, v string) {
		if i, ok := index[k]; ok {
			env[i] = k + "=" + v
			return
		}
		index[k] = len(env)
		env = append(env, k+"="+v)
	}
	for _, kv := range base {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		set(k, v)
	}
	set("CI", "true")
	for _, k := range sortedKeys(step) {
		v := step[k]
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("step env: invalid variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("step env: variable %s contains a NUL byte", k)
		}
		set(k, v)
	}
	for _, k := range sortedKeys(forced) {
		set(k, forced[k])
	}
	return env, nil
}

// envPath returns the PATH of env, or defaultPath when it has none.
func envPath(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return defaultPath
}

// sortedKeys returns m's keys in order, so that environments are deterministic.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
