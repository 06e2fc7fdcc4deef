// Validates PodMonitor / ServiceMonitor / PrometheusRule objects against the Prometheus
// Operator's schemas, as packaged by @kubernetes-models/prometheus-operator (npm).
//   node validate-monitoring.mjs NODE_MODULES_DIR OBJECTS.json
// OBJECTS.json: a JSON array of Kubernetes objects (scripts/check-deploy.sh converts the
// rendered YAML). Objects of other kinds are skipped. Exit status 1 on any failure.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, file] = process.argv.slice(2);
const v1 = await import(pathToFileURL(join(modules,
  "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js")).href);
const objects = JSON.parse(readFileSync(file, "utf8"));
let failures = 0, checked = 0;
for (const obj of objects) {
  if (obj.apiVersion !== "monitoring.coreos.com/v1" || !(obj.kind in v1)) continue;
  checked++;
  const name = `${obj.kind}/${obj.metadata?.name}`;
  try {
    new v1[obj.kind](obj).validate();
    console.log(`PASS ${name} (Prometheus Operator schema)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
if (checked === 0) { console.log("FAIL no Prometheus Operator object found"); failures++; }
console.log(`monitoring: ${checked} objects checked, ${failures} failures`);
process.exit(failures ? 1 : 0);
