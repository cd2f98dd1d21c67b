package action

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/runnel-ci/runnel/internal/spec"
)

// goBuildScript is the fixed POSIX sh script of actions/go-build@v1.
//
//go:embed scripts/go-build.sh
var goBuildScript string

var (
	// goVersionArg is what go_version accepts: 1.25, 1.25.3, 1.26rc1, with an
	// optional "go" prefix.
	goVersionArg = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+|rc[0-9]+|beta[0-9]+)?$`) })
	// goTarget is the shape of a GOOS or GOARCH value; the go command itself
	// says which combinations exist.
	goTarget = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+$`) })
)

// GoBuild is actions/go-build@v1: `go build` (action build, the default) or
// `go test` (action test) with the Go toolchain installed on the machine. It
// never downloads a toolchain (GOTOOLCHAIN=local); go_version only checks what
// is installed.
type GoBuild struct{}

// Info implements Action.
func (GoBuild) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          "actions/go-build@v1",
		Description:   "Builds (action build) or tests (action test) Go packages with the installed Go toolchain (nothing is downloaded).",
		Actions:       []string{"build", "test"},
		DefaultAction: "build",
		Inputs: []spec.ActionInput{
			{Name: "packages", Description: "Package patterns to build or test: a list, or one string of space-separated patterns.", Default: "./..."},
			{Name: "output", Description: "File (one package) or directory ending in / (several) to write the binaries to (go build -o); action build only."},
			{Name: "ldflags", Description: "Linker flags (-ldflags), e.g. \"-s -w -X main.version=1.2.3\"."},
			{Name: "goos", Description: "Target operating system (GOOS), e.g. linux, windows, darwin.", Default: "the machine's"},
			{Name: "goarch", Description: "Target architecture (GOARCH), e.g. amd64, arm64.", Default: "the machine's"},
			{Name: "go_version", Description: "Go version that must be installed: \"1.25\" accepts any go1.25.x, \"1.25.3\" only that release. The step fails on a mismatch.", Default: "any"},
		},
	}
}

// Prepare implements Action.
func (g GoBuild) Prepare(call Call) (Exec, error) {
	a, err := checkCall(g.Info(), call)
	if err != nil {
		return Exec{}, err
	}
	packages, err := a.stringList("packages", []string{"./..."})
	if err != nil {
		return Exec{}, err
	}
	for i, p := range packages {
		if strings.HasPrefix(p, "-") {
			return Exec{}, fmt.Errorf("args.packages[%d]: must be a package pattern, not a flag, got %q", i, p)
		}
	}
	output, err := a.str("output", "")
	if err != nil {
		return Exec{}, err
	}
	if strings.ContainsRune(output, 0) {
		return Exec{}, fmt.Errorf("args.output: must be a path, got %q", output)
	}
	if output != "" && a.action != "build" {
		return Exec{}, fmt.Errorf("args.output: applies to action build only (go test writes no binary), got %q with action %s", output, a.action)
	}
	ldflags, err := a.str("ldflags", "")
	if err != nil {
		return Exec{}, err
	}
	env := map[string]string{
		"INPUT_PACKAGES": strings.Join(packages, " "),
		"INPUT_OUTPUT":   output,
		"INPUT_LDFLAGS":  ldflags,
		"INPUT_ACTION":   a.action,
		"GOTOOLCHAIN":    "local",
	}
	for _, name := range []string{"goos", "goarch"} {
		v, err := a.str(name, "")
		if err != nil {
			return Exec{}, err
		}
		if v != "" && !goTarget().MatchString(v) {
			return Exec{}, fmt.Errorf("args.%s: must be a Go target name of lowercase letters and digits (see `go tool dist list`), got %q", name, v)
		}
		env["INPUT_"+strings.ToUpper(name)] = v
	}
	version, err := a.str("go_version", "")
	if err != nil {
		return Exec{}, fmt.Errorf("%w (a YAML number loses digits: 1.20 reads as 1.2)", err)
	}
	if v := strings.TrimPrefix(version, "go"); version != "" && !goVersionArg().MatchString(v) {
		return Exec{}, fmt.Errorf(`args.go_version: must be a Go version such as "1.25" or "1.25.3", got %q`, version)
	}
	version = strings.TrimPrefix(version, "go")
	env["INPUT_GO_VERSION"] = version
	return Exec{Shell: "sh", Script: goBuildScript, Env: env}, nil
}
