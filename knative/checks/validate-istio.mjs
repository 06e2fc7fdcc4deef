// Validates Istio objects (every apiVersion of a *.istio.io group) against Istio's CRD schemas,
// as packaged by @kubernetes-models/istio (npm; 3.0.1 carries Istio 1.29.2's CRDs), then checks
// that the mesh settings agree with the Knative Service they sit beside.
//   node validate-istio.mjs NODE_MODULES_DIR OBJECTS.json
// OBJECTS.json: a JSON array of Kubernetes objects (scripts/check-deploy.sh converts the rendered
// YAML). Exit status 1 on any failure, and when no Istio object was found.
//
// 1. Schema: types, enums, required fields, patterns of the CRD's openAPIV3Schema.
// 2. Unknown fields: the CRDs do not close their objects (a cluster prunes unknown fields, or
//    rejects them under kubectl's strict field validation), so the schema alone lets a
//    misspelt field (`outputClaimToHeader`) through. Each field of the object is replaced in
//    turn by a value of another JSON type: a field the schema knows is then reported at its
//    path; one it does not know is not, and fails here. (A free-form field, such as an
//    EnvoyFilter's patch value, would be reported too; none is used in this repository.)
//    The CEL rules of the CRDs (x-kubernetes-validations) are not evaluated.
// 3. Agreement, when the objects include the tingxie Knative Service: the DestinationRule's
//    limits are containerConcurrency x max-scale, the JWT's claim goes to the header named by
//    TINGXIE_TENANT_HEADER and a DENY policy refuses that header from anyone else, Prometheus
//    may read the port and path of the prometheus.io annotations, and a VirtualService (none by
//    default: knative/README.md, "Istio") neither retries 429 nor cuts a request short of
//    timeoutSeconds.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, file] = process.argv.slice(2);
if (!modules || !file) {
  console.error("usage: node validate-istio.mjs NODE_MODULES_DIR OBJECTS.json");
  process.exit(2);
}
const root = join(modules, "@kubernetes-models/istio");
const objects = JSON.parse(readFileSync(file, "utf8"));
let failures = 0, checked = 0;
const pass = (msg) => console.log(`PASS ${msg}`);
const fail = (msg) => { failures++; console.log(`FAIL ${msg}`); };

const groupOf = (api) => (api || "").includes("/") ? api.split("/")[0] : "";
const isIstio = (obj) => groupOf(obj.apiVersion) === "istio.io" || groupOf(obj.apiVersion).endsWith(".istio.io");
const pointer = (path) => path.map((p) => "/" + String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("");

const versions = new Map();  // apiVersion -> the package's module of that group and version
async function kinds(apiVersion) {
  if (!versions.has(apiVersion)) {
    const index = join(root, apiVersion, "index.js");
    versions.set(apiVersion, existsSync(index) ? await import(pathToFileURL(index).href) : null);
  }
  return versions.get(apiVersion);
}

// The schema's errors for obj, as [instancePath, message]; [] when valid.
function errorsOf(Kind, obj) {
  try {
    new Kind(obj).validate();
    return [];
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    return e.errors.map((x) => [x.instancePath, x.message]);
  }
}

// Paths of fields the schema does not know (see 2. above).
function unknownFields(Kind, obj) {
  const unknown = [];
  const probe = (value) => (value !== null && typeof value === "object") ? true : {};
  const known = (path, value) => {
    const copy = structuredClone(obj);
    let node = copy;
    for (const p of path.slice(0, -1)) node = node[p];
    node[path[path.length - 1]] = probe(value);
    const at = pointer(path);
    return errorsOf(Kind, copy).some(([where]) => where === at || where.startsWith(at + "/"));
  };
  const walk = (node, path) => {
    if (Array.isArray(node)) {
      node.forEach((v, i) => walk(v, [...path, i]));
    } else if (node !== null && typeof node === "object") {
      for (const [key, value] of Object.entries(node)) {
        if (value === null) continue;
        const p = [...path, key];
        if (known(p, value)) walk(value, p);
        else unknown.push(p.join("."));
      }
    }
  };
  for (const top of Object.keys(obj)) {
    if (top === "apiVersion" || top === "kind" || obj[top] === null) continue;
    if (known([top], obj[top])) walk(obj[top], [top]);
    else unknown.push(top);
  }
  return unknown;
}

for (const obj of objects) {
  if (!isIstio(obj)) continue;
  checked++;
  const name = `${obj.apiVersion} ${obj.kind}/${obj.metadata?.name}`;
  const module = await kinds(obj.apiVersion);
  const Kind = module?.[obj.kind];
  if (!Kind) { fail(`${name}: no such kind in Istio's CRDs`); continue; }
  const errors = errorsOf(Kind, obj);
  const unknown = errors.length ? [] : unknownFields(Kind, obj);
  if (errors.length) fail(`${name}: ${errors.map(([w, m]) => `${w || "(root)"} ${m}`).join("; ")}`);
  else if (unknown.length) fail(`${name}: unknown field(s) ${unknown.join(", ")}`);
  else pass(`${name} (Istio schema, no unknown fields)`);
}
if (checked === 0) fail("no Istio object found");

// ---- 3. agreement with the Knative Service ---------------------------------------------------
const ksvc = objects.find((o) => o.apiVersion === "serving.knative.dev/v1" && o.kind === "Service"
  && o.metadata?.name === "tingxie");
if (ksvc && checked) {
  const ns = ksvc.metadata.namespace || "default";
  const tmpl = ksvc.spec.template;
  const ann = tmpl.metadata?.annotations || {};
  const ctr = tmpl.spec.containers[0];
  const env = Object.fromEntries((ctr.env || []).map((e) => [e.name, e.value]));
  const cc = tmpl.spec.containerConcurrency;
  const maxScale = Number(ann["autoscaling.knative.dev/max-scale"]);
  const timeout = tmpl.spec.timeoutSeconds;
  const istio = (kind) => objects.filter((o) => isIstio(o) && o.kind === kind);
  const selectsTingxie = (o) => !o.spec?.selector
    || o.spec.selector.matchLabels?.["serving.knative.dev/service"] === "tingxie";

  // DestinationRule: the host of the revision's Services, and the revision's capacity.
  const capacity = cc * maxScale;
  const drs = istio("DestinationRule").filter((d) => d.metadata?.namespace === ns
    && (d.spec.host === `*.${ns}.svc.cluster.local` || d.spec.host.startsWith("tingxie")));
  if (!drs.length) fail(`agreement: a DestinationRule for the Services of namespace ${ns}`);
  for (const d of drs) {
    const pool = d.spec.trafficPolicy?.connectionPool || {};
    const label = `agreement: DestinationRule/${d.metadata.name}`;
    const limits = { "tcp.maxConnections": pool.tcp?.maxConnections,
      "http.http2MaxRequests": pool.http?.http2MaxRequests };
    for (const [k, v] of Object.entries(limits)) {
      if (v === capacity) pass(`${label} ${k} ${v} = containerConcurrency ${cc} x max-scale ${maxScale}`);
      else fail(`${label} ${k} is ${v}, not containerConcurrency ${cc} x max-scale ${maxScale} = ${capacity}`);
    }
    const pending = pool.http?.http1MaxPendingRequests;
    if (pending > 0 && pending <= capacity) pass(`${label} http1MaxPendingRequests ${pending} <= ${capacity}`);
    else fail(`${label} http1MaxPendingRequests is ${pending}, not 1..${capacity}`);
    const retries = pool.http?.maxRetries;
    if (retries > 0 && retries < capacity) pass(`${label} maxRetries ${retries} < capacity ${capacity}`);
    else fail(`${label} maxRetries is ${retries}: set 1..${capacity - 1} (Istio's default is unlimited)`);
    if (d.spec.trafficPolicy?.outlierDetection) pass(`${label} has outlierDetection`);
    else fail(`${label} has no outlierDetection`);
  }

  // The tenant header: written from the JWT, refused from anyone else.
  const header = (env.TINGXIE_TENANT_HEADER || "").toLowerCase();
  if (!header) fail("agreement: TINGXIE_TENANT_HEADER is set on the tingxie container");
  else {
    const written = istio("RequestAuthentication").filter(selectsTingxie).some((r) =>
      (r.spec.jwtRules || []).some((j) => (j.outputClaimToHeaders || []).some((h) => h.header.toLowerCase() === header)));
    if (written) pass(`agreement: a RequestAuthentication writes ${header} (TINGXIE_TENANT_HEADER) from a JWT claim`);
    else fail(`agreement: no RequestAuthentication writes ${header} (TINGXIE_TENANT_HEADER) from a JWT claim`);
    const denied = istio("AuthorizationPolicy").filter((p) => p.spec.action === "DENY" && selectsTingxie(p))
      .some((p) => (p.spec.rules || []).some((r) => (r.when || []).some((w) =>
        w.key.toLowerCase() === `request.headers[${header}]` && (w.values || []).includes("*"))));
    if (denied) pass(`agreement: a DENY AuthorizationPolicy refuses ${header} without a verified token`);
    else fail(`agreement: no DENY AuthorizationPolicy refuses ${header} sent by the client`);
  }

  // Prometheus: the port and path of the prometheus.io annotations are allowed.
  const port = ann["prometheus.io/port"], path = ann["prometheus.io/path"];
  const scrapes = istio("AuthorizationPolicy").filter((p) => (p.spec.action || "ALLOW") === "ALLOW" && selectsTingxie(p))
    .some((p) => (p.spec.rules || []).some((r) => (r.to || []).some((t) =>
      (t.operation?.ports || []).includes(port) && (t.operation?.paths || []).includes(path))));
  if (scrapes) pass(`agreement: an ALLOW rule lets Prometheus read ${path} on port ${port}`);
  else fail(`agreement: no ALLOW rule for ${path} on port ${port} (the prometheus.io annotations)`);

  // VirtualServices: none by default; one added must keep to the statuses' meaning.
  const vss = istio("VirtualService");
  if (!vss.length) pass("agreement: no VirtualService (Knative's routes, without retries, and Istio's default retry policy on 503 and connection failures apply)");
  for (const vs of vss) {
    const label = `agreement: VirtualService/${vs.metadata?.name}`;
    const owned = (vs.spec.hosts || []).filter((h) => h === "tingxie" || h.startsWith(`tingxie.${ns}`));
    if (owned.length) fail(`${label} names ${owned.join(", ")}: net-istio owns the VirtualServices of the Knative Service's hosts`);
    for (const route of vs.spec.http || []) {
      const on = (route.retries?.retryOn || "").split(",").map((s) => s.trim()).filter(Boolean);
      const bad = on.filter((s) => ["4xx", "retriable-4xx", "429"].includes(s));
      if (bad.length) fail(`${label} retries on ${bad.join(", ")}: 429 means the queue is full and must not be retried`);
      else pass(`${label} route ${route.name || ""}: no retry on 429`);
      const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
      const seconds = (d) => { const m = /^([\d.]+)(ms|s|m|h)$/.exec(String(d)); return m ? m[1] * unit[m[2]] : NaN; };
      for (const [k, v] of [["timeout", route.timeout], ["retries.perTryTimeout", route.retries?.perTryTimeout]]) {
        if (v === undefined) continue;
        if (seconds(v) >= timeout) pass(`${label} ${k} ${v} >= timeoutSeconds ${timeout}`);
        else fail(`${label} ${k} ${v} < timeoutSeconds ${timeout}: it would cut a transcription short (and a retry would compute it again)`);
      }
    }
  }
}

console.log(`istio: ${checked} objects checked, ${failures} failures`);
process.exit(failures ? 1 : 0);
