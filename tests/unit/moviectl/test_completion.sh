#!/usr/bin/env bash
# The bash completion of moviectl (tools/moviectl/completion.bash): sourced in
# a real bash, its function called as readline would (COMP_WORDS/COMP_CWORD).
# Usage: test_completion.sh COMPLETION_FILE
set -u
# Plain bash: no bash-completion package, extglob off, as in a fresh shell.
shopt -u extglob
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# shellcheck source=/dev/null
source "$src" || { echo "FAIL cannot source $src"; exit 1; }
[[ $(complete -p moviectl 2>/dev/null) == "complete -F _moviectl moviectl" ]] &&
	ok "registered for moviectl" || bad "registered for moviectl"

# complete WANT WORD... : the last word is the one being completed.
check() {
	local want=$1; shift
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_moviectl
	local got
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')
	got=${got% }
	if [[ $got == "$want" ]]; then ok "${*@Q} -> $want"; else bad "${*@Q}: got '$got', want '$want'"; fi
}

check "--help --version guard help lint release" moviectl ""
check "guard" moviectl g
check "--once" moviectl guard --on
check "--policy --prometheus" moviectl guard --once --p
check "" moviectl guard --prometheus ""
check "lint" moviectl l
check "--help --version" moviectl --
check "--format --help" moviectl lint --
check "--help" moviectl lint --format json --
check "json text" moviectl lint --format ""
check "json" moviectl lint --format j
mkdir -p "$tmp/rendered"
touch "$tmp/a.yaml" "$tmp/b.yml" "$tmp/c.json" "$tmp/notes.txt"
check "$tmp/a.yaml $tmp/b.yml $tmp/c.json $tmp/rendered" moviectl lint "$tmp/"
check "$tmp/a.yaml" moviectl lint --format text "$tmp/a"
check "" moviectl lint "$tmp/notes"
check "" moviectl unknown ""
check "--image" moviectl release --im
check "metadata= movie=" moviectl release --image m
check "" moviectl release --image metadata=movie-metadata:0
check "json" moviectl release --output ""
check "--dry-run" moviectl release --image metadata=x --dr

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
