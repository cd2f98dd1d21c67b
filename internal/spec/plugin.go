package spec

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

// DockerUsesPrefix starts a `uses` that runs a container image as a step (a
// plugin) instead of naming a catalog action.
const DockerUsesPrefix = "docker://"

// Pull policies of a job's pullPolicy; "" means PullIfNotPresent.
const (
	PullNever        = "never"
	PullIfNotPresent = "if-not-present"
	PullAlways       = "always"
)

// PullPolicies lists the accepted values of pullPolicy.
var PullPolicies = []string{PullNever, PullIfNotPresent, PullAlways}

// PluginImage returns the image of a `uses: docker://IMAGE` step and true, or
// "" and false when uses names a catalog action.
func PluginImage(uses string) (string, bool) {
	return strings.CutPrefix(uses, DockerUsesPrefix)
}

// PluginImages returns the images of a job's docker:// steps, in step order
// and without repeats.
func (j *Job) PluginImages() []string {
	var out []string
	for _, st := range j.Steps {
		if img, ok := PluginImage(st.Uses); ok && img != "" && !contains(out, img) {
			out = append(out, img)
		}
	}
	return out
}

// CheckImageRef validates a container image reference (name[:tag][@digest]),
// as Docker reads it.
func CheckImageRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("empty image reference")
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Errorf("invalid image reference %q: %v", ref, err)
	}
	return nil
}

// PluginEnvName is the environment variable a plugin step's argument becomes
// (the Drone convention): PLUGIN_ and the name in upper case, with every
// character other than a letter, digit or '_' replaced by '_'.
func PluginEnvName(arg string) string {
	var b strings.Builder
	b.WriteString("PLUGIN_")
	for _, r := range strings.ToUpper(arg) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// PluginEnvValue formats an evaluated argument of a plugin step for its
// environment variable: strings as they are, numbers and booleans in their
// usual text form, null as "", lists of scalars joined with commas, and other
// lists and mappings as JSON.
func PluginEnvValue(v any) (string, error) {
	if s, ok := pluginScalar(v); ok {
		return s, nil
	}
	if list, ok := v.([]any); ok {
		parts := make([]string, 0, len(list))
		scalars := true
		for _, e := range list {
			s, ok := pluginScalar(e)
			if !ok {
				scalars = false
				break
			}
			parts = append(parts, s)
		}
		if scalars {
			return strings.Join(parts, ","), nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("cannot turn %T into an environment variable: %v", v, err)
	}
	return string(b), nil
}

func pluginScalar(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}
