#!/usr/bin/env bash
# A local S3-protocol server (moto) for the model-cache tests.
#
#   .ci/s3-server.sh install      install moto if missing; print the path of moto_server
#   .ci/s3-server.sh start PORT   install if missing, start on 127.0.0.1:PORT in the background,
#                                 wait until it answers; print its pid (also in $VENV/moto-PORT.pid)
#   .ci/s3-server.sh stop PORT    stop a server started by `start`
#
# Where moto comes from, first match wins:
#   1. $TINGXIE_MOTO_SERVER, when it names an executable;
#   2. the repository's .venv/bin/moto_server (a developer's venv);
#   3. a venv of its own at $TINGXIE_MOTO_VENV (default: ${CARGO_TARGET_DIR:-target}/moto-venv),
#      made with `python3 -m venv` and `pip install "moto[server]"` when missing (~75 s, needs PyPI).
# The tests of model-cache start their own servers: export TINGXIE_MOTO_SERVER="$(.ci/s3-server.sh install)".
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MOTO_VERSION_SPEC="${TINGXIE_MOTO_SPEC:-moto[server]>=5,<6}"
VENV="${TINGXIE_MOTO_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/moto-venv}"

find_moto() {
  if [ -n "${TINGXIE_MOTO_SERVER:-}" ] && [ -x "$TINGXIE_MOTO_SERVER" ]; then
    echo "$TINGXIE_MOTO_SERVER"
  elif [ -x "$ROOT/.venv/bin/moto_server" ]; then
    echo "$ROOT/.venv/bin/moto_server"
  elif [ -x "$VENV/bin/moto_server" ]; then
    echo "$VENV/bin/moto_server"
  else
    return 1
  fi
}

install_moto() {
  if find_moto; then return 0; fi
  echo "installing $MOTO_VERSION_SPEC into $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_VERSION_SPEC" >&2
  [ -x "$VENV/bin/moto_server" ] || { echo "moto_server missing after install" >&2; exit 1; }
  echo "$VENV/bin/moto_server"
}

wait_ready() {
  local port="$1" i
  for i in $(seq 1 150); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
sys.exit(0 if s.recv(12).startswith(b"HTTP/1.") else 1)
EOF
    sleep 0.2
  done
  echo "moto did not answer on port $port within 30 s" >&2
  return 1
}

cmd="${1:-}"
case "$cmd" in
  install)
    install_moto
    ;;
  start)
    port="${2:?usage: $0 start PORT}"
    moto="$(install_moto)"
    mkdir -p "$VENV"
    nohup "$moto" -H 127.0.0.1 -p "$port" >"$VENV/moto-$port.log" 2>&1 &
    pid=$!
    echo "$pid" >"$VENV/moto-$port.pid"
    wait_ready "$port"
    echo "$pid"
    ;;
  stop)
    port="${2:?usage: $0 stop PORT}"
    if [ -f "$VENV/moto-$port.pid" ]; then
      kill "$(cat "$VENV/moto-$port.pid")" 2>/dev/null || true
      rm -f "$VENV/moto-$port.pid"
    fi
    ;;
  *)
    echo "usage: $0 install | start PORT | stop PORT" >&2
    exit 2
    ;;
esac
