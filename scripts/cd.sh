#!/usr/bin/env bash
# cd.sh - the continuous-deployment pipeline (make cd; docs/release.md
# "Continuous deployment"; decision: docs/adr/0011-continuous-deployment.md).
#
# Usage: scripts/cd.sh run [OPTIONS] [COMMIT]    one commit (default HEAD of --repo)
#        scripts/cd.sh watch [OPTIONS] --remote URL [--branch B] [--interval S]
#                            [--from COMMIT] [--max-polls N]
#        scripts/cd.sh history [--state DIR] [--json]
#        scripts/cd.sh steps                     the step names, in order
# Options: --config FILE   pipeline configuration (default: the commit's deploy/cd/pipeline.yaml)
#          --state DIR     state directory (default $MOVIE_CD_STATE or <repo>/.cd)
#          --repo DIR      git repository the commit is taken from (default: this tree)
#          --force         run a commit again even though it has a final record
#          --until STEP    stop after STEP (e.g. push: build and push the images only)
# Steps, each idempotent: gate images push render apply status smoke release.
# Exit: 0 the commit reached production (or --until STEP passed), 1 the commit is
# bad (a gate failed; recorded, not deployed), 2 pipeline error (usage, config,
# release error), 3 another pipeline holds the lock.
# Every step's output and timing go to STATE/runs/<commit>/log; the run ends with
# one JSON record (STATE/runs/<commit>/record.json, also printed on stdout).
# A run killed mid-way resumes at the first step that did not finish.
# shellcheck disable=SC2154 # CFG_* are assigned by load_config's eval
set -uo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
root=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
STEPS=(gate images push render apply status smoke release)
SKIPPED=200 # a step function's exit status meaning "not applicable, skipped"

usage() { sed -n '5,21p' "$self" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "cd.sh: $*" >&2; exit 2; }
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
ms() { date +%s%3N; }

# ---- options ------------------------------------------------------------------------
cmd=${1:-}
[[ -n $cmd ]] || usage
shift
config="" state=${MOVIE_CD_STATE:-} repo=$root force=0 until="" remote="" branch=main
interval=10 from="" max_polls=0 json=0 commit_arg=""
while (($#)); do
	case $1 in
	--config) config=$(realpath -m "$2"); shift 2 ;;
	--state) state=$(realpath -m "$2"); shift 2 ;;
	--repo) repo=$(realpath -m "$2"); shift 2 ;;
	--force) force=1; shift ;;
	--until) until=$2; shift 2 ;;
	--remote) remote=$2; shift 2 ;;
	--branch) branch=$2; shift 2 ;;
	--interval) interval=$2; shift 2 ;;
	--from) from=$2; shift 2 ;;
	--max-polls) max_polls=$2; shift 2 ;;
	--json) json=1; shift ;;
	-h | --help) usage ;;
	-*) die "unknown option $1" ;;
	*) [[ -z $commit_arg ]] || die "one commit at a time"; commit_arg=$1; shift ;;
	esac
done
[[ -n $state ]] || state=$repo/.cd
if [[ -n $until ]]; then
	[[ " ${STEPS[*]} " == *" $until "* ]] || die "--until: unknown step '$until' (steps: ${STEPS[*]})"
fi
[[ $interval =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--interval: not a number of seconds: $interval"
[[ $max_polls =~ ^[0-9]+$ ]] || die "--max-polls: not a count: $max_polls"
MOVIECTL=${MOVIECTL:-$root/build/bin/moviectl}
KUBECTL=${KUBECTL:-kubectl}

# ---- configuration --------------------------------------------------------------------
# load_config FILE: CFG_<key> shell variables, environment overrides applied.
load_config() {
	local file=$1 out
	[[ -r $file ]] || die "pipeline config $file not readable"
	out=$("$PY" - "$file" <<'PY'
import os, re, shlex, sys, yaml
KEYS = {"gate": "make test", "images": "build", "registry": "", "registry_tls_verify": "true",
        "staging_namespace": "movie-staging", "production_namespace": "movie-production",
        "status_timeout": "5m", "smoke_addresses": "", "smoke_timeout": "60",
        "prometheus": "", "release_policy": "", "release_args": ""}
try:
    with open(sys.argv[1]) as f:
        doc = yaml.safe_load(f) or {}
except (OSError, yaml.YAMLError) as e:
    sys.exit("pipeline config %s: %s" % (sys.argv[1], e))
if not isinstance(doc, dict):
    sys.exit("pipeline config %s: a mapping of keys is expected" % sys.argv[1])
for k in doc:
    if k not in KEYS:
        sys.exit("pipeline config %s: unknown key %r (known: %s)" % (sys.argv[1], k, ", ".join(KEYS)))
for k, default in KEYS.items():
    v = doc.get(k, default)
    if isinstance(v, bool):
        v = "true" if v else "false"
    v = str("" if v is None else v)
    v = os.environ.get("MOVIE_CD_" + k.upper(), v)
    print("CFG_%s=%s" % (k, shlex.quote(v)))
PY
) || exit 2
	eval "$out"
	case $CFG_images in build | none) ;; *) die "pipeline config: images must be build or none, not '$CFG_images'" ;; esac
	case $CFG_registry_tls_verify in true | false) ;; *) die "pipeline config: registry_tls_verify must be true or false" ;; esac
	[[ $CFG_smoke_timeout =~ ^[0-9]+$ ]] || die "pipeline config: smoke_timeout must be seconds"
	[[ -n $CFG_registry ]] || die "pipeline config: registry is required (MOVIE_CD_REGISTRY)"
	[[ $CFG_registry =~ ^[A-Za-z0-9.:_/-]+$ ]] || die "pipeline config: registry '$CFG_registry' is not host[:port][/path]"
}

# ---- state ----------------------------------------------------------------------------
# STATE/lock            flock: one pipeline run at a time per state directory
# STATE/watch.lock      flock: one watcher per state directory
# STATE/runs/<sha>/     steps (one line per step start and end), log, record.json, src/
# STATE/commits.tsv     sha result step at reason: one line per finished run
# STATE/production      the commit production runs (last one that passed every gate)
# STATE/watch.last      the last commit the watcher finished
# take_lock FILE FD: exit 3 when someone holds it. The steps run with the fd closed,
# so a process a killed run left behind never holds the next run off.
take_lock() {
	local file=$1 fd=$2
	mkdir -p "$(dirname "$file")"
	eval "exec $fd>>\"\$file\""
	if ! flock -n "$fd"; then
		echo "cd.sh: another pipeline holds $file ($(cat "$file.owner" 2>/dev/null || echo '?'))" >&2
		exit 3
	fi
	printf '%s/%s since %s\n' "$(hostname)" "$$" "$(now)" >"$file.owner"
}

steps_file() { echo "$run/steps"; }
# step_done NAME: the step's last end line says ok or skipped.
step_done() {
	awk -v n="$1" '$1 == n && $2 != "start" { r = $2 } END { exit !(r == "ok" || r == "skipped") }' "$run/steps"
}

log() { printf '%s cd.sh[%s]: %s\n' "$(now)" "${short:-}" "$*" | tee -a "$run/log" >&2; }

# run_step NAME: run step_NAME in a subshell, output to the run log, timing to steps.
child=""
run_step() {
	local name=$1 t0 t1 rc result
	if step_done "$name"; then
		log "step $name: already done in an earlier attempt (resumed)"
		return 0
	fi
	t0=$(ms)
	echo "$name start 0 $t0" >>"$run/steps"
	log "step $name: start"
	printf '==== step %s (commit %s) %s\n' "$name" "$sha" "$(now)" >>"$run/log"
	(step_"$name") >>"$run/log" 2>&1 </dev/null 8>&- 9>&- &
	child=$!
	wait "$child"
	rc=$?
	child=""
	t1=$(ms)
	case $rc in
	0) result=ok ;;
	"$SKIPPED") result=skipped ;;
	*) result=failed ;;
	esac
	echo "$name $result $((t1 - t0)) $t0 $rc" >>"$run/steps"
	log "step $name: $result in $(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1000 }') s (exit $rc)"
	[[ $result != failed ]]
}

on_signal() {
	if [[ -n $child ]]; then
		kill -TERM "$child" 2>/dev/null
		wait "$child" 2>/dev/null
	fi
	[[ -n ${run:-} && -d ${run:-/nonexistent} ]] && log "interrupted; 'scripts/cd.sh run $sha' resumes"
	exit 143
}

# ---- the steps (each runs in the commit's checkout, $src) ------------------------------
services() { (cd "$src" && scripts/services.sh names); }
image_ref() { echo "$CFG_registry/movie-$1:$tag"; }

step_gate() {
	cd "$src" || return 1
	echo "gate: $CFG_gate"
	MOVIE_CD_COMMIT=$sha MOVIECTL=$MOVIECTL bash -c "$CFG_gate"
}

step_images() {
	[[ $CFG_images == build ]] || { echo "images: none (pipeline config): the cluster pulls $(image_ref '<svc>') from elsewhere"; return $SKIPPED; }
	cd "$src" || return 1
	# shellcheck disable=SC2046
	MOVIE_IMAGE_TAG=$tag MOVIE_KEEP_BUILD_STAGE=${MOVIE_KEEP_BUILD_STAGE:-1} scripts/images.sh $(services)
}

step_push() {
	[[ $CFG_images == build ]] || { echo "images: none: nothing to push"; return $SKIPPED; }
	local svc ref engine=${CONTAINER_ENGINE:-podman}
	export CONTAINERS_CONF=${CONTAINERS_CONF:-$src/deploy/container/containers.conf}
	for svc in $(services); do
		ref=$(image_ref "$svc")
		"$engine" tag "movie-$svc:$tag" "$ref" || return 1
		"$engine" push --tls-verify="$CFG_registry_tls_verify" --digestfile "$run/digest.$svc" "$ref" || return 1
		echo "pushed $ref@$(cat "$run/digest.$svc")"
	done
}

# render: the staging overlay of the commit, image references of the registry and tag.
step_render() {
	local wrap=$src/deploy/k8s/overlays/.cd-staging svc
	rm -rf "$wrap"
	mkdir -p "$wrap" || return 1
	{
		printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
		printf 'namespace: %s\nresources:\n  - ../staging\nimages:\n' "$CFG_staging_namespace"
		for svc in $(services); do
			printf '  - name: movie-%s\n    newName: %s/movie-%s\n    newTag: "%s"\n' "$svc" "$CFG_registry" "$svc" "$tag"
		done
	} >"$wrap/kustomization.yaml"
	cat "$wrap/kustomization.yaml"
	"$KUBECTL" kustomize "$wrap" >"$run/staging.yaml.tmp" || return 1
	mv "$run/staging.yaml.tmp" "$run/staging.yaml"
	echo "rendered $(grep -c '^kind:' "$run/staging.yaml") objects to $run/staging.yaml"
	# The same lint deploy.sh runs before every apply.
	"$MOVIECTL" lint "$run/staging.yaml"
}

step_apply() {
	local ns=$CFG_staging_namespace
	"$KUBECTL" get namespace "$ns" >/dev/null 2>&1 || "$KUBECTL" create namespace "$ns" || return 1
	"$KUBECTL" apply -f "$run/staging.yaml"
}

deployments_in() { # FILE: Deployment names of a rendered manifest
	"$PY" -c 'import sys, yaml
for o in yaml.safe_load_all(open(sys.argv[1])):
    if o and o.get("kind") == "Deployment": print(o["metadata"]["name"])' "$1"
}

step_status() {
	# shellcheck disable=SC2046
	"$MOVIECTL" status -n "$CFG_staging_namespace" --timeout "$CFG_status_timeout" $(deployments_in "$run/staging.yaml")
}

step_smoke() {
	local args=(--namespace "$CFG_staging_namespace" --timeout "$CFG_smoke_timeout" --api "$src/api" --id "cd-smoke-$tag")
	[[ -z $CFG_smoke_addresses ]] || args+=(--addresses "$CFG_smoke_addresses")
	KUBECTL=$KUBECTL "$PY" "$root/scripts/cd-smoke.py" "${args[@]}" || return 1
	annotate "$CFG_staging_namespace" "movie.dev/commit=$sha" "movie.dev/deployed-at=$(now)" "movie.dev/cd-run=$runid"
}

step_release() {
	local ns=$CFG_production_namespace svc args=() rc
	if ! "$MOVIECTL" release --help >/dev/null 2>&1; then
		echo "release: $MOVIECTL has no 'release' subcommand (issue 10); production is not changed"
		return 2
	fi
	args=(release -n "$ns" --verdict "$run/verdict.json")
	for svc in $(services); do
		args+=(--image "$svc=$(image_ref "$svc")")
		args+=(--config "$svc=$src/deploy/k8s/overlays/production/configs/$svc/production.yaml")
	done
	[[ -z $CFG_prometheus ]] || args+=(--prometheus "$CFG_prometheus")
	if [[ -n $CFG_release_policy ]]; then
		case $CFG_release_policy in /*) args+=(--policy "$CFG_release_policy") ;; *) args+=(--policy "$src/$CFG_release_policy") ;; esac
	fi
	# shellcheck disable=SC2206
	[[ -z $CFG_release_args ]] || args+=($CFG_release_args)
	echo "release: $MOVIECTL ${args[*]}"
	"$MOVIECTL" "${args[@]}"
	rc=$?
	echo "release: exit $rc (0 promoted, 1 aborted and reverted, 2 error)"
	[[ $rc == 0 ]] || return "$rc"
	annotate "$ns" "movie.dev/commit=$sha" "movie.dev/deployed-at=$(now)" "movie.dev/cd-run=$runid"
}

# annotate NS KEY=VALUE...: every Deployment of the movie system in NS.
annotate() {
	local ns=$1
	shift
	"$KUBECTL" -n "$ns" annotate --overwrite deployments -l app.kubernetes.io/part-of=movie "$@"
}

# ---- one run -------------------------------------------------------------------------
resolve_commit() { # REV -> full sha in $repo
	git -C "$repo" rev-parse --verify -q "$1^{commit}" || die "no such commit '$1' in $repo"
}

prepare_checkout() {
	if [[ ! -d $src/.git ]]; then
		rm -rf "$src"
		git clone -q --shared --no-checkout "$repo" "$src" || return 1
	fi
	git -C "$src" checkout -q --detach --force "$sha" && git -C "$src" clean -q -fdx -e build/
}

# The final record: commit, each step's result and duration, the release verdict.
write_record() { # RESULT FAILED-STEP REASON
	local result=$1 failed=$2 reason=$3 verdict=null ctime
	[[ -s $run/verdict.json ]] && jq -e . "$run/verdict.json" >/dev/null 2>&1 && verdict=$(cat "$run/verdict.json")
	ctime=$(git -C "$repo" log -1 --format=%cI "$sha")
	awk '$2 != "start" { print $1, $2, $3, $4, $5 }' "$run/steps" |
		jq -R -s --arg commit "$sha" --arg tag "$tag" --arg run "$runid" --arg result "$result" \
			--arg failed "$failed" --arg reason "$reason" --arg ctime "$ctime" --arg fin "$(now)" \
			--arg started "$started" --arg registry "$CFG_registry" --argjson verdict "$verdict" \
			--argjson attempt "$attempt" --arg images "$CFG_images" '
		[split("\n")[] | select(length > 0) | split(" ")
		  | {name: .[0], result: .[1], duration_s: ((.[2] | tonumber) / 1000),
		     started_ms: (.[3] | tonumber), exit: (.[4] | tonumber)}] as $all
		| ($all | group_by(.name) | map({key: .[0].name, value: (.[-1] + {attempts: length})}) | from_entries) as $last
		| {commit: $commit, tag: $tag, run: $run, committed: $ctime, started: $started, finished: $fin,
		   attempt: $attempt, result: $result,
		   failed_step: (if $failed == "" then null else $failed end),
		   reason: (if $reason == "" then null else $reason end),
		   images: {registry: $registry, tag: $tag, built: ($images == "build")},
		   steps: ([$last[]] | sort_by(.started_ms)
		     | map(. + {started: (.started_ms / 1000 | floor | todate)} | del(.started_ms))),
		   total_s: ([$last[] | .duration_s] | add // 0),
		   commit_to_production_s: (if $result == "deployed" then
		     (($fin | fromdate) - ($ctime | sub("(?<t>.*T..:..:..).*"; "\(.t)Z") | fromdate)) else null end),
		   release: $verdict}' >"$run/record.json.tmp" && mv "$run/record.json.tmp" "$run/record.json"
	printf '%s\t%s\t%s\t%s\t%s\n' "$sha" "$result" "${failed:--}" "$(now)" "${reason:--}" >>"$state/commits.tsv"
}

# pipeline REV: run (or resume) the pipeline for one commit; exit status as documented.
pipeline() {
	sha=$(resolve_commit "$1") || exit 2
	short=${sha:0:12}
	tag=$short
	take_lock "$state/lock" 9
	run=$state/runs/$sha
	src=$run/src
	# A --until run's record (result passed) is a checkpoint: the next run goes on from it.
	if [[ -s $run/record.json && $force == 0 && $(jq -r .result "$run/record.json" 2>/dev/null) == passed ]]; then
		rm -f "$run/record.json"
	fi
	if [[ -s $run/record.json && $force == 0 ]]; then
		echo "cd.sh: $short already has a final record ($run/record.json; --force runs it again)" >&2
		cat "$run/record.json"
		case $(jq -r .result "$run/record.json") in deployed) return 0 ;; bad) return 1 ;; *) return 2 ;; esac
	fi
	if [[ $force == 1 && -d $run ]]; then
		rm -rf "$run/steps" "$run/record.json" "$run/verdict.json"
	fi
	mkdir -p "$run"
	touch "$run/steps" "$run/log"
	attempt=$(($(cat "$run/attempts" 2>/dev/null || echo 0) + 1))
	echo "$attempt" >"$run/attempts"
	runid=$short-$attempt
	started=$(awk '$2 == "start" { print $4; exit }' "$run/steps")
	if [[ -n $started ]]; then started=$(date -u -d "@$((started / 1000))" +%Y-%m-%dT%H:%M:%SZ); else started=$(now); fi
	trap on_signal TERM INT
	log "pipeline for $sha (attempt $attempt) in $run"
	if ! prepare_checkout >>"$run/log" 2>&1; then
		log "cannot check out $sha"
		return 2
	fi
	local cfgfile=${config:-$src/deploy/cd/pipeline.yaml}
	# A commit whose pipeline config is unusable is recorded as an error, then stops.
	local cfgerr
	if ! cfgerr=$( (load_config "$cfgfile") 2>&1 >/dev/null); then
		printf '%s\n' "$cfgerr" | tee -a "$run/log" >&2
		log "pipeline config $cfgfile unusable"
		printf '%s\t%s\t%s\t%s\t%s\n' "$sha" error config "$(now)" "pipeline config unusable" >>"$state/commits.tsv"
		return 2
	fi
	load_config "$cfgfile"
	local step result=deployed failed="" reason="" rc=0 last
	for step in "${STEPS[@]}"; do
		if ! run_step "$step"; then
			last=$(awk -v n="$step" '$1 == n && $2 != "start" { r = $5 } END { print r }' "$run/steps")
			failed=$step
			if [[ $step == release && $last == 1 ]]; then
				result=bad reason="release aborted: the canary failed its analysis (verdict in $run/verdict.json)"
			elif [[ $step == release ]]; then
				result=error reason="release error (exit $last); see $run/log"
			else
				result=bad reason="step $step failed (exit $last); see $run/log"
			fi
			break
		fi
		if [[ $step == "$until" ]]; then
			result=passed reason="stopped after $until (--until)"
			break
		fi
	done
	case $result in
	deployed) echo "$sha" >"$state/production.tmp" && mv "$state/production.tmp" "$state/production"; rc=0 ;;
	passed) rc=0 ;;
	bad) rc=1 ;;
	*) rc=2 ;;
	esac
	if [[ $result == bad || $result == error ]]; then
		local why
		why=$(jq -c -n --arg c "$sha" --arg s "$failed" --arg r "$reason" --arg at "$(now)" \
			'{commit: $c, step: $s, reason: $r, at: $at}')
		# Why this commit was stopped, on the Deployments it never reached (best effort:
		# a cluster that cannot be reached is why some runs fail).
		for ns in "$CFG_staging_namespace" "$CFG_production_namespace"; do
			annotate "$ns" "movie.dev/cd-stopped=$why" >>"$run/log" 2>&1 || true
		done
	fi
	write_record "$result" "$failed" "$reason"
	log "result: $result${reason:+ ($reason)}"
	cat "$run/record.json"
	return $rc
}

# ---- watch ---------------------------------------------------------------------------
watch() {
	[[ -n $remote ]] || die "watch: --remote URL is required"
	local mirror=$state/repo polls=0 head last c rc
	take_lock "$state/watch.lock" 8
	if [[ ! -d $mirror ]]; then
		git init -q --bare "$mirror" || die "watch: cannot create $mirror"
	fi
	repo=$mirror
	echo "cd.sh: watching $remote branch $branch every ${interval}s (state $state)" >&2
	trap 'exit 143' TERM INT
	while :; do
		polls=$((polls + 1))
		if git -C "$mirror" fetch -q --no-tags "$remote" "+refs/heads/$branch:refs/remotes/cd/$branch" 2>"$state/fetch.err"; then
			head=$(git -C "$mirror" rev-parse "refs/remotes/cd/$branch")
			last=$(cat "$state/watch.last" 2>/dev/null || true)
			if [[ -z $last ]]; then
				# A new watcher starts at --from (exclusive) or deploys the current head only.
				if [[ -n $from ]]; then last=$(git -C "$mirror" rev-parse --verify -q "$from^{commit}") || die "watch: --from $from unknown"; fi
			fi
			local todo
			if [[ -z $last ]]; then
				todo=$head
			elif git -C "$mirror" merge-base --is-ancestor "$last" "$head"; then
				todo=$(git -C "$mirror" rev-list --reverse --first-parent "$last..$head")
			else
				echo "cd.sh: $branch was rewritten ($last is no ancestor of $head): continuing from $head" >&2
				todo=$head
			fi
			for c in $todo; do
				echo "cd.sh: watch: commit $c" >&2
				(pipeline "$c")
				rc=$?
				case $rc in
				0 | 1 | 2) echo "$c" >"$state/watch.last.tmp" && mv "$state/watch.last.tmp" "$state/watch.last" ;;
				*) echo "cd.sh: watch: run for $c ended with $rc; retried next poll" >&2; break ;;
				esac
			done
		else
			echo "cd.sh: watch: fetch failed: $(tail -1 "$state/fetch.err")" >&2
		fi
		((max_polls > 0 && polls >= max_polls)) && return 0
		sleep "$interval" # the poll interval (pacing, not synchronisation)
	done
}

# ---- history -------------------------------------------------------------------------
history() {
	local ns
	if ((json)); then
		jq -R -s 'split("\n") | map(select(length > 0) | split("\t")
		  | {commit: .[0], result: .[1], step: .[2], at: .[3], reason: .[4]})' "$state/commits.tsv" 2>/dev/null || echo '[]'
		return
	fi
	echo "production: $(cat "$state/production" 2>/dev/null || echo none) (last commit that passed every gate)"
	for ns in ${MOVIE_CD_STAGING_NAMESPACE:-movie-staging} ${MOVIE_CD_PRODUCTION_NAMESPACE:-movie-production}; do
		"$KUBECTL" -n "$ns" get deployments -l app.kubernetes.io/part-of=movie -o json 2>/dev/null |
			jq -r --arg ns "$ns" '.items[] | [$ns, .metadata.name,
			  (.metadata.annotations["movie.dev/commit"] // "-"),
			  (.metadata.annotations["movie.dev/deployed-at"] // "-"),
			  (.spec.template.spec.containers[0].image)] | @tsv' || true
	done | column -t -N NAMESPACE,DEPLOYMENT,COMMIT,SINCE,IMAGE 2>/dev/null || true
	echo
	echo "runs (oldest first):"
	if [[ -s $state/commits.tsv ]]; then
		column -t -s $'\t' -N COMMIT,RESULT,STEP,AT,REASON "$state/commits.tsv"
	else
		echo "  none"
	fi
}

case $cmd in
run)
	trap '' PIPE
	pipeline "${commit_arg:-HEAD}"
	exit $?
	;;
watch) watch ;;
history) history ;;
steps) printf '%s\n' "${STEPS[@]}" ;;
*) usage ;;
esac
