#!/usr/bin/env bash
# Fills OUT (a folder of *.json references) by running COMMAND, unless a copy computed from the
# same INPUTS is kept under CACHE/<hash of INPUTS>; keeps the result there, so that another
# clone on the machine copies it instead of spending minutes of CPU on faster-whisper again.
# Usage: cached-references.sh OUT CACHE INPUT... -- COMMAND...
set -euo pipefail
out="$1" cache_root="$2"
shift 2
inputs=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do inputs+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "usage: $0 OUT CACHE INPUT... -- COMMAND..." >&2; exit 2; }
shift
key=$(cat "${inputs[@]}" | sha256sum | cut -c1-16)
cache="$cache_root/$key"
if [ -f "$cache/.complete" ]; then
  mkdir -p "$out" && cp "$cache"/*.json "$out"/ && echo "references from $cache"
else
  "$@"
  mkdir -p "$cache" && cp "$out"/*.json "$cache"/ && touch "$cache/.complete"
fi
touch "$out/.complete"
