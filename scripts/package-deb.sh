#!/usr/bin/env bash
# Builds the earshot Debian package with dpkg-deb from the repository's own metadata
# (Cargo.toml [package] and [package.metadata.deb]).
#
#   scripts/package-deb.sh [--binary PATH] [--out DIR] [--revision N] [--fast]
#
# --binary  the earshot binary to package (default target/release/earshot, built with
#           `cargo build --release --locked` when missing). It is stripped into the package.
# --out     where the .deb goes (default target/debian). Its path is printed last.
# --revision Debian revision (default: metadata `revision`); an upgrade test rebuilds with a
#           higher one.
# --fast    no compression (tests: xz of ~100 MB takes about a minute on one core).
#
# Why dpkg-deb and not cargo-deb: `cargo install cargo-deb` compiles for minutes on a 2-core CI
# machine for what is a file layout plus a control file; dpkg-deb is already on every Debian
# system, and the maintainer scripts, conffile and the unit's installed form are ours to write
# anyway. Contents (paths from [package.metadata.deb]):
#   /usr/bin/earshot                         stripped binary
#   /usr/lib/earshot/libonnxruntime.so.X     ONNX Runtime (found there without ORT_DYLIB_PATH)
#   /usr/share/earshot/models/<model>/       bundled models (aisfx-cnn9, seeded MobileNetV1)
#   /lib/systemd/system/earshot.service      systemd/earshot.service with installed paths and
#                                            the package's static user
#   /etc/earshot/earshot.toml                config/earshot.toml, a conffile
#   /usr/share/doc/earshot/                  copyright, changelog
# The state directory /var/lib/earshot is made by postinst (owner earshot, 0750).
set -euo pipefail
umask 022
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary="" out="$here/target/debian" revision="" compress=(-Zxz)
while (($#)); do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --revision) revision=$2; shift 2 ;;
    --fast) compress=(-Znone); shift ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR] [--revision N] [--fast]" >&2; exit 2 ;;
  esac
done

# Metadata, read once from Cargo.toml (python3's tomllib: Debian 12 has Python 3.11).
eval "$(python3 - "$here/Cargo.toml" <<'PY'
import sys, tomllib, shlex
c = tomllib.load(open(sys.argv[1], "rb"))
p = c["package"]; d = p["metadata"]["deb"]
for k, v in {"name": p["name"], "version": p["version"], "description": p["description"],
             "license": p["license"], **{f"deb_{k}": v for k, v in d.items()}}.items():
    print(f"{k}={shlex.quote(str(v))}")
PY
)"
revision=${revision:-$deb_revision}
arch=$(dpkg --print-architecture)
ort_version=$(sed -n 's/^pub const ORT_VERSION: &str = "\(.*\)";/\1/p' "$here/src/embed/runtime.rs")
ort_lib="$here/.ort/libonnxruntime.so.$ort_version"
[ -f "$ort_lib" ] || { echo "package-deb: $ort_lib missing: run scripts/setup-ort.sh" >&2; exit 1; }
if [ -z "$binary" ]; then
  binary="$here/target/release/earshot"
  [ -x "$binary" ] || (cd "$here" && cargo build --release --locked)
fi
[ -x "$binary" ] || { echo "package-deb: no binary at $binary" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
mkdir -p "$root/DEBIAN"

# Binary, stripped (release builds carry line tables: debug = 1).
install -d "$root/$deb_bin_dir"
strip --strip-unneeded -o "$root/$deb_bin_dir/$name" "$binary"
chmod 0755 "$root/$deb_bin_dir/$name"

# ONNX Runtime in the private library directory earshot searches (src/embed/runtime.rs).
install -d "$root/$deb_lib_dir"
install -m 0644 "$ort_lib" "$root/$deb_lib_dir/libonnxruntime.so.$ort_version"

# Bundled models: only what a model directory needs (card, network, licence).
for m in aisfx-cnn9 panns-mobilenetv1-seeded; do
  install -d "$root/$deb_share_dir/models/$m"
  for f in card.json model.onnx LICENSE; do
    [ -f "$here/models/$m/$f" ] && install -m 0644 "$here/models/$m/$f" "$root/$deb_share_dir/models/$m/$f"
  done
done

# The unit: installed binary path, and the package's static system user instead of a dynamic
# one (postinst creates it), so /var/lib/earshot stays where the package and the admin put it.
install -d "$root/$deb_unit_dir"
sed -e "s#^ExecStart=/usr/local/bin/earshot #ExecStart=/$deb_bin_dir/earshot #" \
    -e 's#^DynamicUser=yes$#User=earshot\nGroup=earshot#' \
    -e 's#^\# Identity: a dynamic user, allowed#\# Identity: the system user earshot (made by the package), allowed#' \
    "$here/systemd/earshot.service" > "$root/$deb_unit_dir/earshot.service"
grep -q "^ExecStart=/$deb_bin_dir/earshot run" "$root/$deb_unit_dir/earshot.service" \
  || { echo "package-deb: could not set ExecStart in the unit" >&2; exit 1; }
grep -q '^User=earshot$' "$root/$deb_unit_dir/earshot.service" \
  || { echo "package-deb: could not set User= in the unit" >&2; exit 1; }
chmod 0644 "$root/$deb_unit_dir/earshot.service"

# Config (a conffile: dpkg keeps local edits across upgrades).
install -d "$root/etc/earshot"
# Shipped 0644 (Debian policy); postinst makes it 0640 root:earshot, as secrets may sit beside it.
install -m 0644 "$here/config/earshot.toml" "$root/etc/earshot/earshot.toml"

# Documentation Debian policy asks for.
doc="$root/usr/share/doc/$name"
install -d "$doc"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $name

Files: *
Copyright: earshot contributors
License: $license

Files: usr/lib/earshot/libonnxruntime.so.*
Copyright: Microsoft Corporation
License: MIT
Comment: ONNX Runtime $ort_version, from the onnxruntime PyPI wheel (scripts/setup-ort.sh).

Files: usr/share/earshot/models/aisfx-cnn9/*
Copyright: Alison B. Ma and Alexander Lerch
License: CC-BY-4.0
Comment: "Representation Learning for the Automatic Indexing of Sound Effects Libraries",
 ISMIR 2022 (PyPI aisfx 0.1.2), converted to ONNX. See LICENSE in that directory.

Files: usr/share/earshot/models/panns-mobilenetv1-seeded/*
Copyright: earshot contributors
License: $license
Comment: PANNs MobileNetV1 architecture (Kong et al. 2020) with seeded random weights.
EOF
epoch=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)
{
  echo "$name ($version-$revision) unstable; urgency=medium"
  echo
  echo "  * Built from the earshot repository ($(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown))."
  echo
  echo " -- $deb_maintainer  $(date -u -R -d "@$epoch")"
} | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.Debian.gz"
# ONNX Runtime is upstream's own build (it links its own curl and mbedtls statically); Debian
# has no package of it to depend on.
install -d "$root/usr/share/lintian/overrides"
cat > "$root/usr/share/lintian/overrides/$name" <<EOF
# ONNX Runtime $ort_version as built by Microsoft (PyPI wheel): not packaged in Debian.
$name: embedded-library curl [usr/lib/earshot/libonnxruntime.so.$ort_version]
$name: embedded-library mbedtls [usr/lib/earshot/libonnxruntime.so.$ort_version]
EOF
chmod 0644 "$root/usr/share/lintian/overrides/$name"

# Maintainer scripts and control files.
for s in postinst prerm postrm; do
  install -m 0755 "$here/scripts/debian/$s" "$root/DEBIAN/$s"
done
echo "/etc/earshot/earshot.toml" > "$root/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: $name
Version: $version-$revision
Architecture: $arch
Maintainer: $deb_maintainer
Installed-Size: $installed_kb
Depends: $deb_depends
Recommends: $deb_recommends
Section: $deb_section
Priority: $deb_priority
Description: $deb_synopsis
 earshot learns what normal sounds like from recordings of a machine, then
 scores live audio from a capture device window by window (PANNs/aisfx
 embeddings on ONNX Runtime, k-means and k-NN distances) and raises events,
 alerts and Prometheus metrics when the machine starts to sound wrong.
 .
 Configure /etc/earshot/earshot.toml, check it with
 'earshot check --config /etc/earshot/earshot.toml', then start earshot.service.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# Nothing world-writable, nothing setuid.
bad=$(find "$root" \( -perm -o+w -o -perm -4000 -o -perm -2000 \) ! -type l)
[ -z "$bad" ] || { echo "package-deb: insecure modes: $bad" >&2; exit 1; }

find "$root" -exec touch -h -d "@$epoch" {} +
mkdir -p "$out"
deb="$out/${name}_${version}-${revision}_${arch}.deb"
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
