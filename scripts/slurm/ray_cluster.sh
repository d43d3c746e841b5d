# shellcheck shell=bash
# Ray on a SLURM allocation: a head on the first node, a worker on each other node (srun),
# for a driver (run_MAP.py --ray-address) that runs in the batch script on the first node.
#
#   source scripts/slurm/ray_cluster.sh
#   ray_cluster_up        # starts the cluster, waits for every node; stopped on exit
#   map_run --ray-address "$MAP_RAY_ADDRESS" --workers "$MAP_RAY_WORKERS" ...
#
# Settings, from the environment (all optional):
#   MAP_PYTHON            the environment's python (default: .venv/bin/python, else python)
#   MAP_ENTRY             the entry script (default: run_MAP.py)
#   MAP_RAY_PORT          the head's port (default: 6379)
#   MAP_RAY_HEAD_IP       the head's address (default: the one Ray picks on the first node);
#                         127.0.0.1 keeps a one-node allocation's Ray on the loopback
#   MAP_RAY_GPUS_PER_NODE GPUs Ray may use per node (default: Ray counts the visible ones)
#   MAP_RAY_TMPDIR        Ray's temporary folder on the nodes (default: Ray's, /tmp/ray)
#   MAP_RAY_TIMEOUT       seconds to wait for the nodes to join (default: 300)
#   RAY_AUTH_MODE         Ray's token authentication (default here: token)
#   RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
#                         the cluster's token, or a file holding it (default: a new token
#                         for this job, handed to every process through the environment)
# Sets and exports MAP_RAY_ADDRESS (the head's host:port as Ray reports it) and
# MAP_RAY_WORKERS (the GPUs of the cluster, or its CPUs when it has none).

MAP_SLURM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RAY_STEP_PIDS=()

map_python() {
    if [[ -n "${MAP_PYTHON:-}" ]]; then
        printf '%s\n' "$MAP_PYTHON"
    elif [[ -x .venv/bin/python ]]; then
        printf '%s\n' .venv/bin/python
    else
        printf '%s\n' python
    fi
}

# run_MAP.py with the given flags, in the environment's python.
map_run() {
    "$(map_python)" "${MAP_ENTRY:-run_MAP.py}" "$@"
}

# The allocation's node names, one per line.
ray_nodes() {
    scontrol show hostnames "$SLURM_JOB_NODELIST"
}

# The address of the head node ($1): MAP_RAY_HEAD_IP, else the one Ray itself picks there
# (the interface its default route leaves by). Not `hostname -i`: where /etc/hosts maps the
# node's name to 127.0.0.1, that is the loopback, and Ray binds the interface instead.
ray_head_ip() {
    if [[ -n "${MAP_RAY_HEAD_IP:-}" ]]; then
        printf '%s\n' "$MAP_RAY_HEAD_IP"
    else
        srun --export=ALL --nodes=1 --ntasks=1 --nodelist="$1" "$(map_python)" -c \
            'import ray.util; print(ray.util.get_node_ip_address())' | tail -n 1
    fi
}

# Ray swaps these for the interface's address (so that other nodes can reach them) unless
# it runs as a single-node Ray, which it does with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0.
ray_is_loopback() {
    [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]
}

# Token authentication: on (RAY_AUTH_MODE=token) unless the environment says otherwise.
# The head, the workers on the other nodes, ray_wait.py and run_MAP.py all read the token
# from RAY_AUTH_TOKEN (or the file at RAY_AUTH_TOKEN_PATH); without one, each process
# would look in its own ~/.ray/auth_token and the head would refuse the others.
ray_auth_setup() {
    export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
    if [[ $RAY_AUTH_MODE != token ]]; then
        echo "Ray token authentication: RAY_AUTH_MODE=$RAY_AUTH_MODE (from the environment)"
        return 0
    fi
    if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
        echo "Ray token authentication: on, token from RAY_AUTH_TOKEN"
    elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
        echo "Ray token authentication: on, token from RAY_AUTH_TOKEN_PATH"
    else
        RAY_AUTH_TOKEN="$("$(map_python)" -c 'import secrets; print(secrets.token_hex(32))')"
        export RAY_AUTH_TOKEN
        echo "Ray token authentication: on, a new token for this job"
    fi
}

# Wait until $1 nodes are alive at $2 (host:port); prints "ADDRESS WORKERS": the head's
# address as Ray reports it and the number of workers the cluster holds.
ray_wait_nodes() {
    "$(map_python)" "$MAP_SLURM_DIR/ray_wait.py" "$2" "$1" --timeout "${MAP_RAY_TIMEOUT:-300}"
}

ray_cluster_up() {
    local py head head_ip port n out
    local -a nodes common head_flags
    py="$(map_python)"
    mapfile -t nodes < <(ray_nodes)
    n=${#nodes[@]}
    if (( n == 0 )); then
        echo "ray_cluster.sh: no nodes in SLURM_JOB_NODELIST" >&2
        return 1
    fi
    head=${nodes[0]}
    port=${MAP_RAY_PORT:-6379}
    head_ip="$(ray_head_ip "$head")" || return 1
    if [[ -z $head_ip ]]; then
        echo "ray_cluster.sh: found no address for the head node $head" >&2
        return 1
    fi
    if ray_is_loopback "$head_ip"; then
        if (( n > 1 )); then
            echo "ray_cluster.sh: MAP_RAY_HEAD_IP=$head_ip is the loopback; the other" \
                 "$((n - 1)) node(s) cannot reach it. Unset it, or ask for one node" >&2
            return 1
        fi
        export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    fi
    ray_auth_setup

    # One Ray node per SLURM node, holding the CPUs SLURM gave its task (not the machine's).
    common=(--num-cpus="${SLURM_CPUS_PER_TASK:-1}" --disable-usage-stats --block)
    if [[ -n "${MAP_RAY_GPUS_PER_NODE:-}" ]]; then
        common+=(--num-gpus="$MAP_RAY_GPUS_PER_NODE")
    fi
    head_flags=(--head --node-ip-address="$head_ip" --port="$port" --include-dashboard=false)
    if [[ -n "${MAP_RAY_TMPDIR:-}" ]]; then
        head_flags+=(--temp-dir="$MAP_RAY_TMPDIR")
    fi

    trap ray_cluster_down EXIT
    trap 'exit 143' TERM INT  # so that the EXIT trap runs on scancel and time-outs
    echo "Starting the Ray head on $head at $head_ip:$port"
    # Steps run with --export=ALL: they get this script's environment (the Ray token among
    # it) even where the site or the user submits with --export=NONE. Not through a shell
    # function: $! must be srun's own pid, for ray_cluster_down.
    srun --export=ALL --nodes=1 --ntasks=1 --nodelist="$head" \
        "$py" -m ray.scripts.scripts start "${head_flags[@]}" "${common[@]}" &
    RAY_STEP_PIDS+=("$!")
    out="$(ray_wait_nodes 1 "$head_ip:$port")" || return 1  # ray_wait.py said why
    read -r MAP_RAY_ADDRESS MAP_RAY_WORKERS <<< "$out"
    export MAP_RAY_ADDRESS
    echo "Ray head up at $MAP_RAY_ADDRESS"
    if (( n > 1 )); then
        echo "Starting Ray workers on $((n - 1)) more node(s)"
        srun --export=ALL --nodes=$((n - 1)) --ntasks=$((n - 1)) --ntasks-per-node=1 \
            --exclude="$head" \
            "$py" -m ray.scripts.scripts start --address="$MAP_RAY_ADDRESS" "${common[@]}" &
        RAY_STEP_PIDS+=("$!")
        out="$(ray_wait_nodes "$n" "$MAP_RAY_ADDRESS")" || return 1
        read -r MAP_RAY_ADDRESS MAP_RAY_WORKERS <<< "$out"
    fi
    export MAP_RAY_WORKERS
    echo "Ray cluster up: $n node(s), room for $MAP_RAY_WORKERS worker(s)"
}

# Stop the Ray steps this script started (SLURM would also end them with the job).
ray_cluster_down() {
    local pid
    for pid in "${RAY_STEP_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${RAY_STEP_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if (( ${#RAY_STEP_PIDS[@]} )); then
        echo "Ray cluster stopped"
    fi
    RAY_STEP_PIDS=()
}
