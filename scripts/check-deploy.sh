#!/usr/bin/env bash
# The deployment checks (`make check-deploy`; issue 5): every overlay renders with a current
# kubectl without warnings, and monitoring with Debian's (old kustomize) to the same objects; Knative objects validate against
# the Knative CRDs and the repo's config-features patch; other objects against Kubernetes'
# schemas (kubernetes-validate, strict), the Prometheus Operator's and Istio's (the istio
# overlay's mesh objects, which must also agree with its Service); the manifests agree with
# the server (knative/checks/consistency.py); the Dockerfile passes hadolint and its COPY
# sources exist. Tools come from `make deploy-tools` (all inside .venv).
#
#   scripts/check-deploy.sh                      metric names looked up in the source
#   METRICS_URL=http://127.0.0.1:8080/metrics scripts/check-deploy.sh   ... on a running server
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SHARED=${SHARED:-../shared}
PY=$VENV/bin/python
KUBECTL=${KUBECTL:-$VENV/bin/kubectl}
KUBECTL_DEBIAN=${KUBECTL_DEBIAN:-$VENV/debian-kubectl/usr/bin/kubectl}
NODE_MODULES=${NODE_MODULES:-$VENV/node/node_modules}
K8S_VERSION=${K8S_VERSION:-1.30.0}
FEATURES=knative/base/config-features.yaml

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0 failed=0
step() {  # step NAME COMMAND...: run, keep its output, count it
  local name=$1; shift
  if "$@" >"$out/log" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; grep -v '^PASS' "$out/log" | sed 's/^/    /'
  fi
}
show() { [ "$(tail -n 1 "$out/log")" = "" ] || tail -n 1 "$out/log" | sed 's/^/    /'; }  # a step's summary line

for tool in "$PY" "$KUBECTL" "$KUBECTL_DEBIAN" "$VENV/bin/hadolint" "$VENV/bin/kubernetes-validate"; do
  [ -x "$tool" ] || { echo "missing $tool: run make deploy-tools" >&2; exit 2; }
done
echo "kubectl: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"
echo "debian kubectl: $("$KUBECTL_DEBIAN" version --client --short 2>/dev/null || "$KUBECTL_DEBIAN" version --client 2>/dev/null | head -1)"

same_objects() {  # same_objects A.yaml B.yaml: the same set of objects, in any order
  "$PY" - "$1" "$2" <<'PY'
import json, sys, yaml
a, b = ([json.dumps(d, sort_keys=True) for d in yaml.safe_load_all(open(p)) if d] for p in sys.argv[1:])
if sorted(a) != sorted(b):
    print(f"{len(a)} vs {len(b)} objects; only in the first: {len(set(a) - set(b))}, only in the second: {len(set(b) - set(a))}")
    sys.exit(1)
print(f"{len(a)} objects")
PY
}
split_kinds() {  # split_kinds IN.yaml CORE.yaml: objects with no CRD (built-in kinds) for kubernetes-validate
  "$PY" - "$1" "$2" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
core = [d for d in docs if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].startswith("apps/")]
yaml.safe_dump_all(core, open(sys.argv[2], "w"), sort_keys=False)
print(f"{len(core)} built-in objects of {len(docs)}")
PY
}
k8s_validate() {  # every object of the file, strict (unknown fields fail)
  "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$1" && \
    "$VENV/bin/kubernetes-validate" --strict "$1"
}

for overlay in cpu gpu istio; do
  # Overlays use `resources` and `patches` (kustomize 4+): Debian's kubectl 1.20 cannot read
  # them, so only the current kubectl renders them, and must not warn.
  step "$overlay: renders with kubectl (kustomize 5), no warnings" \
    bash -c "'$KUBECTL' kustomize knative/overlays/$overlay > '$out/$overlay.yaml' 2> '$out/$overlay.err'; status=\$?; cat '$out/$overlay.err'; [ \$status -eq 0 ] && [ ! -s '$out/$overlay.err' ]"
  step "$overlay: Knative objects valid (validate-knative.py, $FEATURES)" \
    "$PY" "$SHARED/schemas/validate-knative.py" "$out/$overlay.yaml" --features "$FEATURES"
  show
  step "$overlay: other objects valid (kubernetes-validate --strict, $K8S_VERSION and latest)" \
    bash -c "$(declare -f split_kinds k8s_validate); PY='$PY' VENV='$VENV' K8S_VERSION='$K8S_VERSION'; split_kinds '$out/$overlay.yaml' '$out/$overlay-core.yaml' && k8s_validate '$out/$overlay-core.yaml'"
done

to_json() {  # to_json IN.yaml OUT.json: the objects as a JSON array, for the node validators
  "$PY" -c 'import json,sys,yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], "w"))' "$1" "$2"
}
step "istio: mesh objects valid (Istio's CRD schemas, no unknown fields) and agree with the Service" \
  bash -c "$(declare -f to_json); PY='$PY'; to_json '$out/istio.yaml' '$out/istio.json' && node knative/checks/validate-istio.mjs '$NODE_MODULES' '$out/istio.json'"
show
# The same objects, broken twice (a value outside an enum, a misspelt field): the validator
# must fail both, or its PASS above proves nothing.
step "istio: the validator fails a broken copy (bad enum, unknown field)" \
  bash -c "'$PY' - '$out/istio.json' '$out/istio-broken.json' <<'PY'
import json, sys
docs = json.load(open(sys.argv[1]))
for d in docs:
    if d['kind'] == 'PeerAuthentication':
        d['spec']['mtls']['mode'] = 'STRICTEST'
    if d['kind'] == 'RequestAuthentication':
        rule = d['spec']['jwtRules'][0]
        rule['outputClaimToHeader'] = rule.pop('outputClaimToHeaders')
json.dump(docs, open(sys.argv[2], 'w'))
PY
node knative/checks/validate-istio.mjs '$NODE_MODULES' '$out/istio-broken.json' > '$out/istio-broken.log'; status=\$?
grep '^FAIL' '$out/istio-broken.log'
[ \$status -eq 1 ] && grep -q '^FAIL .*PeerAuthentication/.*mode must be equal to one of the allowed values' '$out/istio-broken.log' \
  && grep -q '^FAIL .*RequestAuthentication/.*unknown field(s) spec.jwtRules.0.outputClaimToHeader$' '$out/istio-broken.log'"

step "monitoring: renders with kubectl" bash -c "'$KUBECTL' kustomize knative/monitoring > '$out/monitoring.yaml'"
step "monitoring: renders with Debian's kubectl" \
  bash -c "'$KUBECTL_DEBIAN' kustomize knative/monitoring > '$out/monitoring-debian.yaml'"
step "monitoring: both render the same objects" same_objects "$out/monitoring.yaml" "$out/monitoring-debian.yaml"
step "monitoring: ConfigMap valid (kubernetes-validate --strict)" \
  bash -c "$(declare -f split_kinds k8s_validate); PY='$PY' VENV='$VENV' K8S_VERSION='$K8S_VERSION'; split_kinds '$out/monitoring.yaml' '$out/monitoring-core.yaml' && k8s_validate '$out/monitoring-core.yaml'"
step "monitoring: PodMonitor and PrometheusRule valid (Prometheus Operator schemas)" \
  bash -c "'$PY' -c 'import json,sys,yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], \"w\"))' '$out/monitoring.yaml' '$out/monitoring.json' && node knative/checks/validate-monitoring.mjs '$NODE_MODULES' '$out/monitoring.json'"
step "config-features patches are ConfigMaps (kubernetes-validate --strict)" \
  bash -c "$(declare -f k8s_validate); VENV='$VENV' K8S_VERSION='$K8S_VERSION'; k8s_validate knative/base/config-features.yaml && k8s_validate knative/base/eventing-config-features.yaml"
step "examples: Knative objects valid" \
  "$PY" "$SHARED/schemas/validate-knative.py" knative/examples/requested-sinkbinding.yaml --features "$FEATURES"
step "examples: the multilingual model renders without warnings" \
  bash -c "'$KUBECTL' kustomize knative/examples/multilingual > '$out/multilingual.yaml' 2> '$out/multilingual.err'; status=\$?; cat '$out/multilingual.err'; [ \$status -eq 0 ] && [ ! -s '$out/multilingual.err' ] && grep -q 's3://models/whisper-base/' '$out/multilingual.yaml'"
step "examples: the multilingual model's Knative objects valid" \
  "$PY" "$SHARED/schemas/validate-knative.py" "$out/multilingual.yaml" --features "$FEATURES"
step "examples: the canary rollout renders without warnings" \
  bash -c "'$KUBECTL' kustomize knative/examples/rollout > '$out/rollout.yaml' 2> '$out/rollout.err'; status=\$?; cat '$out/rollout.err'; [ \$status -eq 0 ] && [ ! -s '$out/rollout.err' ] && grep -q 'tag: candidate' '$out/rollout.yaml'"
step "examples: the canary rollout's Knative objects valid" \
  "$PY" "$SHARED/schemas/validate-knative.py" "$out/rollout.yaml" --features "$FEATURES"

metrics=()
[ -n "${METRICS_URL:-}" ] && metrics=(--metrics-url "$METRICS_URL")
[ -n "${METRICS_FILE:-}" ] && metrics=(--metrics-file "$METRICS_FILE")
step "manifests agree with the server (knative/checks/consistency.py ${metrics[*]:-source mode})" \
  "$PY" knative/checks/consistency.py --rendered "$out" "${metrics[@]}"
show
step "Dockerfile passes hadolint" "$VENV/bin/hadolint" --config knative/checks/hadolint.yaml Dockerfile
step "Dockerfile COPY sources exist and are in the build context" "$PY" knative/checks/dockerfile_check.py
show

echo "check-deploy: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
