# bash completion for moviectl. Install:
#   source tools/moviectl/completion.bash          (this shell)
#   cp tools/moviectl/completion.bash /usr/share/bash-completion/completions/moviectl
# Completes the commands, lint's, guard's and release's options, their values and file names
# (rendered manifests: *.yaml, *.yml, *.json, and directories).

_moviectl() {
	local cur prev cmd i
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=""
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}

	if ((COMP_CWORD == 1)); then
		mapfile -t COMPREPLY < <(compgen -W "guard lint release help --help --version" -- "$cur")
		return 0
	fi
	cmd=${COMP_WORDS[1]}
	case $cmd in
	guard)
		case $prev in
		--policy)
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			return 0
			;;
		--prometheus | --timeout | --status-timeout | --listen | --context | -n | --namespace)
			return 0
			;;
		--kubeconfig)
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			return 0
			;;
		esac
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "--once --policy --prometheus --timeout \
				--status-timeout --listen --kubeconfig --context --namespace -n --help" -- "$cur")
		fi
		return 0
		;;
	lint)
		if [[ $prev == --format ]]; then
			mapfile -t COMPREPLY < <(compgen -W "text json" -- "$cur")
			return 0
		fi
		if [[ $cur == -* ]]; then
			local opts="--format --help"
			for ((i = 2; i < COMP_CWORD; i++)); do
				[[ ${COMP_WORDS[i]} == --format ]] && opts=${opts/--format/}
			done
			mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
			return 0
		fi
		# Manifest files and directories to descend into (no extglob needed).
		local f
		while IFS= read -r f; do
			if [[ -d $f ]]; then
				COMPREPLY+=("$f")
			else
				case $f in *.yaml | *.yml | *.json) COMPREPLY+=("$f") ;; esac
			fi
		done < <(compgen -f -- "$cur")
		compopt -o filenames 2>/dev/null
		return 0
		;;
	release)
		case $prev in
		--output)
			mapfile -t COMPREPLY < <(compgen -W "json" -- "$cur")
			return 0
			;;
		--image | --config)
			# SVC= first; the rest (an image, a file) is the user's.
			[[ $cur == *=* ]] && return 0
			mapfile -t COMPREPLY < <(compgen -W "metadata= rating= movie=" -- "$cur")
			compopt -o nospace 2>/dev/null
			return 0
			;;
		--policy | --verdict | --kubeconfig)
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			compopt -o filenames 2>/dev/null
			return 0
			;;
		-n | --namespace | --context | --prometheus)
			return 0
			;;
		esac
		mapfile -t COMPREPLY < <(compgen -W "--image --config --prometheus --policy --verdict
			--output --dry-run -n --namespace --kubeconfig --context --help" -- "$cur")
		return 0
		;;
	esac
	return 0
}
complete -F _moviectl moviectl
