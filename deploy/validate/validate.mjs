// validate.mjs - check rendered Kubernetes manifests against the official
// OpenAPI schemas (npm kubernetes-models), strictly.
//
// Usage: node validate.mjs FILE...   (multi-document YAML, e.g. kubectl kustomize output)
// Exit status: 0 all objects valid, 1 any invalid object, 2 usage or read error.
//
// kubernetes-models' validate() rejects wrong types and missing required
// fields but accepts unknown fields (a typo such as `readinessProbe.grpc.prot`
// passes). The strict pass below runs the same compiled schema validator over
// a Proxy of the object and records which properties it looks at: the
// validator reads every property its schema declares, and enumerates the keys
// of free-form maps (labels, ConfigMap data). A key that was neither read nor
// enumerated is not in the schema, so it is reported as an unknown field.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import YAML from "yaml";

const require = createRequire(import.meta.url);
const modelsRoot = dirname(require.resolve("kubernetes-models/package.json"));

// apiVersion "apps/v1" -> kubernetes-models/apps/v1/<Kind>.js; "v1" -> v1/<Kind>.js
async function loadModel(apiVersion, kind) {
  if (!/^[a-z0-9.]+(\/[a-z0-9]+)?$/.test(apiVersion) || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  const file = join(modelsRoot, ...apiVersion.split("/"), `${kind}.js`);
  let source;
  try {
    source = readFileSync(file, "utf8");
  } catch {
    return null;
  }
  const model = await import(pathToFileURL(file).href);
  // The model module imports its compiled schema validator; use the same one.
  const m = /from"(\.\.\/)+_schemas\/(\w+)\.js"/.exec(source);
  if (!m || !model[kind]) return null;
  const schema = await import(pathToFileURL(join(modelsRoot, "_schemas", `${m[2]}.js`)).href);
  return { Model: model[kind], validate: schema.validate };
}

// Wrap `value` so that property reads and key enumerations are recorded per
// object (by identity of the original object).
function track(value, seen) {
  if (value === null || typeof value !== "object") return value;
  let rec = seen.get(value);
  if (!rec) {
    rec = { read: new Set(), enumerated: false, touched: false, proxy: null };
    seen.set(value, rec);
  }
  if (!rec.proxy) {
    rec.proxy = new Proxy(value, {
      get(target, key, receiver) {
        rec.touched = true;
        if (typeof key === "string") rec.read.add(key);
        return track(Reflect.get(target, key, receiver), seen);
      },
      has(target, key) {
        rec.touched = true;
        if (typeof key === "string") rec.read.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        rec.touched = true;
        rec.enumerated = true;
        return Reflect.ownKeys(target);
      },
      getOwnPropertyDescriptor(target, key) {
        rec.touched = true;
        if (typeof key === "string") rec.read.add(key);
        return Reflect.getOwnPropertyDescriptor(target, key);
      },
    });
  }
  return rec.proxy;
}

// Report every key the validator never looked at. Objects it never touched
// (free-form values) and enumerated maps are not judged.
function unknownFields(value, seen, path, out) {
  if (value === null || typeof value !== "object") return;
  const rec = seen.get(value);
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, seen, `${path}[${i}]`, out));
    return;
  }
  if (!rec || !rec.touched) return;
  for (const key of Object.keys(value)) {
    if (!rec.enumerated && !rec.read.has(key)) {
      out.push(`${path}.${key}: unknown field`);
      continue;
    }
    unknownFields(value[key], seen, `${path}.${key}`, out);
  }
}

export async function validateObject(obj) {
  const errors = [];
  if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind) {
    return ["not a Kubernetes object (apiVersion and kind required)"];
  }
  const loaded = await loadModel(obj.apiVersion, obj.kind);
  if (!loaded) return [`no schema for ${obj.apiVersion} ${obj.kind}`];
  try {
    new loaded.Model(obj).validate();
  } catch (e) {
    errors.push(String(e.message || e).trim());
  }
  const seen = new WeakMap();
  loaded.validate(track(obj, seen));
  unknownFields(obj, seen, "", errors);
  return errors;
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node validate.mjs FILE...");
    return 2;
  }
  let objects = 0;
  let bad = 0;
  for (const file of files) {
    let docs;
    try {
      docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
    } catch (e) {
      console.error(`${file}: ${e.message}`);
      return 2;
    }
    for (const doc of docs) {
      if (doc.errors.length) {
        console.error(`${file}: ${doc.errors[0].message}`);
        return 2;
      }
      const obj = doc.toJS();
      if (obj === null || obj === undefined) continue;
      objects++;
      const name = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
      const errors = await validateObject(obj);
      if (errors.length) {
        bad++;
        for (const e of errors) console.log(`${file}: ${name}: ${e}`);
      }
    }
  }
  console.error(`validate: ${objects} objects, ${bad} invalid`);
  return bad ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
