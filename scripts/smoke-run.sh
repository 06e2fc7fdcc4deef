#!/usr/bin/env bash
# The README's first command as a user runs it: `make run`, wait for readiness, transcribe one
# file with curl (raw body) and one through the file-system object store (JSON `source`), stop
# it with SIGTERM and require exit 0. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
PORT=${SMOKE_PORT:-18080}
DATA=$(mktemp -d)
LOG=$DATA/run.log
PORT=$PORT TINGXIE_CACHE_DIR="$DATA/cache" make run DATA="$DATA" >"$LOG" 2>&1 &
make_pid=$!
server() {  # the `tingxie serve` that make started (the one listening on $PORT)
  pgrep -f "release/tingxie serve" | while read -r pid; do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "PORT=$PORT" && echo "$pid"
  done | head -n 1
}
fail() {
  echo "smoke test of make run: $*" >&2
  tail -n 30 "$LOG" >&2
  pid=$(server); [ -n "$pid" ] && kill -TERM "$pid"
  exit 1
}
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$PORT/health/readiness" >/dev/null 2>&1 && break
  kill -0 $make_pid 2>/dev/null || fail "make run exited before it was ready"
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/health/readiness" >/dev/null || fail "not ready after 600 s"
expected=$(awk -F'\t' '$1 == "s01.wav" && $2 == "greedy" {print $3}' "$SHARED/fixtures/speech/faster-whisper.tsv")
raw=$(curl -fsS --data-binary @"$SHARED/fixtures/speech/s01.wav" -H 'content-type: audio/wav' \
  "http://127.0.0.1:$PORT/transcribe?beam_size=1&response_format=text")
[ "$(echo "$raw" | xargs)" = "$(echo "$expected" | xargs)" ] || fail "raw upload: got '$raw', expected '$expected'"
cp "$SHARED/fixtures/speech/s01.wav" "$DATA/in/s01.wav"
stored=$(curl -fsS -H 'content-type: application/json' -d "{\"source\": \"file://$DATA/in/s01.wav\", \"beam_size\": 1}" \
  "http://127.0.0.1:$PORT/transcribe")
[ -s "$DATA/transcripts/in/s01.wav.json" ] || fail "no transcript written for a stored source: $stored"
pid=$(server)
[ -n "$pid" ] || fail "cannot find the server process"
kill -TERM "$pid"
wait $make_pid || fail "make run did not exit 0 after SIGTERM"
echo "smoke test of make run: ready, raw upload and stored source transcribed, clean exit"
rm -rf "$DATA"
