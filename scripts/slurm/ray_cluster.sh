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
#   MAP_RAY_HEAD_IP       the head's address (default: the first node's, per `hostname -i`)
#   MAP_RAY_GPUS_PER_NODE GPUs Ray may use per node (default: Ray counts the visible ones)
#   MAP_RAY_TMPDIR        Ray's temporary folder on the nodes (default: Ray's, /tmp/ray)
#   MAP_RAY_TIMEOUT       seconds to wait for the nodes to join (default: 300)
# Sets and exports MAP_RAY_ADDRESS (host:port) and MAP_RAY_WORKERS (the GPUs of the
# cluster, or its CPUs when it has none).

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

# The address the other nodes reach the head node ($1) at.
ray_head_ip() {
    if [[ -n "${MAP_RAY_HEAD_IP:-}" ]]; then
        printf '%s\n' "$MAP_RAY_HEAD_IP"
    else
        srun --nodes=1 --ntasks=1 --nodelist="$1" hostname --ip-address | awk '{print $1}'
    fi
}

# Wait until $1 nodes are alive; prints the number of workers the cluster holds.
ray_wait_nodes() {
    "$(map_python)" "$MAP_SLURM_DIR/ray_wait.py" "$MAP_RAY_ADDRESS" "$1" \
        --timeout "${MAP_RAY_TIMEOUT:-300}"
}

ray_cluster_up() {
    local py head port n
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
    MAP_RAY_ADDRESS="$(ray_head_ip "$head"):$port"
    export MAP_RAY_ADDRESS

    # One Ray node per SLURM node, holding the CPUs SLURM gave its task (not the machine's).
    common=(--num-cpus="${SLURM_CPUS_PER_TASK:-1}" --disable-usage-stats --block)
    if [[ -n "${MAP_RAY_GPUS_PER_NODE:-}" ]]; then
        common+=(--num-gpus="$MAP_RAY_GPUS_PER_NODE")
    fi
    head_flags=(--head --node-ip-address="${MAP_RAY_ADDRESS%:*}" --port="$port"
                --include-dashboard=false)
    if [[ -n "${MAP_RAY_TMPDIR:-}" ]]; then
        head_flags+=(--temp-dir="$MAP_RAY_TMPDIR")
    fi

    trap ray_cluster_down EXIT
    trap 'exit 143' TERM INT  # so that the EXIT trap runs on scancel and time-outs
    echo "Starting the Ray head on $head at $MAP_RAY_ADDRESS"
    srun --nodes=1 --ntasks=1 --nodelist="$head" \
        "$py" -m ray.scripts.scripts start "${head_flags[@]}" "${common[@]}" &
    RAY_STEP_PIDS+=("$!")
    ray_wait_nodes 1 >/dev/null
    if (( n > 1 )); then
        echo "Starting Ray workers on $((n - 1)) more node(s)"
        srun --nodes=$((n - 1)) --ntasks=$((n - 1)) --ntasks-per-node=1 --exclude="$head" \
            "$py" -m ray.scripts.scripts start --address="$MAP_RAY_ADDRESS" "${common[@]}" &
        RAY_STEP_PIDS+=("$!")
    fi
    MAP_RAY_WORKERS="$(ray_wait_nodes "$n")"
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
    RAY_STEP_PIDS=()
}
