// Package expr owns the ${{ … }} expression language of pipeline definitions:
// parsing templates, static checks against the contexts a field may use, and
// evaluation. It wraps github.com/expr-lang/expr rather than implementing an
// evaluator: expr-lang gives us a tested parser, a type checker that knows the
// Env structs, and a fast bytecode VM. What this package adds is the
// GitHub-Actions-like surface users expect and error messages that point at
// the right byte of the pipeline file.
//
// # Templates and conditions
//
// A template is text with ${{ <expression> }} segments, e.g.
//
//	build-${{ trigger.branch }}-${{ run.number }}
//
// "$${{" is a literal "${{". The "}}" that ends a segment is the first one
// outside string literals (and not closing a "{" opened in the segment), so
// ${{ format('{0}}}', 'a') }} is one segment. A template that is exactly one
// segment (whitespace around it allowed) can yield a typed value
// (Template.EvalValue); otherwise values are turned into text:
//
//   - strings as they are, bools as true/false;
//   - numbers without exponent, and integral floats without a decimal
//     point (fromJSON gives float64, and 3.0 should print as 3);
//   - nil as the empty string;
//   - lists, maps and structs as compact JSON.
//
// A condition (the `if` field) is one expression, bare or wrapped whole in
// ${{ }}. If it calls none of success(), failure(), always(), cancelled(), it
// is evaluated as success() && (expression), so units after a failure are
// skipped unless their condition asks otherwise. Results that are not bool
// are judged by truthiness: false, nil, "" and 0 are false.
//
// # Language
//
// Expressions are expr-lang syntax: == != < && || ! ?: and, or, not, in,
// string literals in ' " or `, lists [1, 2], maps {a: 1}, and expr-lang's
// builtins (len, lower, upper, trim, split, filter, map…). The top-level names
// are the contexts trigger, variables, env, matrix, pipeline, run, job, steps,
// needs, secrets (see Env). Functions added on top:
//
//	success() failure() always() cancelled()   status, only in conditions
//	contains(haystack, needle)   substring of a string, element of a list, key of a map
//	startsWith(s, prefix)  endsWith(s, suffix)
//	format("{0}-{1}", a, b)      "{{" and "}}" are literal braces
//	join(list, sep)              sep defaults to ","
//	toJSON(v)                    compact JSON
//	fromJSON(s)
//	hashFiles('go.sum', '**/package-lock.json')   SHA-256 over the matching workspace files ("" if none); steps only
//
// All comparisons are case-sensitive.
//
// Two forms that expr-lang does not accept are rewritten before compiling
// (token-aware, never inside string literals):
//
//   - contains, startsWith and endsWith are infix operators in expr-lang
//     ("abc" contains "b"). The call form contains("abc", "b") is also
//     accepted: where an operand is expected, contains( is a call.
//   - Dashes in member names: steps.go-build.outputs.bin means
//     steps["go-build"].outputs.bin. After a member ".", a "-" directly
//     followed by a letter or digit continues the name. Write subtraction
//     with spaces: run.number - 1 (run.number-1 is the member "number-1").
//
// Member access is nil-safe: a missing key is nil (the empty string as text),
// and members of nil are nil, so steps.x.outputs.missing is "".
//
// # Checks
//
// ParseTemplate and ParseCondition report syntax and type errors. Whether a
// name may be used depends on the field, so that is Check's job, given a
// Scope: which contexts are available, which variables, matrix axes, earlier
// steps and needed jobs exist, and whether status functions are allowed.
// Unknown names, unknown fields of trigger/run/job/pipeline/steps/needs, and
// unknown functions are also reported by Check (such an expression is not
// compiled, and evaluating it returns the same error). Every error is an
// *Error with the byte offset in the string that was parsed, so callers can
// turn it into file:line:col.
//
// # Performance
//
// Every segment is compiled once; evaluation runs the compiled program on a
// pooled VM with the *Env as environment. Status functions read env.Status:
// success() is compiled as a call __success($env), which receives the Env of
// the evaluation.
package expr
