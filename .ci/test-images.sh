#!/usr/bin/env bash
# Builds the container images the Docker backend's tests use, locally: no
# registry is needed (nor reachable in CI). Each image is a root file system
# holding Debian's statically linked busybox and a symlink per applet, turned
# into an image with `docker import`.
#
#   runnel-test/busybox:1  busybox, no bash, no /etc/os-release; no entrypoint
#   runnel-test/plugin:1   the same with an entrypoint that prints its working
#                          directory and PLUGIN_* variables and writes
#                          plugin.txt into the working directory
#
# Usage: .ci/test-images.sh [--force]   (without --force, existing images are kept,
# so bump the tags here and in internal/testdocker when their content changes)
# internal/testdocker runs it when a test finds an image missing.
set -euo pipefail

force=0
[ "${1:-}" = "--force" ] && force=1

have() { docker image inspect "$1" >/dev/null 2>&1; }
if [ $force = 0 ] && have runnel-test/busybox:1 && have runnel-test/plugin:1; then
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The busybox binary: from the installed package if there is one, else from
# the downloaded .deb (apt-get download needs no root and installs nothing).
bb=
if [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
	bb=/bin/busybox
fi
if [ -z "$bb" ]; then
	(cd "$work" && apt-get download busybox-static >/dev/null 2>&1) || {
		apt-get update -qq >/dev/null && (cd "$work" && apt-get download busybox-static >/dev/null)
	}
	dpkg-deb -x "$work"/busybox-static_*.deb "$work/deb"
	bb="$work/deb/bin/busybox"
fi

root="$work/rootfs"
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/www" "$root/root"
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
cat >"$root/bin/plugin-entrypoint" <<'EOF'
#!/bin/sh
# Entrypoint of runnel-test/plugin:1: shows what a plugin step receives.
echo "plugin: pwd=$(pwd)"
env | grep '^PLUGIN_' | sort
echo "ran" > plugin.txt
exit "${PLUGIN_EXIT_CODE:-0}"
EOF
chmod 0755 "$root/bin/plugin-entrypoint"

tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
docker import --change 'ENV PATH=/bin' "$work/rootfs.tar" runnel-test/busybox:1 >/dev/null
docker import --change 'ENV PATH=/bin' --change 'ENTRYPOINT ["/bin/plugin-entrypoint"]' "$work/rootfs.tar" runnel-test/plugin:1 >/dev/null
echo "built runnel-test/busybox:1 and runnel-test/plugin:1"
