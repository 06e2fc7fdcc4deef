#!/usr/bin/env python3
"""Drift checks between the Knative manifests and the server they deploy.

    consistency.py --rendered DIR [--metrics-url URL | --metrics-file FILE]

DIR holds the rendered overlays (cpu.yaml, gpu.yaml) and monitoring.yaml, as written by
scripts/check-deploy.sh. The server's side is read from the source tree (function/src,
model-cache/src), or, for metric names, from the text of /metrics of a running `tingxie serve`
(--metrics-url, --metrics-file). Without either, metric names are looked up in the source
(string literals in function/src and model-cache/src).

Each check prints PASS or FAIL with what differs; the exit status is 1 when any failed.
"""
import argparse
import glob
import importlib.util
import json
import os
import re
import sys
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared"))
OVERLAYS = ("cpu", "gpu")
# Environment names read by something other than tingxie's config (the CUDA driver, the cloud
# SDK conventions object_store follows).
EXTERNAL_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "CUDA_", "NVIDIA_")

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))
    if detail and ok and os.environ.get("VERBOSE"):
        print(f"     {detail}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rust_sources(*dirs):
    out = {}
    for d in dirs:
        for p in glob.glob(os.path.join(ROOT, d, "**", "*.rs"), recursive=True):
            out[os.path.relpath(p, ROOT)] = read(p)
    return out


def docs_of(path):
    return [d for d in yaml.safe_load_all(read(path)) if d]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d.get("metadata", {}).get("name") == name:
            return d
    return None


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def seconds(duration):
    """ISO 8601 duration (PT10M) or Go/Knative duration (10m, 90s) -> seconds."""
    m = re.fullmatch(r"P(?:T)?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", duration)
    if m and duration.startswith("P"):
        h, mi, s = m.groups()
        return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if m:
        return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    raise ValueError(f"not a duration: {duration}")


# ---------------------------------------------------------------------------------------------
# The server's side, from the source tree.

def config_env_names():
    """Env names of the config struct (clap `env = "X"`) and of the model cache (`var("X")`)."""
    names, where = set(), []
    cfg = os.path.join(ROOT, "function", "src", "config.rs")
    if os.path.exists(cfg):
        names |= set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', read(cfg)))
        where.append("function/src/config.rs")
    mc = os.path.join(ROOT, "model-cache", "src", "config.rs")
    if os.path.exists(mc):
        names |= set(re.findall(r'\bvar\(\s*"([A-Z0-9_]+)"\s*\)', read(mc)))
        where.append("model-cache/src/config.rs")
    return names, where


def config_default(name):
    """The clap default of the field read from env NAME, when it is a literal."""
    cfg = os.path.join(ROOT, "function", "src", "config.rs")
    if not os.path.exists(cfg):
        return None
    m = re.search(r'env\s*=\s*"%s"[^)]*default_value(?:_t)?\s*=\s*"?([^,")\]]+)' % re.escape(name),
                  read(cfg))
    return m.group(1).strip() if m else None


def config_number(name):
    """The clap default of env NAME as a number, when it is a literal or a product of them
    (`100 * 1024 * 1024`)."""
    text = config_default(name)
    if text is None or not re.fullmatch(r"[\d.]+(\s*\*\s*[\d.]+)*", text):
        return None
    product = 1.0
    for factor in text.split("*"):
        product *= float(factor)
    return product


def quantity(text):
    """A Kubernetes memory quantity (1536Mi, 4Gi, 2G, 1e9) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)([KMGT]i?)?", str(text))
    if not m:
        raise ValueError(f"not a memory quantity: {text}")
    scale = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * scale


def accepted_event_types():
    """The server's ACCEPTED_EVENT_TYPES: string literals, and `const NAME: &str = "..."`
    constants of function/src/events/ that it names (`s3::TRIGGERMESH_S3`, `REQUEST_EVENT_TYPE`)."""
    events = os.path.join(ROOT, "function", "src", "events")
    path = os.path.join(events, "mod.rs")
    if not os.path.exists(path):
        return None, "function/src/events/mod.rs not found"
    consts = {}
    for p in glob.glob(os.path.join(events, "**", "*.rs"), recursive=True):
        for name, value in re.findall(r'const\s+([A-Z0-9_]+)\s*:\s*&(?:\'static\s+)?str\s*=\s*"([^"]*)"\s*;',
                                      read(p)):
            consts[name] = value
    m = re.search(r"ACCEPTED_EVENT_TYPES\s*:[^=]*=\s*&?\[(.*?)\]\s*;", read(path), re.S)
    if not m:
        return None, "no ACCEPTED_EVENT_TYPES constant in function/src/events/mod.rs"
    body = re.sub(r"//[^\n]*", "", m.group(1))
    types = set()
    for item in (x.strip() for x in body.split(",")):
        if not item:
            continue
        if item.startswith('"'):
            types.add(item.strip('"'))
            continue
        name = item.split("::")[-1]
        if name not in consts:
            return None, f"ACCEPTED_EVENT_TYPES names {item}, not a string constant of function/src/events"
        types.add(consts[name])
    return types, None


# ---------------------------------------------------------------------------------------------

def tingxie_parts(docs):
    svc = find(docs, "Service", "tingxie")
    spec = svc["spec"]["template"]["spec"]
    ctr = next(c for c in spec["containers"] if c["name"] == "tingxie")
    ann = svc["spec"]["template"]["metadata"].get("annotations", {})
    return svc, spec, ctr, ann


def check_server_routes(rendered, mon):
    srcs = rust_sources("function/src")
    text = "\n".join(srcs.values())
    for overlay, docs in rendered.items():
        _, spec, ctr, ann = tingxie_parts(docs)
        for probe in ("readinessProbe", "livenessProbe"):
            path = ctr.get(probe, {}).get("httpGet", {}).get("path")
            check(f"{overlay}: {probe} path {path} is a route of the server",
                  bool(path) and f'"{path}"' in text,
                  f"no string literal \"{path}\" in function/src")
        ports = ctr.get("ports", [])
        port = ports[0]["containerPort"] if ports else None
        default = config_default("PORT")
        check(f"{overlay}: containerPort {port} is the server's PORT default",
              default is not None and str(port) == default,
              f"function/src/config.rs PORT default is {default}")
        check(f"{overlay}: PORT is left to Knative (not set in env)", "PORT" not in env_of(ctr),
              "Knative sets PORT to the containerPort itself and rejects a Service that sets it")
        scrape_port = ann.get("prometheus.io/port")
        check(f"{overlay}: prometheus.io/port is the containerPort", scrape_port == str(port),
              f"{scrape_port} != {port}")
        scrape_path = ann.get("prometheus.io/path", "/metrics")
        check(f"{overlay}: prometheus.io/path {scrape_path} is a route of the server",
              f'"{scrape_path}"' in text, f"no string literal \"{scrape_path}\" in function/src")
    for pm in (d for d in mon if d.get("kind") == "PodMonitor"):
        for ep in pm["spec"].get("podMetricsEndpoints", []):
            check(f"PodMonitor/{pm['metadata']['name']}: scrapes {ep.get('path', '/metrics')} on "
                  f"Knative's user-port", ep.get("port") == "user-port"
                  and f'"{ep.get("path", "/metrics")}"' in text)


def check_env_names(rendered):
    names, where = config_env_names()
    check("config struct found", bool(where), "neither function/src/config.rs nor "
          "model-cache/src/config.rs exists")
    for overlay, docs in rendered.items():
        containers = []
        for d in docs:
            pod = d.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                image = c.get("image", "")
                if "/tingxie:" in image or image == "tingxie":
                    containers.append((f"{d['kind']}/{d['metadata']['name']}/{c['name']}", c))
        for label, c in containers:
            for name in env_of(c):
                if name.startswith(EXTERNAL_ENV_PREFIXES):
                    continue
                check(f"{overlay}: env {name} ({label}) is read by tingxie", name in names,
                      f"not an env name in {', '.join(where) or 'the config'}")


def check_concurrency_and_timeouts(rendered):
    bench = benchmark_rtf()
    for overlay, docs in rendered.items():
        svc, spec, ctr, ann = tingxie_parts(docs)
        env = env_of(ctr)
        depth = int(env.get("TINGXIE_QUEUE_DEPTH") or config_default("TINGXIE_QUEUE_DEPTH") or -1)
        cc = spec.get("containerConcurrency")
        check(f"{overlay}: containerConcurrency {cc} = TINGXIE_QUEUE_DEPTH {depth} + 1 "
              f"(one computing, the rest queued)", cc == depth + 1,
              "Knative would send more requests than the engine holds (429s) or fewer than it "
              "could queue")
        target = float(ann.get("autoscaling.knative.dev/target", "nan"))
        check(f"{overlay}: autoscaling target {target:g} <= containerConcurrency {cc}",
              cc is not None and 0 < target <= cc)
        timeout = spec.get("timeoutSeconds")
        rst = spec.get("responseStartTimeoutSeconds", timeout)
        check(f"{overlay}: responseStartTimeoutSeconds {rst} = timeoutSeconds {timeout} (the "
              f"answer starts when the transcript is done)", rst == timeout)
        grace = float(env.get("TINGXIE_SHUTDOWN_GRACE_SECONDS")
                      or config_default("TINGXIE_SHUTDOWN_GRACE_SECONDS") or 0)
        check(f"{overlay}: TINGXIE_SHUTDOWN_GRACE_SECONDS {grace:g} < timeoutSeconds {timeout} "
              f"(Knative's termination grace)", 0 < grace < (timeout or 0))
        max_audio = float(env.get("TINGXIE_MAX_AUDIO_SECONDS")
                          or config_default("TINGXIE_MAX_AUDIO_SECONDS") or 0)
        rtf = float(svc["metadata"].get("annotations", {}).get(
            "tingxie.dev/assumed-real-time-factor", "nan"))
        worst = cc * max_audio * rtf
        check(f"{overlay}: a full pod fits the timeout: {cc} x {max_audio:g} s x RTF {rtf:g} = "
              f"{worst:.0f} s <= {timeout} s", worst <= (timeout or 0))
        if overlay == "cpu":
            if bench is None:
                print("SKIP cpu: assumed RTF against BENCHMARKS.md (no beam-5 long_5min row found)")
            else:
                check(f"cpu: assumed RTF {rtf:g} >= measured beam-5 RTF {bench:.3f} "
                      f"(BENCHMARKS.md, long_5min.wav)", rtf >= bench - 0.005)
        # GPU resources: limits equal to requests.
        res = ctr.get("resources", {})
        for k in set(res.get("requests", {})) | set(res.get("limits", {})):
            if k.startswith("nvidia.com/"):
                check(f"{overlay}: {k} limits = requests", res.get("limits", {}).get(k)
                      == res.get("requests", {}).get(k))
        for k in ("cpu", "memory"):
            check(f"{overlay}: {k} request and limit set", k in res.get("requests", {})
                  and k in res.get("limits", {}))
        threads = env.get("TINGXIE_THREADS")
        cpu = res.get("limits", {}).get("cpu")
        check(f"{overlay}: TINGXIE_THREADS {threads} = CPU limit {cpu}", threads is not None
              and cpu is not None and float(threads) == float(cpu))
        # Triggers: one attempt may last as long as a request does.
        for t in (d for d in docs if d.get("kind") == "Trigger"):
            sub = t["spec"]["subscriber"].get("ref", {})
            if sub.get("name") != "tingxie":
                continue
            dl = t["spec"].get("delivery") or {}
            broker = find(docs, "Broker", t["spec"]["broker"]) or {}
            dl = dl or broker.get("spec", {}).get("delivery", {})
            ok = (dl.get("retry", 0) >= 1 and dl.get("backoffPolicy") == "exponential"
                  and "deadLetterSink" in dl and "timeout" in dl
                  and seconds(dl["timeout"]) >= (timeout or 0))
            check(f"{overlay}: Trigger/{t['metadata']['name']} delivery: retries, exponential "
                  f"backoff, dead-letter sink, per-attempt timeout >= {timeout} s", ok,
                  json.dumps(dl))


# Memory a request holds per second of its audio (measured with tests/e2e/test_memory.py; README,
# TINGXIE_MAX_AUDIO_SECONDS). Waiting, or decoding: its 16 kHz f32 samples (64 kB/s; decoding
# holds no more, whatever the input's rate or channels). Computing: the samples, their
# reflect-padded copy, the STFT power spectrum and the log-mel spectrogram at once.
WAITING_BYTES_PER_SECOND = 64_000
COMPUTING_BYTES_PER_SECOND = 260_000
# Of the pod's limit: the rest is for the allocator's slack, thread stacks and page cache.
MEMORY_MARGIN = 0.8
MiB = 2**20


def check_memory(rendered):
    """A full pod fits its memory limit: the model and its working set (the overlay's
    tingxie.dev/assumed-model-memory), every buffered body (the body budget), one request
    computing and the others waiting, each at the longest audio allowed, the overlay's and the
    server's default alike."""
    default_audio = config_number("TINGXIE_MAX_AUDIO_SECONDS")
    check("TINGXIE_MAX_AUDIO_SECONDS has a literal default", default_audio is not None)
    for overlay, docs in rendered.items():
        svc, spec, ctr, _ = tingxie_parts(docs)
        env = env_of(ctr)

        def setting(name):
            return float(env.get(name) or config_number(name) or 0)

        cc = spec.get("containerConcurrency") or 0
        model = quantity(svc["metadata"].get("annotations", {}).get("tingxie.dev/assumed-model-memory", "0"))
        check(f"{overlay}: tingxie.dev/assumed-model-memory set", model > 0)
        limit = quantity(ctr.get("resources", {}).get("limits", {}).get("memory", "0"))
        event_body = setting("TINGXIE_MAX_BODY_BYTES") // 3 * 4 + 64 * 1024
        bodies = max(setting("TINGXIE_BODY_MEMORY_BYTES"), 2 * event_body)
        per_second = COMPUTING_BYTES_PER_SECOND + (cc - 1) * WAITING_BYTES_PER_SECOND
        for label, audio in (("", setting("TINGXIE_MAX_AUDIO_SECONDS")), (" (server default)", default_audio or 0)):
            need = model + bodies + audio * per_second
            check(f"{overlay}: a full pod fits its memory{label}: {model / MiB:.0f} MiB model + "
                  f"{bodies / MiB:.0f} MiB bodies + {audio:g} s x ({COMPUTING_BYTES_PER_SECOND // 1000} + "
                  f"{cc - 1} x {WAITING_BYTES_PER_SECOND // 1000}) kB/s = {need / MiB:.0f} MiB <= "
                  f"{MEMORY_MARGIN:.0%} of {limit / MiB:.0f} MiB", need <= MEMORY_MARGIN * limit)


def benchmark_rtf():
    path = os.path.join(ROOT, "BENCHMARKS.md")
    if not os.path.exists(path):
        return None
    for line in read(path).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] == "long_5min.wav" and cells[1] == "beam5":
            try:
                return float(cells[2]) / 300.0
            except ValueError:
                return None
    return None


def check_triggers(rendered):
    types, err = accepted_event_types()
    check("ACCEPTED_EVENT_TYPES found in the server", types is not None, err or "")
    for overlay, docs in rendered.items():
        triggers = [d for d in docs if d.get("kind") == "Trigger"]
        to_tingxie = [t for t in triggers if t["spec"]["subscriber"].get("ref", {}).get("name")
                      == "tingxie"]
        filtered = []
        for t in to_tingxie:
            attrs = (t["spec"].get("filter") or {}).get("attributes") or {}
            check(f"{overlay}: Trigger/{t['metadata']['name']} filters on type alone",
                  set(attrs) == {"type"} and "filters" not in t["spec"], json.dumps(attrs))
            filtered.append(attrs.get("type"))
        check(f"{overlay}: one Trigger per accepted type", len(filtered) == len(set(filtered)),
              f"repeated: {sorted(x for x in set(filtered) if filtered.count(x) > 1)}")
        if types is not None:
            missing, extra = sorted(types - set(filtered)), sorted(set(filtered) - types)
            check(f"{overlay}: Trigger filters = ACCEPTED_EVENT_TYPES ({len(types)} types)",
                  not missing and not extra,
                  f"no Trigger for {missing}; Trigger for a type the server refuses: {extra} "
                  f"(edit knative/base/triggers.yaml)")
        replies = {(t["spec"].get("filter") or {}).get("attributes", {}).get("type")
                   for t in triggers if t not in to_tingxie}
        for r in ("dev.tingxie.transcription.completed", "dev.tingxie.transcription.failed"):
            check(f"{overlay}: reply {r} is routed on", r in replies)
        dls = {json.dumps((t["spec"].get("delivery") or {}).get("deadLetterSink"), sort_keys=True)
               for t in to_tingxie}
        for s in dls:
            ref = (json.loads(s) or {}).get("ref", {})
            check(f"{overlay}: dead-letter sink {ref.get('kind')}/{ref.get('name')} is in the "
                  f"manifests", find(docs, ref.get("kind"), ref.get("name")) is not None)


def check_features(rendered, features_path):
    spec = importlib.util.spec_from_file_location(
        "validate_knative", os.path.join(SHARED, "schemas", "validate-knative.py"))
    vk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vk)
    crds = vk.load_crds()
    needed = {}
    for overlay, docs in rendered.items():
        for d in docs:
            group, _, version = d.get("apiVersion", "").rpartition("/")
            schema = crds.get((group, version, d.get("kind")))
            if schema is None:
                continue
            for path, flag in vk.gated_fields(schema):
                if vk.present(d, path):
                    needed.setdefault(flag, set()).add(overlay)
    enabled = {k for k, v in (docs_of(features_path)[0].get("data") or {}).items()
               if v == "enabled"}
    check("config-features enables exactly the flags the overlays use",
          set(needed) == enabled,
          f"used but not enabled: {sorted(set(needed) - enabled)}; enabled but unused: "
          f"{sorted(enabled - set(needed))}")


def check_prewarm(rendered):
    docs = rendered["gpu"]
    ds = find(docs, "DaemonSet", "tingxie-prewarm")
    check("gpu: pre-warm DaemonSet present", ds is not None)
    if ds is None:
        return
    svc, spec, ctr, ann = tingxie_parts(docs)
    pod = ds["spec"]["template"]["spec"]
    pre = next((c for c in pod.get("initContainers", []) if c["name"] == "prefetch"), None)
    check("gpu: DaemonSet runs `tingxie cache prefetch`", pre is not None
          and pre.get("args", [])[:2] == ["cache", "prefetch"])
    senv, penv = env_of(ctr), env_of(pre or {})
    for k in ("TINGXIE_MODEL", "TINGXIE_CACHE_DIR", "TINGXIE_CACHE_MAX_BYTES"):
        check(f"gpu: DaemonSet {k} = Service's ({senv.get(k)})", senv.get(k) == penv.get(k),
              f"{penv.get(k)} != {senv.get(k)}")
    svc_host = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
    ds_host = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
    mount = {m["name"]: m["mountPath"] for m in ctr.get("volumeMounts", [])}
    cache_vol = next((n for n, p in mount.items() if p == senv.get("TINGXIE_CACHE_DIR")), None)
    check("gpu: TINGXIE_CACHE_DIR is a hostPath mount in the Service", cache_vol in svc_host)
    check("gpu: DaemonSet fills the same hostPath", set(svc_host.values()) <= set(ds_host.values()),
          f"{svc_host} vs {ds_host}")
    cache_dir = senv.get("TINGXIE_CACHE_DIR", "?")
    # TINGXIE_KERNEL_CACHE_DIR defaults to $TINGXIE_CACHE_DIR/kernels; tingxie puts the driver's
    # cache (CUDA_CACHE_PATH) inside it unless the manifest sets one, which must be on the node.
    kernel_dir = senv.get("TINGXIE_KERNEL_CACHE_DIR") or cache_dir + "/kernels"
    for k, v in (("TINGXIE_KERNEL_CACHE_DIR", kernel_dir), ("CUDA_CACHE_PATH", senv.get("CUDA_CACHE_PATH") or kernel_dir)):
        check(f"gpu: {k} ({v}) is on the node-local cache", bool(v)
              and v.startswith(cache_dir + "/"))
    check("gpu: DaemonSet runs on the Service's nodes (nodeSelector, tolerations)",
          pod.get("nodeSelector") == spec.get("nodeSelector")
          and pod.get("tolerations") == spec.get("tolerations"))
    gpu_ask = any("nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
                  for c in pod.get("initContainers", []) + pod.get("containers", []))
    check("gpu: DaemonSet takes no GPU", not gpu_ask)


def check_func_yaml(rendered):
    path = os.path.join(ROOT, "function", "func.yaml")
    check("function/func.yaml exists", os.path.exists(path))
    if not os.path.exists(path):
        return
    fn = yaml.safe_load(read(path))
    names, where = config_env_names()
    _, spec, ctr, _ = tingxie_parts(rendered["cpu"])
    check("func.yaml: runtime rust", fn.get("runtime") == "rust")
    deploy = fn.get("deploy", {})
    health = deploy.get("healthEndpoints", {})
    check("func.yaml: health endpoints = the Service's probes",
          health.get("liveness") == ctr["livenessProbe"]["httpGet"]["path"]
          and health.get("readiness") == ctr["readinessProbe"]["httpGet"]["path"])
    envs = deploy.get("env", []) + fn.get("run", {}).get("envs", [])
    for e in envs:
        if not e["name"].startswith(EXTERNAL_ENV_PREFIXES):
            check(f"func.yaml: env {e['name']} is read by tingxie", e["name"] in names)
    depth = next((int(e["value"]) for e in deploy.get("env", [])
                  if e["name"] == "TINGXIE_QUEUE_DEPTH"), None)
    conc = deploy.get("options", {}).get("resources", {}).get("limits", {}).get("concurrency")
    check(f"func.yaml: concurrency {conc} = TINGXIE_QUEUE_DEPTH {depth} + 1",
          depth is not None and conc == depth + 1)


def check_security(rendered):
    for overlay, docs in rendered.items():
        for d in docs:
            pod = d.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                sc = c.get("securityContext", {})
                label = f"{overlay}: {d['kind']}/{d['metadata']['name']}/{c['name']}"
                if c["name"] == "cache-dir":  # root, CAP_CHOWN only, by design
                    check(f"{label}: root with CHOWN only, no escalation",
                          sc.get("capabilities", {}).get("add") == ["CHOWN"]
                          and sc.get("allowPrivilegeEscalation") is False
                          and sc.get("readOnlyRootFilesystem") is True)
                    continue
                ok = (sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                      and sc.get("allowPrivilegeEscalation") is False
                      and sc.get("capabilities", {}).get("drop") == ["ALL"]
                      and not sc.get("capabilities", {}).get("add"))
                check(f"{label}: non-root, read-only root, no escalation, no capabilities", ok,
                      json.dumps(sc))


# ---------------------------------------------------------------------------------------------
# Metric names.

def promql_names(expr):
    import promql_parser
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m") \
               .replace("$__range", "1h")
    names = set()

    def walk(node):
        if type(node).__name__ == "VectorSelector" and node.name:
            names.add(node.name)
        for attr in dir(node):
            if attr.startswith("_") or attr in ("parse", "prettify"):
                continue
            value = getattr(node, attr)
            for v in value if isinstance(value, list) else [value]:
                if type(v).__module__.startswith("promql") and hasattr(v, "prettify"):
                    walk(v)
    walk(promql_parser.parse(expr))
    return names


def used_metrics(rendered):
    """{metric name: [where used]} from the PrometheusRule and the dashboard."""
    used = {}
    mon = rendered.get("monitoring") or []
    for d in mon:
        if d.get("kind") == "PrometheusRule":
            records = set()
            for g in d["spec"]["groups"]:
                for r in g["rules"]:
                    if "record" in r:
                        records.add(r["record"])
                    for n in promql_names(r["expr"]):
                        used.setdefault(n, []).append(f"rule {r.get('alert') or r.get('record')}")
            for r in records:
                used.pop(r, None)
    dash = json.loads(read(os.path.join(ROOT, "knative", "monitoring", "dashboard.json")))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            for n in promql_names(t["expr"]):
                used.setdefault(n, []).append(f"panel '{p['title']}'")
    return used


def external_metrics():
    out = set()
    for line in read(os.path.join(ROOT, "knative", "checks", "external-metrics.txt")).splitlines():
        if line.strip() and not line.startswith("#"):
            out.add(line.split()[0])
    return out


def exported_from_text(text):
    """Metric families on a /metrics page: sample names and TYPE lines."""
    names, hist = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            if kind.strip() in ("histogram", "summary"):
                hist.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    for h in hist:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def check_metrics(rendered, metrics_text, source_label):
    used = used_metrics(rendered)
    external = external_metrics()
    if metrics_text is not None:
        exported = exported_from_text(metrics_text)

        def has(n):
            return n in exported
    else:
        text = "\n".join(rust_sources("function/src", "model-cache/src").values())
        cargo = read(os.path.join(ROOT, "function", "Cargo.toml"))
        process = "ProcessCollector" in text or re.search(r'prometheus[^\n]*"process"', cargo)

        def has(n):
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            if n.startswith("process_"):
                return bool(process)
            return f'"{n}"' in text or f'"{base}"' in text
    for n in sorted(used):
        if n in external:
            check(f"metric {n} is external (knative/checks/external-metrics.txt)", True)
            continue
        check(f"metric {n} is exported by tingxie ({source_label})", has(n),
              f"used by {', '.join(sorted(set(used[n])))}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--features", default=os.path.join(ROOT, "knative", "base",
                                                        "config-features.yaml"))
    ap.add_argument("--metrics-url")
    ap.add_argument("--metrics-file")
    ap.add_argument("--only", choices=["metrics"], help="run only the metric-name check")
    args = ap.parse_args()

    rendered = {o: docs_of(os.path.join(args.rendered, f"{o}.yaml")) for o in OVERLAYS}
    mon_path = os.path.join(args.rendered, "monitoring.yaml")
    mon = docs_of(mon_path) if os.path.exists(mon_path) else []
    metrics_text, label = None, "source: string literals in function/src, model-cache/src"
    if args.metrics_url:
        metrics_text = urllib.request.urlopen(args.metrics_url, timeout=10).read().decode()
        label = f"live: {args.metrics_url}"
    elif args.metrics_file:
        metrics_text, label = read(args.metrics_file), f"live: {args.metrics_file}"

    if args.only != "metrics":
        check_server_routes(rendered, mon)
        check_env_names(rendered)
        check_concurrency_and_timeouts(rendered)
        check_memory(rendered)
        check_triggers(rendered)
        check_features(rendered, args.features)
        check_prewarm(rendered)
        check_security(rendered)
        check_func_yaml(rendered)
    check_metrics(dict(rendered, monitoring=mon), metrics_text, label)
    failed = results.count(False)
    print(f"consistency: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
