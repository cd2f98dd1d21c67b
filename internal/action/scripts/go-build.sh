# actions/go-build@v1 (POSIX sh). Arguments arrive in INPUT_* variables,
# already validated by Prepare; nothing is ever spliced into this text.
set -eu
me='actions/go-build@v1'
die() {
	printf '%s: %s\n' "$me" "$*" >&2
	exit 1
}

command -v go >/dev/null 2>&1 ||
	die "go is not installed (not found in PATH $PATH); runnel downloads nothing: install Go where this job runs"
# Never let the go command download another toolchain.
GOTOOLCHAIN=local
export GOTOOLCHAIN

have=$(go env GOVERSION) || die "'go env GOVERSION' failed"
have=${have%% *} # drop experiment suffixes such as " X:nodwarf5"
want=${INPUT_GO_VERSION:-}
if [ -n "$want" ]; then
	# "1.25" accepts go1.25 and any go1.25.x; "1.25.3" or "1.26rc1" only itself.
	case $want in
	*.*.* | *rc* | *beta*) [ "$have" = "go$want" ] && ok=yes || ok= ;;
	*) case $have in "go$want" | "go$want".*) ok=yes ;; *) ok= ;; esac ;;
	esac
	[ -n "$ok" ] ||
		die "go_version $want was requested but $have is installed; runnel downloads nothing: install Go $want or change go_version"
fi

if [ -n "${INPUT_GOOS:-}" ]; then
	GOOS=$INPUT_GOOS
	export GOOS
fi
if [ -n "${INPUT_GOARCH:-}" ]; then
	GOARCH=$INPUT_GOARCH
	export GOARCH
fi

# The step's action: build (go build, the default) or test (go test).
action=${INPUT_ACTION:-build}
case $action in
build | test) ;;
*) die "unknown action '$action' (accepted: build, test)" ;;
esac
set -- "$action"
[ -z "${INPUT_OUTPUT:-}" ] || set -- "$@" -o "$INPUT_OUTPUT"
[ -z "${INPUT_LDFLAGS:-}" ] || set -- "$@" "-ldflags=$INPUT_LDFLAGS"
# INPUT_PACKAGES is split on whitespace on purpose (Prepare rejected patterns
# containing whitespace); globbing is off so that patterns stay as written.
set -f
# shellcheck disable=SC2086
set -- "$@" ${INPUT_PACKAGES:-./...}
set +f

printf '%s: %s for %s/%s\n' "$me" "$have" "$(go env GOOS)" "$(go env GOARCH)"
printf '+ go'
printf ' %s' "$@"
printf '\n'
exec go "$@"
