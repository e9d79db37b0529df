#!/usr/bin/env bash
# Installs what earshot needs to build and run on a fresh Debian 12 machine that reaches only
# the package registries: system packages (ALSA headers for cpal; PulseAudio, sox, Prometheus
# and systemd tools for the tests), the ONNX Runtime library (into .ort/), and, with --tests,
# the seeded test models (into target/test-models). Idempotent: skips what is already there.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tests=0
[ "${1:-}" = "--tests" ] && tests=1

pkgs=(pkg-config libasound2-dev fonts-dejavu-core)
((tests)) && pkgs+=(pulseaudio pulseaudio-utils libasound2-plugins sox prometheus prometheus-alertmanager systemd chromium debootstrap)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
"$here/scripts/setup-ort.sh"
if ((tests)); then
  "$here/scripts/make-test-models.sh" "$here/target/test-models"
fi
