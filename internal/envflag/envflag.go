// Package envflag reads the RUNNEL_* environment variables that give flags
// their defaults, for the commands in cmd/.
package envflag

import (
	"os"
	"strconv"
	"time"
)

// Or is the value of k, or def when k is unset or empty.
func Or(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Int is k as an integer; def when unset or not an integer.
func Int(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

// Bool reads a boolean (1, t, true, 0, f, false…); def when unset or not a
// boolean.
func Bool(k string, def bool) bool {
	if v, err := strconv.ParseBool(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

// Duration is k as a duration ("90s"); def when unset or not a duration.
func Duration(k string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return v
	}
	return def
}
