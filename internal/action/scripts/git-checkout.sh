# actions/git-checkout@v1 (POSIX sh). Arguments arrive in INPUT_* variables,
# already validated by Prepare; nothing is ever spliced into this text.
set -eu
me='actions/git-checkout@v1'
die() {
	printf '%s: %s\n' "$me" "$*" >&2
	exit 1
}

# redact hides a password or token in a URL's user info before it is printed.
redact() {
	printf '%s' "$1" | sed 's#^\([A-Za-z][A-Za-z0-9+.-]*://\)[^/@]*:[^/@]*@#\1***@#'
}

# is_commit_id: a full SHA-1 or SHA-256 object name.
is_commit_id() {
	case $1 in '' | *[!0-9a-f]*) return 1 ;; esac
	[ ${#1} -eq 40 ] || [ ${#1} -eq 64 ]
}

# is_hex_prefix: could be an abbreviated commit ID.
is_hex_prefix() {
	case $1 in '' | *[!0-9a-f]*) return 1 ;; esac
	[ ${#1} -ge 7 ]
}

# fetch_all fetches every branch and tag with full history.
fetch_all() {
	if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
		git fetch --prune --tags --unshallow origin '+refs/heads/*:refs/remotes/origin/*'
	else
		git fetch --prune --tags origin '+refs/heads/*:refs/remotes/origin/*'
	fi
}

command -v git >/dev/null 2>&1 || die "git is not installed (not found in PATH $PATH); install git where this job runs"
[ -n "${RUNNEL_WORKSPACE:-}" ] || die "RUNNEL_WORKSPACE is not set; this script must run as a runnel step"

repo=${INPUT_REPO:-}
ref=${INPUT_REF:-}
if [ -z "$repo" ]; then
	repo=${RUNNEL_REPO_URL:-}
	[ -n "$repo" ] || die "no repository to check out: set args.repo (this pipeline has no source repository, so RUNNEL_REPO_URL is empty)"
fi
# The run's commit and ref only make sense for the run's own repository.
if [ -z "$ref" ] && [ "$repo" = "${RUNNEL_REPO_URL:-}" ]; then
	ref=${RUNNEL_COMMIT:-${RUNNEL_REF:-}}
fi
case $repo in -*) die "invalid repository \"$repo\": must not start with '-'" ;; esac
case $ref in -*) die "invalid ref \"$ref\": must not start with '-'" ;; esac
depth=${INPUT_DEPTH:-1}
case $depth in '' | *[!0-9]*) die "invalid depth \"$depth\": must be a non-negative integer" ;; esac

dest=$RUNNEL_WORKSPACE
[ -z "${INPUT_PATH:-}" ] || dest=$RUNNEL_WORKSPACE/$INPUT_PATH
mkdir -p -- "$dest"
cd -- "$dest"

printf '%s: checking out %s of %s into %s\n' "$me" "${ref:-the default branch}" "$(redact "$repo")" "$dest"
git -c init.defaultBranch=main init -q

# A credential (args.credential) arrives in the environment only: git gets a
# token from a credential helper that reads the environment (only for the
# credential's host), an SSH key from a private file. Neither is ever on a
# command line, in a URL or in the repository's configuration.
if [ -n "${RUNNEL_GIT_PASSWORD:-}" ]; then
	helper='!f() { test "$1" = get || exit 0; printf "username=%s\npassword=%s\n" "${RUNNEL_GIT_USERNAME:-x-access-token}" "$RUNNEL_GIT_PASSWORD"; }; f'
	if [ -n "${RUNNEL_GIT_CREDENTIAL_URL:-}" ]; then
		key="credential.$RUNNEL_GIT_CREDENTIAL_URL.helper"
	else
		key=credential.helper
	fi
	# An empty value first resets helpers from other configuration files.
	# No hooks run while the token is in the environment: a hook left in the
	# checkout by an earlier step could read it.
	export GIT_CONFIG_COUNT=3 GIT_CONFIG_KEY_0="$key" GIT_CONFIG_VALUE_0='' GIT_CONFIG_KEY_1="$key" GIT_CONFIG_VALUE_1="$helper" \
		GIT_CONFIG_KEY_2=core.hooksPath GIT_CONFIG_VALUE_2=/dev/null
fi
if [ -n "${RUNNEL_GIT_SSH_KEY:-}" ]; then
	# The key file lives in the checkout's .git directory (removed with the
	# workspace when the job ends, whatever happens) and is deleted as soon as
	# the script ends, also when it is stopped.
	keyfile=$(mktemp "$dest/.git/runnel-git-key.XXXXXX")
	trap 'rm -f "$keyfile"' EXIT
	trap 'exit 143' TERM INT HUP
	chmod 600 "$keyfile"
	printf '%s\n' "$RUNNEL_GIT_SSH_KEY" >"$keyfile"
	export GIT_SSH_COMMAND="ssh -i $keyfile -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new" \
		GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.hooksPath GIT_CONFIG_VALUE_0=/dev/null
fi
if git remote get-url origin >/dev/null 2>&1; then
	git remote set-url origin "$repo"
else
	git remote add origin "$repo"
fi

target=${ref:-HEAD}
if [ "$depth" -eq 0 ]; then
	fetch_all
	if (is_commit_id "$ref" || is_hex_prefix "$ref") && commit=$(git rev-parse --verify --quiet "$ref^{commit}"); then
		:
	else
		# Not on a branch or tag (or not a commit ID): fetch it by name.
		git fetch origin "$target"
		commit=$(git rev-parse --verify "FETCH_HEAD^{commit}")
	fi
elif git fetch --depth="$depth" origin "$target"; then
	commit=$(git rev-parse --verify "FETCH_HEAD^{commit}")
elif is_commit_id "$ref" || is_hex_prefix "$ref"; then
	# Servers without uploadpack.allowReachableSHA1InWant refuse a commit ID.
	printf '%s: could not fetch %s directly; fetching the full history instead\n' "$me" "$ref"
	fetch_all
	commit=$(git rev-parse --verify --quiet "$ref^{commit}") ||
		die "commit $ref not found in $(redact "$repo")"
else
	die "could not fetch \"$ref\" from $(redact "$repo") (see git's message above)"
fi

git -c advice.detachedHead=false checkout -q --detach "$commit"
git log -1 --format="$me: checked out %H (%s)"
if [ -n "${RUNNEL_OUTPUT:-}" ]; then
	printf 'commit=%s\n' "$commit" >>"$RUNNEL_OUTPUT"
fi
