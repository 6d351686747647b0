import Shared

/// `cprctl completion bash`: a completion script made from CommandCatalog, so it offers what
/// the parser takes. completion/cprctl.bash is this script; a test keeps it current
/// (regenerate with scripts/make-man).
enum CompletionScript {
    static func text(for shell: CompletionShell) -> String {
        switch shell {
        case .bash: return bash
        }
    }

    static var bash: String {
        let commandWords = (CommandCatalog.commands.map(\.name) + CommandCatalog.globalOptions).joined(separator: " ")
        let arms = CommandCatalog.commands.map { command in
            var settings = ["options=\"\(command.options.joined(separator: " "))\""]
            if !command.words.isEmpty { settings.append("words=\"\(command.words.joined(separator: " "))\"") }
            if command.takesVMName { settings.append("vm_names=1") }
            return "        \(command.name)) \(settings.joined(separator: " ")) ;;"
        }.joined(separator: "\n")
        return """
            # bash completion for cprctl(1): its commands, each command's options, and the names
            # of the VMs in $\(RuntimeDirectory.environmentVariable) (default \(RuntimeDirectory.defaultBase)): the
            # directories there that hold a qmp.sock. Made by `cprctl completion bash`; install it
            # as /usr/share/bash-completion/completions/cprctl, or source it from ~/.bashrc.

            # Adds to COMPREPLY the VM names that start with $1. Computed here rather than by
            # running cprctl, which would connect to every VM at each TAB.
            _cprctl_vm_names()
            {
                local base=${\(RuntimeDirectory.environmentVariable):-\(RuntimeDirectory.defaultBase)} dir name
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
                    mapfile -t COMPREPLY < <(compgen -W "\(commandWords)" -- "$cur")
                    return
                fi

                case $prev in
                    \(CommandCatalog.pathOptions.joined(separator: "|")))
                        compopt -o filenames 2>/dev/null
                        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                        return
                        ;;
                    \(CommandCatalog.valueOptions.joined(separator: "|")))
                        return
                        ;;
                esac

                case $command in
            \(arms)
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

            """
    }
}
