# bash completion for taskctl(1)                                   -*- shell-script -*-
#
# Completes global options, verbs (taskd verbs, or deployd verbs after --server), each verb's
# options, -o values, --state values, files for --token-file and put -f, the roles of the
# --token-file typed after --role (its first column only: never a token), task ids and the
# job URLs of `ps --job` (asked from taskd with `taskctl ps -o json`), and the jobs of
# `job get` (asked from deployd with `taskctl --server URL jobs`). Those calls pass along the
# --host/--token/--token-file already typed, are quiet (no output on errors) and limited to
# 2 s, so completion never hangs on an unreachable server or an unreadable token file.

# _taskctl_query MEMBER ARGS...: run the typed taskctl with ARGS and print the values of the
# JSON string member MEMBER in its output, one per line (taskctl indents its JSON output with
# one member per line). Quiet and bounded: nothing on errors, at most 2 s.
_taskctl_query()
{
	local member=$1 out
	shift
	local -a cmd=("${words[0]}" "$@")

	# shellcheck disable=SC2088 # a literal "~/" left unexpanded on the command line
	[[ ${cmd[0]} == "~/"* ]] && cmd[0]=$HOME/${cmd[0]#"~/"}
	if type -P timeout >/dev/null 2>&1; then
		out=$(timeout 2 "${cmd[@]}" 2>/dev/null </dev/null) || return
	else
		out=$("${cmd[@]}" 2>/dev/null </dev/null) || return
	fi
	sed -n 's/^[[:space:]]*"'"$member"'":[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$out"
}

# COMPREPLY from a word list that may hold ':' (job URLs): with bash-completion's word
# splitting, the part of cur up to its last ':' is not replaced, so trim it from the matches.
_taskctl_reply()
{
	mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
	declare -F __ltrim_colon_completions >/dev/null && __ltrim_colon_completions "$cur"
}

# Pipeline ids from `taskctl --server URL -o json pipelines`.
_taskctl_pipeline_ids()
{
	mapfile -t COMPREPLY < <(compgen -W \
		"$(_taskctl_query pipeline_id --server "$server" "${conn[@]}" -o json pipelines)" \
		-- "$cur")
}

# run with --server: run ID [--commit SHA], run cancel|retry ID RUN. Returns 1 when it has
# nothing to say (the caller then offers the verb's options).
_taskctl_pipeline_run()
{
	[[ $prev == --commit ]] && return 0
	[[ $cur == -* ]] && {
		mapfile -t COMPREPLY < <(compgen -W "--commit --help" -- "$cur")
		return 0
	}
	if ((${#pos[@]} == 0)); then
		_taskctl_pipeline_ids
		mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -W "cancel retry" -- "$cur")
		return 0
	fi
	if ((${#pos[@]} == 1)) && [[ ${pos[0]} == cancel || ${pos[0]} == retry ]]; then
		_taskctl_pipeline_ids
	fi
	return 0
}

# Roles for --role: those of the deployd token file already typed ("<role> <token>" lines; only
# the first column is read), else deployd's built-in ones.
_taskctl_roles()
{
	local file="" i roles=""
	for ((i = 0; i < ${#conn[@]}; i++)); do
		case ${conn[i]} in
		--token-file) file=${conn[i + 1]} ;;
		--token-file=*) file=${conn[i]#--token-file=} ;;
		esac
	done
	# shellcheck disable=SC2088 # a literal "~/" left unexpanded on the command line
	[[ $file == "~/"* ]] && file=$HOME/${file#"~/"}
	[[ -n $file && -r $file ]] &&
		roles=$(awk '{ sub(/#.*/, "") } NF == 2 { print $1 }' "$file" 2>/dev/null)
	_taskctl_reply "${roles:-admin agent team:}"
}

_taskctl_files()
{
	if declare -F _filedir >/dev/null; then
		_filedir
	else
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
}

_taskctl()
{
	local cur prev cword
	local -a words
	if declare -F _get_comp_words_by_ref >/dev/null; then
		# Keep URLs (':') and --opt=value ('=') in one word.
		_get_comp_words_by_ref -n =: cur prev words cword
	else
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
		cur=${words[cword]}
		prev=${words[cword - 1]}
	fi

	local global_opts="--host --server --token --token-file --role -o --output --help --version"
	local taskd_verbs="ps get inspect logs stop start rm events put run"
	local server_verbs="jobs job hosts events pipelines pipeline schema run runs watch approve"
	local -a conn=()
	local verb="" server="" i w
	local -a args=() # the verb's words before the current one

	# Walk the words before the cursor: global options (with their values), then the verb.
	for ((i = 1; i < cword; i++)); do
		w=${words[i]}
		if [[ -n $verb ]]; then
			args+=("$w")
			continue
		fi
		case $w in
		--host | --token | --token-file | --role)
			conn+=("$w" "${words[i + 1]}")
			((i++))
			;;
		--server)
			server=${words[i + 1]}
			((i++))
			;;
		-o | --output)
			((i++))
			;;
		--host=* | --token=* | --token-file=* | --role=*) conn+=("$w") ;;
		--server=*) server=${w#--server=} ;;
		-*) ;;
		*) verb=$w ;;
		esac
	done

	# The value of an option.
	case $prev in
	-o | --output)
		[[ -z $verb ]] && mapfile -t COMPREPLY < <(compgen -W "table wide json" -- "$cur")
		return
		;;
	--token-file)
		[[ -z $verb ]] && _taskctl_files
		return
		;;
	--role)
		[[ -z $verb ]] && _taskctl_roles
		return
		;;
	--host | --server | --token)
		[[ -z $verb ]] && return
		;;
	esac
	case $cur in
	--output=*)
		mapfile -t COMPREPLY < <(compgen -W "table wide json" -- "${cur#--output=}")
		return
		;;
	esac

	if [[ -z $verb ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$global_opts" -- "$cur")
		elif [[ -n $server ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$server_verbs" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$taskd_verbs" -- "$cur")
		fi
		return
	fi

	# Positional words of the verb so far (options and their values left out).
	local -a pos=()
	local takes_value=""
	for w in "${args[@]}"; do
		if [[ -n $takes_value ]]; then
			takes_value=""
			continue
		fi
		case $w in
		--job | --state | --tail | --after | -f | --file | --index | --digest | --mirror | \
			--request-id | --owner | --version | --if-match | --commit)
			# -f is a flag of logs, a value-taking option of put/run
			if [[ $w == -f && $verb == logs ]]; then continue; fi
			takes_value=1
			;;
		-*) ;;
		*) pos+=("$w") ;;
		esac
	done

	local opts=""
	case $verb in
	ps)
		case $prev in
		--state)
			mapfile -t COMPREPLY < <(compgen -W "PENDING RUNNING DONE ERROR" -- "$cur")
			return
			;;
		--job)
			_taskctl_reply "$(_taskctl_query job "${conn[@]}" -o json ps | sort -u)"
			return
			;;
		esac
		opts="--job --state --help"
		;;
	get | inspect | stop | start | rm)
		opts="--help"
		;;
	logs)
		[[ $prev == --tail ]] && return
		opts="-f --follow --tail --help"
		;;
	events)
		[[ $prev == --after ]] && return
		opts="-w --watch --after --help"
		;;
	run)
		[[ -n $server ]] && _taskctl_pipeline_run && return
		;;&
	put | run)
		case $prev in
		-f | --file)
			_taskctl_files
			return
			;;
		--job | --index | --digest | --mirror | --request-id) return ;;
		esac
		opts="-f --file --job --index --digest --mirror --request-id --help"
		;;
	job)
		# job get|stop|start REGION/ZONE/NAME, job put -f FILE REGION/ZONE/NAME
		if ((${#pos[@]} == 0)) && [[ $cur != -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "get stop start put" -- "$cur")
			return
		fi
		if [[ ${pos[0]} == put ]]; then
			if [[ $prev == -f ]]; then
				_taskctl_files
				return
			fi
			if [[ ${#args[@]} -eq 1 ]]; then
				mapfile -t COMPREPLY < <(compgen -W "-f" -- "$cur")
				return
			fi
		fi
		if [[ $cur != -* && -n $server ]] &&
			{ [[ " get stop start " == *" ${pos[0]} "* && ${#args[@]} -eq 1 ]] ||
				[[ ${pos[0]} == put && ${#args[@]} -eq 3 ]]; }; then
			# REGION/ZONE/NAME of the cluster's jobs
			_taskctl_reply "$(_taskctl_query job --server "$server" "${conn[@]}" jobs |
				sed 's|^job://||')"
			return
		fi
		opts="--help"
		[[ ${pos[0]} == put ]] && opts="-f --help"
		;;
	jobs | hosts)
		opts="--help"
		;;
	pipelines)
		[[ $prev == --owner ]] && return
		opts="--owner --help"
		;;
	pipeline)
		# pipeline create -f FILE, pipeline get ID
		if ((${#pos[@]} == 0)) && [[ $cur != -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "create get" -- "$cur")
			return
		fi
		case ${pos[0]} in
		create)
			if [[ $prev == -f || $prev == --file ]]; then
				_taskctl_files
				return
			fi
			opts="-f --file --help"
			;;
		get)
			if ((${#pos[@]} == 1)) && [[ $cur != -* ]]; then
				_taskctl_pipeline_ids
				return
			fi
			opts="--help"
			;;
		esac
		;;
	schema)
		# schema get ID [--version N], schema put ID -f FILE [--if-match V],
		# schema activate ID VERSION
		if ((${#pos[@]} == 0)) && [[ $cur != -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "get put activate" -- "$cur")
			return
		fi
		case $prev in
		-f | --file)
			_taskctl_files
			return
			;;
		--version | --if-match) return ;;
		esac
		if ((${#pos[@]} == 1)) && [[ $cur != -* ]]; then
			_taskctl_pipeline_ids
			return
		fi
		case ${pos[0]} in
		get) opts="--version --help" ;;
		put) opts="-f --file --if-match --help" ;;
		*) opts="--help" ;;
		esac
		;;
	runs | watch | approve)
		if ((${#pos[@]} == 0)) && [[ $cur != -* ]]; then
			_taskctl_pipeline_ids
			return
		fi
		opts="--help"
		;;
	*)
		return
		;;
	esac

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return
	fi
	case $verb in
	get | inspect | stop | start | rm | logs)
		if ((${#pos[@]} == 0)) && [[ -z $server ]]; then
			mapfile -t COMPREPLY < <(compgen -W \
				"$(_taskctl_query task_id "${conn[@]}" -o json ps)" -- "$cur")
		fi
		;;
	esac
}
complete -F _taskctl taskctl

# ex: filetype=sh
