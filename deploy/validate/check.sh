#!/usr/bin/env bash
# check.sh - prove the Kubernetes manifests without a cluster.
#
# For the base and every overlay: render with `kubectl kustomize`, validate
# every object against the Kubernetes OpenAPI schemas with unknown fields
# rejected (validate.mjs), and run `moviectl lint` on the rendered set. Also
# checks that the config copies under deploy/k8s match configs/ and that the
# validator itself rejects broken objects (selftest.mjs).
#
# Usage: deploy/validate/check.sh [MOVIECTL]   (default: build/bin/moviectl)
# Needs kubectl and node; runs `npm ci` here when node_modules is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
moviectl=${1:-$root/build/bin/moviectl}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

for tool in kubectl node npm; do
	command -v "$tool" >/dev/null || { echo "check.sh: $tool not found"; echo "0 passed, 1 failed"; exit 1; }
done
[[ -x $moviectl ]] || { echo "check.sh: $moviectl not built"; echo "0 passed, 1 failed"; exit 1; }
if [[ ! -d $here/node_modules/kubernetes-models ]]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || { echo "0 passed, 1 failed"; exit 1; }
fi

# The ConfigMaps are generated from copies (kustomize reads no file outside
# its root); a copy that drifted from configs/ would deploy a stale config.
drift=0
for svc in $("$root/scripts/services.sh" names); do
	cmp -s "$root/configs/$svc/base.yaml" "$root/deploy/k8s/base/configs/$svc/base.yaml" ||
		{ echo "  drift: deploy/k8s/base/configs/$svc/base.yaml"; drift=1; }
	for env in dev staging production; do
		cmp -s "$root/configs/$svc/$env.yaml" "$root/deploy/k8s/overlays/$env/configs/$svc/$env.yaml" ||
			{ echo "  drift: deploy/k8s/overlays/$env/configs/$svc/$env.yaml"; drift=1; }
	done
done
((drift == 0)) && ok "config copies match configs/" || bad "config copies match configs/ (run scripts/deploy.sh sync-configs)"

for dir in base overlays/dev overlays/staging overlays/production guard; do
	name=${dir#overlays/}
	out=$tmp/$name.yaml
	if ! kubectl kustomize "$root/deploy/k8s/$dir" >"$out" 2>"$tmp/err"; then
		bad "$name renders"; cat "$tmp/err"; continue
	fi
	ok "$name renders ($(grep -c '^kind:' "$out") objects)"
	if node "$here/validate.mjs" "$out" >"$tmp/v" 2>&1; then ok "$name validates"; else bad "$name validates"; cat "$tmp/v"; fi
	if "$moviectl" lint "$out" >"$tmp/l" 2>&1; then ok "$name passes moviectl lint"; else bad "$name passes moviectl lint"; cat "$tmp/l"; fi
done

# Canary layout: both tracks behind one Service, canary share from replicas.
prod=$tmp/production.yaml
if [[ -s $prod ]] && /usr/bin/python3 - "$prod" $("$root/scripts/services.sh" names) <<'PY'
import sys, yaml
objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
deps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
for svc in sys.argv[2:]:
    stable, canary = deps[f"{svc}-production"], deps[f"{svc}-canary"]
    sel = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == svc)["spec"]["selector"]
    for d in (stable, canary):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in sel.items()), (svc, d["metadata"]["name"])
    assert stable["spec"]["selector"] != canary["spec"]["selector"], svc
    share = canary["spec"]["replicas"] / (canary["spec"]["replicas"] + stable["spec"]["replicas"])
    assert 0 < share <= 0.25, (svc, share)
PY
then ok "production canary layout"; else bad "production canary layout"; fi

if [[ -s $tmp/dev.yaml ]] && (cd "$here" && node selftest.mjs "$tmp/dev.yaml") >"$tmp/s" 2>&1; then
	ok "validator rejects broken objects (selftest)"
else
	bad "validator rejects broken objects (selftest)"; cat "$tmp/s"
fi

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
