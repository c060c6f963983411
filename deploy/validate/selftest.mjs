// selftest.mjs - proves validate.mjs can fail: a clean Deployment passes, and
// a typo'd field, a misplaced field, a wrong type and a missing required field
// are each rejected. Also shows why the strict pass exists: kubernetes-models
// alone accepts the typo. Usage: node selftest.mjs RENDERED.yaml
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { validateObject } from "./validate.mjs";

const docs = YAML.parseAllDocuments(readFileSync(process.argv[2], "utf8")).map((d) => d.toJS());
const base = docs.find((o) => o && o.kind === "Deployment");
let pass = 0;
let fail = 0;
function check(name, cond, detail) {
  if (cond) pass++;
  else fail++;
  console.log(`${cond ? "ok  " : "FAIL"} ${name}${cond ? "" : `: ${JSON.stringify(detail)}`}`);
}
const copy = () => structuredClone(base);

let errs = await validateObject(copy());
check("clean Deployment passes", errs.length === 0, errs);

const typo = copy();
typo.spec.template.spec.containers[0].readinessProbe.grpc.prot = 8081;
let lenient = true;
try {
  new Deployment(typo).validate();
} catch {
  lenient = false;
}
check("kubernetes-models alone accepts a typo'd field", lenient, "it rejected it");
errs = await validateObject(typo);
check("typo'd readinessProbe.grpc.prot rejected",
  errs.some((e) => e.includes("readinessProbe.grpc.prot: unknown field")), errs);

const misplaced = copy();
misplaced.spec.template.spec.terminationGracePeriod = 45;
errs = await validateObject(misplaced);
check("unknown pod field rejected", errs.some((e) => e.includes("terminationGracePeriod: unknown field")), errs);

const wrongType = copy();
wrongType.spec.replicas = "two";
errs = await validateObject(wrongType);
check("wrong type rejected", errs.some((e) => e.includes("replicas")), errs);

const missing = copy();
delete missing.spec.selector;
errs = await validateObject(missing);
check("missing required field rejected", errs.some((e) => e.includes("selector")), errs);

const labels = copy();
labels.metadata.labels["example.com/any-key"] = "x";
errs = await validateObject(labels);
check("free-form map keys (labels) accepted", errs.length === 0, errs);

console.log(`${pass} passed, ${fail} failed`);
process.exitCode = fail ? 1 : 0;
