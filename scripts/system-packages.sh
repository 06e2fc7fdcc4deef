#!/usr/bin/env bash
# The Debian packages the build and the tests need, installed when missing: the one step that
# `make run`, `make test` and `.ci/run` share. As root it installs them; otherwise it names
# them and stops.
#   build: cmake (the bundled libopus), pkg-config and zlib1g-dev (flate2's zlib backend)
#   test:  the build's, plus Mesa's software Vulkan driver (the wgpu tests run the GPU code
#          path on the CPU) and Node.js/npm (Azurite, the Azure Storage emulator)
set -euo pipefail
packages=(cmake pkg-config zlib1g-dev)
if [ "${1:-build}" = test ]; then
  packages+=(mesa-vulkan-drivers libvulkan1)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# Any Node.js with npm will do (NodeSource's nodejs, for one, brings npm and conflicts with
# Debian's npm package).
if [ "${1:-build}" = test ] && ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
