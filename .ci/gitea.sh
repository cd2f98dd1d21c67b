#!/usr/bin/env bash
# Builds Gitea (a Git forge and OAuth2/OIDC provider) for the tests that need a
# real one (internal/testgitea), from the Go module proxy, into a cache outside
# the checkout:
#
#   ${RUNNEL_TEST_CACHE:-$HOME/.cache/runnel-test}/gitea-$VERSION/
#     gitea         the binary (sqlite, no bindata: templates are read from disk)
#     static-root   one line: the module's source directory, Gitea's
#                   [server] STATIC_ROOT_PATH (templates, translations)
#     wrapper/      the module that builds it
#
# code.gitea.io/gitea has replace directives in its go.mod, so `go install`
# refuses it; the wrapper module requires it and copies those replace lines.
# The first build takes about 8 minutes on 2 cores; later runs exit at once.
#
# Usage: .ci/gitea.sh [--force]
set -euo pipefail

VERSION=1.26.0
MODULE=code.gitea.io/gitea
TAGS="sqlite sqlite_unlock_notify"

force=0
[ "${1:-}" = "--force" ] && force=1

cache=${RUNNEL_TEST_CACHE:-$HOME/.cache/runnel-test}/gitea-$VERSION
mkdir -p "$cache"
cd "$cache"

# The wrapper lives outside any workspace; the checkout's settings must not leak in.
export GOWORK=off GOFLAGS=-buildvcs=false

log() { printf 'gitea.sh: %s\n' "$*" >&2; }

ready() { [ -x gitea ] && [ -s static-root ] && [ -d "$(cat static-root)/templates" ]; }
if [ $force = 0 ] && ready; then
	log "Gitea $VERSION is built: $cache/gitea"
	exit 0
fi

# One build at a time (CI and a developer's shell may race).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9
	if [ $force = 0 ] && ready; then
		log "Gitea $VERSION is built: $cache/gitea"
		exit 0
	fi
fi

command -v go >/dev/null 2>&1 || { log "go is not on PATH"; exit 1; }
command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || {
	log "a C compiler is needed (sqlite is cgo): apt-get install gcc"
	exit 1
}

# Gitea's own go.mod, from the module cache (downloaded when missing).
log "downloading $MODULE@v$VERSION (module proxy)"
info=$(go mod download -json "$MODULE@v$VERSION")
field() { printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"'"$1"'": "\(.*\)",\{0,1\}$/\1/p' | head -n 1; }
src=$(field Dir)
gomod=$(field GoMod)
if [ -z "$src" ] || [ ! -f "$gomod" ]; then
	log "go mod download gave no Dir/GoMod:"
	printf '%s\n' "$info" >&2
	exit 1
fi
log "module source: $src"

# The replace directives, both forms: `replace a => b v` and `replace ( ... )`.
replaces=$(awk '
	/^replace[[:space:]]*\(/ { block = 1; next }
	block && /^\)/ { block = 0; next }
	block { sub(/\/\/.*/, ""); if ($0 ~ /=>/) print; next }
	/^replace[[:space:]]/ { sub(/^replace[[:space:]]+/, ""); sub(/\/\/.*/, ""); print }
' "$gomod")
args=()
while read -r line; do
	[ -z "$line" ] && continue
	old=${line%%=>*}
	new=${line#*=>}
	read -r old_path old_ver <<<"$old"
	read -r new_path new_ver <<<"$new"
	case $new_path in
	./* | ../* | /*)
		log "$MODULE has a local-path replace ($line): cannot be built from the proxy"
		exit 1
		;;
	esac
	args+=("-replace=${old_path}${old_ver:+@$old_ver}=${new_path}${new_ver:+@$new_ver}")
	log "replace $old_path${old_ver:+@$old_ver} => $new_path${new_ver:+@$new_ver}"
done <<<"$replaces"

# The wrapper module: requires Gitea, with its replace lines, and imports its
# main package from a file excluded by a build tag (so that `go mod tidy`
# records every dependency the build needs).
rm -rf wrapper
mkdir wrapper
cd wrapper
go mod init runnel.invalid/gitea-build >/dev/null 2>&1
go mod edit -require="$MODULE@v$VERSION" ${args[@]+"${args[@]}"}
cat >tools.go <<EOF
//go:build tools

package tools

import _ "$MODULE"
EOF
log "go mod tidy (wrapper: $cache/wrapper)"
go mod tidy

dir=$(go list -m -f '{{.Dir}}' "$MODULE")
[ -d "$dir/templates" ] || { log "no templates in $dir"; exit 1; }

tmp="$cache/gitea.tmp.$$"
trap 'rm -f "$tmp" "$cache/static-root.tmp.$$"' EXIT
log "go build -tags \"$TAGS\" $MODULE (several minutes the first time)"
start=$(date +%s)
go build -trimpath -tags "$TAGS" \
	-ldflags "-s -w -X 'main.Version=$VERSION' -X 'main.Tags=$TAGS'" \
	-o "$tmp" "$MODULE"
"$tmp" --version >&2
cd "$cache"
printf '%s\n' "$dir" >"static-root.tmp.$$"
mv -f "static-root.tmp.$$" static-root
mv -f "$tmp" gitea
log "built $cache/gitea in $(($(date +%s) - start))s; STATIC_ROOT_PATH=$dir"
