#!/bin/sh
# Fetches a Debian kernel package and prints the path of its vmlinuz.
#
#   fetch-kernel.sh DEB_ARCH META_PACKAGE CACHE_DIR
#
# META_PACKAGE is a Debian meta package such as linux-image-amd64 (the
# release's kernel, 6.1 on bookworm) or linux-image-6.12-arm64 (6.12 from
# bookworm-security); it is resolved to the versioned image package, which
# `apt-get download` fetches into CACHE_DIR/DEB_ARCH/ and dpkg-deb
# extracts there. Later calls use the cache and need no network.
#
# The system's apt configuration is left alone: apt runs with a private
# state and cache directory under CACHE_DIR (for a foreign architecture
# too) and a private source list, Debian $VM_DEBIAN_SUITE (default
# bookworm; trixie for riscv64, which bookworm does not have) and its
# -security suite from $VM_DEBIAN_MIRROR and $VM_DEBIAN_SECURITY_MIRROR
# (defaults: deb.debian.org), verified with the system's Debian keyring.
set -eu
arch=$1
meta=$2
cache=$3
mirror=${VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${VM_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
keyring=${VM_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
suite=${VM_DEBIAN_SUITE:-bookworm}

dir=$cache/$arch
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
resolved=$dir/$meta.resolved

extracted() {
	pkg=$1
	# vmlinuz (x86_64, arm64) or vmlinux (riscv64: an uncompressed Image).
	for k in "$dir/$pkg/boot"/vmlinuz-* "$dir/$pkg/boot"/vmlinux-*; do
		[ -f "$k" ] && { echo "$k"; return 0; }
	done
	return 1
}

if [ -s "$resolved" ] && extracted "$(cat "$resolved")"; then
	exit 0
fi

apt=$dir/apt
mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/prefs"
: >"$apt/status"
cat >"$apt/sources.list" <<SOURCES
deb [signed-by=$keyring] $mirror $suite main
deb [signed-by=$keyring] $security $suite-security main
SOURCES
set -- -o Dir::State="$apt/state" -o Dir::State::status="$apt/status" \
	-o Dir::Cache="$apt/cache" -o Dir::Etc::SourceList="$apt/sources.list" \
	-o Dir::Etc::SourceParts="$apt/parts" -o Dir::Etc::PreferencesParts="$apt/prefs" \
	-o APT::Architecture="$arch" -o APT::Architectures="$arch" \
	-o Acquire::Languages=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq

if [ -z "$(ls "$apt/state/lists" 2>/dev/null | grep Packages)" ]; then
	apt-get "$@" update >&2
fi
# The meta package depends on exactly one versioned image package.
pkg=$(apt-cache "$@" depends "$meta" | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1)
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve $meta for $arch" >&2; exit 1; }
(cd "$dir" && apt-get "$@" download "$pkg:$arch" >&2)
deb=$(ls "$dir/${pkg}_"*"_$arch.deb" | head -n 1)
rm -rf "${dir:?}/$pkg"
dpkg-deb -x "$deb" "$dir/$pkg"
echo "$pkg" >"$resolved"
extracted "$pkg"
