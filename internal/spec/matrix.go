package spec

import (
	"fmt"
	"strconv"
)

// Combination is one expansion of a matrix: axis name → value, with the keys in
// the order the axes were declared.
type Combination struct {
	Keys   []string
	Values map[string]any
}

// ExpandMatrix returns the combinations of a matrix: the cartesian product of the
// axes in declaration order, minus excluded combinations, plus include entries.
// An include entry whose axis values match existing combinations adds its other
// keys to them (original axis values are never overwritten; values added by an
// earlier include may be); otherwise it is a combination of its own. At most limit
// combinations are returned (limit+1 tells the caller it was exceeded).
func ExpandMatrix(m *Matrix, limit int) []Combination {
	var out []Combination
	axisSet := map[string]bool{}
	var keys []string
	for _, a := range m.Axes {
		axisSet[a.Name] = true
		keys = append(keys, a.Name)
	}
	if len(m.Axes) > 0 && RawCombinations(m) <= MaxRawCombinations {
		idx := make([]int, len(m.Axes))
		for {
			for _, a := range m.Axes {
				if len(a.Values) == 0 {
					goto includes
				}
			}
			c := Combination{Keys: append([]string{}, keys...), Values: make(map[string]any, len(keys))}
			for i, a := range m.Axes {
				c.Values[a.Name] = a.Values[idx[i]]
			}
			if !excluded(c.Values, m.Exclude) {
				out = append(out, c)
				if len(out) > limit {
					return out
				}
			}
			// Advance the odometer, last axis fastest.
			i := len(idx) - 1
			for i >= 0 {
				idx[i]++
				if idx[i] < len(m.Axes[i].Values) {
					break
				}
				idx[i] = 0
				i--
			}
			if i < 0 {
				break
			}
		}
	}
includes:
	original := len(out)
	for _, inc := range m.Include {
		matched := false
		for ci := range out[:original] {
			c := &out[ci]
			ok := true
			for k, v := range inc {
				if axisSet[k] && !sameValue(c.Values[k], v) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			matched = true
			for _, k := range sortedKeys(inc) {
				if !axisSet[k] {
					if _, exists := c.Values[k]; !exists {
						c.Keys = append(c.Keys, k)
					}
					c.Values[k] = inc[k]
				}
			}
		}
		if !matched {
			c := Combination{Values: map[string]any{}}
			for _, k := range keys {
				if v, ok := inc[k]; ok {
					c.Keys = append(c.Keys, k)
					c.Values[k] = v
				}
			}
			for _, k := range sortedKeys(inc) {
				if !axisSet[k] {
					c.Keys = append(c.Keys, k)
					c.Values[k] = inc[k]
				}
			}
			out = append(out, c)
			if len(out) > limit {
				return out
			}
		}
	}
	return out
}

// MaxRawCombinations bounds the product of the axis sizes (before exclude), so
// expanding a matrix stays cheap whatever exclude removes.
const MaxRawCombinations = 4096

// RawCombinations is the product of the axis sizes, saturating above
// MaxRawCombinations.
func RawCombinations(m *Matrix) int {
	n := 1
	for _, a := range m.Axes {
		n *= max(len(a.Values), 1)
		if n > MaxRawCombinations {
			return MaxRawCombinations + 1
		}
	}
	return n
}

func excluded(vals map[string]any, excludes []map[string]any) bool {
	for _, ex := range excludes {
		if len(ex) == 0 {
			continue
		}
		all := true
		for k, v := range ex {
			if !sameValue(vals[k], v) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// sameValue compares matrix values by their string form, so 1.25 written as a
// number in one place and "1.25" in another are the same value.
func sameValue(a, b any) bool { return MatrixString(a) == MatrixString(b) }

// MatrixString formats a matrix value as it appears in job names and the
// environment.
func MatrixString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}
