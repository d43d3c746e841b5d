# shellcheck shell=bash
# Pairs of tasks by index, for array jobs: task_pair INDEX TASK... prints the INDEX-th pair
# "A B" (0-based) of the tasks in order (0: 1st+2nd, 1: 1st+3rd, ...); C(n, 2) pairs.

task_pair() {
    local index=$1 i j k=0
    shift
    local -a tasks=("$@")
    for (( i = 0; i < ${#tasks[@]}; i++ )); do
        for (( j = i + 1; j < ${#tasks[@]}; j++ )); do
            if (( k == index )); then
                printf '%s %s\n' "${tasks[i]}" "${tasks[j]}"
                return 0
            fi
            k=$((k + 1))
        done
    done
    echo "task_pair: no pair $index among ${#tasks[@]} tasks ($k pairs)" >&2
    return 1
}
