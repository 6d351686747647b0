# bash completion for cprctl(1): its commands, each command's options, and the names
# of the VMs in $CPRVMM_RUNTIME_DIR (default /run/cprvmm): the
# directories there that hold a qmp.sock. Made by `cprctl completion bash`; install it
# as /usr/share/bash-completion/completions/cprctl, or source it from ~/.bashrc.

# Adds to COMPREPLY the VM names that start with $1. Computed here rather than by
# running cprctl, which would connect to every VM at each TAB.
_cprctl_vm_names()
{
    local base=${CPRVMM_RUNTIME_DIR:-/run/cprvmm} dir name
    for dir in "${base%/}"/*/; do
        name=${dir%/}
        name=${name##*/}
        if [[ -S ${dir}qmp.sock && $name == "$1"* ]]; then
            COMPREPLY+=("$name")
        fi
    done
}

_cprctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local command= word i options= words= vm_names=
    COMPREPLY=()
    # bash splits --opt=value at '=' (COMP_WORDBREAKS): complete the value of --opt
    # once it has begun (a reply for the bare '=' would replace it).
    if [[ $cur == = ]]; then
        return
    elif [[ $prev == = ]]; then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi

    # The command is the first word that is not an option.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -z $command && $word != -* && $word != = ]]; then
            command=$word
        elif [[ -n $command && $word == -- ]]; then
            return  # update ... -- ARGS: the VM's own command line
        fi
    done
    if [[ -z $command ]]; then
        mapfile -t COMPREPLY < <(compgen -W "status update migrate list stop cont console completion help -h --help --version" -- "$cur")
        return
    fi

    case $prev in
        --socket|--binary)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
        --timeout|--downtime-limit|--max-bandwidth|--max-passes)
            return
            ;;
    esac

    case $command in
        status) options="--socket --json --timeout --help" vm_names=1 ;;
        update) options="--socket --all --keep-going --binary --no-bridges --no-probe --timeout --json --help" vm_names=1 ;;
        migrate) options="--socket --downtime-limit --max-bandwidth --max-passes --auto-converge --json --timeout --help" vm_names=1 ;;
        list) options="--json --help" ;;
        stop) options="--socket --timeout --json --help" vm_names=1 ;;
        cont) options="--socket --timeout --json --help" vm_names=1 ;;
        console) options="--socket --help" vm_names=1 ;;
        completion) options="--help" words="bash" ;;
        help) options="" ;;
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
        return
    fi
    if [[ -n $words ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
    fi
    if [[ -n $vm_names ]]; then
        _cprctl_vm_names "$cur"
    fi
}

complete -F _cprctl cprctl
