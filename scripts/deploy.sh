#!/usr/bin/env bash
# deploy.sh - deploy the movie system to the current kubectl context (make deploy).
#
# Usage: scripts/deploy.sh ENV            apply deploy/k8s/overlays/ENV (dev|staging|production)
#        scripts/deploy.sh render ENV     print the rendered manifests, apply nothing
#        scripts/deploy.sh sync-configs   refresh the config copies under deploy/k8s from configs/
# Env:   MOVIE_IMAGE_TAG  image tag (dev default: git describe, as scripts/images.sh;
#                         staging/production default: the tag pinned in the overlay)
#        MOVIECTL         moviectl binary for the pre-apply lint (default build/bin/moviectl)
#        DRY_RUN=1        lint, then show what would change (kubectl diff); apply nothing
#
# The cluster is checked first (a clear message and how to start one when none
# answers); every apply is preceded by `moviectl lint` on exactly what is applied.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
k8s=$root/deploy/k8s

usage() { sed -n '3,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
environments="dev staging production"

# Fail early, before rendering and linting, when kubectl reaches no cluster.
require_cluster() {
	if ! command -v kubectl >/dev/null 2>&1; then
		echo "deploy.sh: kubectl not found; install it (it carries kustomize)" >&2
		exit 1
	fi
	local context server err
	context=$(kubectl config current-context 2>/dev/null || true)
	if [[ -z $context ]]; then
		cat >&2 <<MSG
deploy.sh: no Kubernetes cluster configured (kubectl has no current context${KUBECONFIG:+, KUBECONFIG=$KUBECONFIG}).
  Start a local one:   minikube start --cpus 2 --memory 4g
  then load the images (README, "Kubernetes"), or select a cluster:
  kubectl config use-context NAME
MSG
		exit 1
	fi
	server=$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}' 2>/dev/null || true)
	if ! err=$(kubectl version --request-timeout=5s -o json 2>&1 >/dev/null); then
		err=$(printf '%s\n' "$err" | grep -v '^\s*$' | tail -1)
		cat >&2 <<MSG
deploy.sh: no reachable Kubernetes cluster: context '$context', server ${server:-?} does not answer.
  kubectl: $err
  Start a local one:   minikube start --cpus 2 --memory 4g
  (minikube sets the context; then load the images as README "Kubernetes" shows),
  or select another cluster: kubectl config use-context NAME
MSG
		exit 1
	fi
}

sync_configs() {
	for svc in $("$root/scripts/services.sh" names); do
		install -D -m 0644 "$root/configs/$svc/base.yaml" "$k8s/base/configs/$svc/base.yaml"
		for env in dev staging production; do
			install -D -m 0644 "$root/configs/$svc/$env.yaml" "$k8s/overlays/$env/configs/$svc/$env.yaml"
		done
	done
	echo "deploy.sh: config copies refreshed from configs/" >&2
}

# render ENV > stdout, with the image tag override when one applies.
render() {
	local env=$1 tag=${MOVIE_IMAGE_TAG:-}
	[[ -d $k8s/overlays/$env ]] || {
		echo "deploy.sh: unknown environment '$env' (choose one of: $environments)" >&2
		exit 2
	}
	if [[ -z $tag && $env == dev ]]; then
		tag=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || true)
		tag=${tag:-0.1.0-dev}
		tag=${tag//[^A-Za-z0-9_.-]/-}
	fi
	if [[ -z $tag ]]; then
		kubectl kustomize "$k8s/overlays/$env"
		return
	fi
	# A throwaway kustomization on top of the overlay sets the tag without
	# editing the tree.
	local wrap
	wrap=$(mktemp -d "$k8s/overlays/.wrap.XXXXXX")
	trap 'rm -rf "$wrap"' RETURN
	cat >"$wrap/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../$env
images:
  - name: movie-metadata
    newTag: "$tag"
  - name: movie-rating
    newTag: "$tag"
  - name: movie-movie
    newTag: "$tag"
YAML
	kubectl kustomize "$wrap"
}

cmd=${1:-}
case $cmd in
sync-configs) sync_configs ;;
render)
	[[ $# -eq 2 ]] || usage
	render "$2"
	;;
dev | staging | production)
	require_cluster
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	render "$cmd" >"$out"
	moviectl=${MOVIECTL:-$root/build/bin/moviectl}
	if [[ -x $moviectl ]]; then
		"$moviectl" lint "$out"
	else
		echo "deploy.sh: $moviectl not built; run make first (lint is required before apply)" >&2
		exit 1
	fi
	if [[ ${DRY_RUN:-0} == 1 ]]; then
		# kubectl diff: exit 0 no difference, 1 differences shown, >1 an error.
		rc=0
		kubectl diff -f "$out" || rc=$?
		case $rc in
		0) echo "deploy.sh: $cmd is up to date; nothing would change" >&2 ;;
		1) echo "deploy.sh: DRY_RUN: the changes above would be applied to $cmd" >&2 ;;
		*) exit "$rc" ;;
		esac
		exit 0
	fi
	ns=movie-$cmd
	kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
	kubectl apply -f "$out"
	for d in $(kubectl -n "$ns" get deployments -o name); do
		kubectl -n "$ns" rollout status "$d" --timeout=5m
	done
	;;
'') usage ;;
*)
	echo "deploy.sh: unknown environment '$cmd' (choose one of: $environments)" >&2
	exit 2
	;;
esac
