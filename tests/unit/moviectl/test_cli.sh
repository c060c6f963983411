#!/usr/bin/env bash
# moviectl lint as CI uses it: exit status, text lines, JSON, errors.
# Usage: test_cli.sh MOVIECTL FIXTURE_DIR
set -u
bin=$1 fixtures=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
expect() { # NAME WANT_STATUS CMD...
	local name=$1 want=$2; shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	local got=$?
	if [[ $got == "$want" ]]; then ok "$name"; else bad "$name (exit $got, want $want)"; cat "$tmp/out" "$tmp/err"; fi
}

expect "good passes" 0 "$bin" lint "$fixtures/good.yaml"
[[ ! -s $tmp/out ]] && ok "good prints no finding" || bad "good prints no finding"

sed 's/image: movie-movie:0.1.0/image: movie-movie:latest/' "$fixtures/good.yaml" >"$tmp/latest.yaml"
expect "latest tag fails" 1 "$bin" lint "$tmp/latest.yaml"
if grep -Eq "^$tmp/latest.yaml:[0-9]+: Deployment/movie-production/movie-production: image-tag: " "$tmp/out" &&
	[[ $(wc -l <"$tmp/out") == 1 ]]; then ok "one line: file, object, rule"; else bad "one line: file, object, rule"; cat "$tmp/out"; fi

expect "json exits 1" 1 "$bin" lint --format json "$tmp/latest.yaml"
if /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
f = r["findings"]
assert r["passed"] is False and r["objects"] == 1, r
assert len(f) == 1 and f[0]["rule"] == "image-tag" and f[0]["object"].startswith("Deployment/"), f
assert f[0]["file"].endswith("latest.yaml") and f[0]["line"] > 1, f
' "$tmp/out"; then ok "json findings"; else bad "json findings"; fi

expect "json good" 0 "$bin" lint --format=json "$fixtures/good.yaml"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["passed"] and r["findings"]==[]' "$tmp/out" &&
	ok "json good passed=true" || bad "json good passed=true"

# The manifests split over two files (ConfigMap in one, Deployment in the other).
awk 'BEGIN{f=1} /^---$/{f++} {print > ("'"$tmp"'/part" (f==1 ? 1 : 2) ".yaml")}' "$fixtures/good.yaml"
expect "split across files" 0 "$bin" lint "$tmp/part1.yaml" "$tmp/part2.yaml"
expect "configmap missing" 1 "$bin" lint "$tmp/part2.yaml"
grep -q ': config: ' "$tmp/out" && ok "config rule named" || bad "config rule named"

expect "stdin" 0 "$bin" lint - <"$fixtures/good.yaml"
expect "missing file" 2 "$bin" lint "$tmp/nope.yaml"
printf 'a: [1\n' >"$tmp/syntax.yaml"
expect "syntax error" 2 "$bin" lint "$tmp/syntax.yaml"
grep -q 'syntax.yaml:' "$tmp/err" && ok "syntax error names file" || bad "syntax error names file"
expect "no files" 2 "$bin" lint
expect "bad format" 2 "$bin" lint --format xml "$fixtures/good.yaml"
expect "unknown command" 2 "$bin" frobnicate

# Config rules live once (issue 14 item 4): the dotted form reads as the
# binary reads it, and lint reports every error the binary reports at start,
# each at its ConfigMap line.
expect "dotted overlay passes" 0 "$bin" lint "$fixtures/dotted.yaml"
[[ ! -s $tmp/out ]] && ok "dotted overlay: no finding" || { bad "dotted overlay: no finding"; cat "$tmp/out"; }
expect "config errors fail" 1 "$bin" lint "$fixtures/config-errors.yaml"
want="16:shutdown.drain_delay 24:api.prot 25:log.level 31:peers.metadata.addresses"
got=$(sed -nE "s|^$fixtures/config-errors.yaml:([0-9]+): Deployment/movie-production/movie-production: config: container movie: ([a-z_.]+): .*|\1:\2|p" "$tmp/out" | tr '\n' ' ')
[[ $got == "$want " && $(wc -l <"$tmp/out") == 4 ]] && ok "config errors at ConfigMap lines" ||
	{ bad "config errors at ConfigMap lines (got '$got')"; cat "$tmp/out"; }
# The same files given to the binary: the same keys refused.
movie=$(dirname "$bin")/movie
if [[ -x $movie ]]; then
	/usr/bin/python3 - "$fixtures/config-errors.yaml" "$tmp" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc.get("kind") == "ConfigMap":
        for key, text in doc["data"].items():
            open("%s/%s" % (sys.argv[2], key), "w").write(text)
PY
	env -u MOVIE_API_PORT "$movie" --config "$tmp/base.yaml" --config "$tmp/production.yaml" --check-config 2>"$tmp/binerr"
	bin_keys=$(sed -nE 's|^movie: [^ ]+:[0-9]+:[0-9]+: ([a-z_.]+): .*|\1|p' "$tmp/binerr" | tr '\n' ' ')
	lint_keys=$(echo "$got" | tr ' ' '\n' | sed -n 's/^[0-9]*://p' | tr '\n' ' ')
	[[ -n $bin_keys && $bin_keys == "$lint_keys" ]] && ok "lint refuses what the binary refuses" ||
		{ bad "lint refuses what the binary refuses (binary: '$bin_keys', lint: '$lint_keys')"; cat "$tmp/binerr"; }
else
	bad "movie binary next to moviectl"
fi

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
