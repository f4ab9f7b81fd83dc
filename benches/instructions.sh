#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the same total for the same
# binary and requests whatever else the machine is doing, so a small change to the request
# path can be compared on a noisy or busy machine where CPU time per request moves by ±15 %.
#
#   benches/instructions.sh [--worker FILE] BINARY...
#
# A BINARY named `deno` (the executable itself, not a shell shim: `pyenv which deno` where
# `pip install deno` went under pyenv) is measured as `deno serve` on the same worker, the
# peer counted the same way. For each binary, runs it on a loopback port under callgrind
# twice, answering FEW (1,500) and then MANY (4,500) requests (GET / on one keep-alive HTTP/1.1
# connection, one at a time), and prints (MANY total - FEW total) / (MANY - FEW): the start-up,
# the JIT's warm-up (hello's code is optimised after ~1,000 requests) and shut-down cancel out.
# All threads are counted (front end, executors, V8's helpers); the kernel is not.
# Now and then a run counts a few percent more (a spare isolate or a GC more in the long run),
# so each binary is measured RUNS (3) times and the median is printed with the range.
# Under callgrind every turn is slow, so work that runs after long turns (V8's heap
# statistics) is counted on every request: compare binaries, not against CPU time.
# URL_PATH (default /) is the path requested. CONNECTIONS (default 1) spreads the requests
# over that many connections sending at once, so that work batched per executor round shows;
# with it set EXECUTORS=1 (`[node] executor_threads`), so that they share one thread and one
# isolate: with several executors, where isolates start and which requests cross threads
# differ from run to run, and so do the counts (by 20k per request between two runs).
# KEEP=PREFIX keeps each run's callgrind output as PREFIX.BINARY-NAME.COUNT for
# callgrind_annotate (the last run's, with RUNS > 1).
# Workers whose JIT keeps tiering up for thousands of requests (hono) give unstable counts
# here: a longer run has counted fewer instructions than a shorter one. Use hello for A/B.
set -euo pipefail
cd "$(dirname "$0")/.."

worker="$PWD/examples/hello.js"
if [[ "${1:-}" == "--worker" ]]; then
  worker="$(realpath "$2")"
  shift 2
fi
if [[ $# -eq 0 ]]; then
  echo "usage: benches/instructions.sh [--worker FILE] BINARY..." >&2
  exit 2
fi
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }

FEW=${FEW:-1500}
MANY=${MANY:-4500}
PORT=${PORT:-8899}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Generous limits: under callgrind a request takes ~50x its usual CPU time.
node_section=""
if [[ -n "${EXECUTORS:-}" ]]; then
  node_section="[node]
executor_threads = $EXECUTORS
"
fi
cat > "$work/isola.toml" <<EOF
$node_section
[limits]
cpu_ms = 30000
wall_ms = 60000
startup_wall_ms = 60000
startup_cpu_ms = 60000

[[listeners]]
address = "127.0.0.1:$PORT"

[[routes]]
worker = "bench"

[workers.bench]
file = "$worker"
EOF

# CONNECTIONS keep-alive connections (1 unless set), each sending its share of the requests one
# after another; waits up to 5 minutes for the node.
cat > "$work/client.py" <<'EOF'
import http.client, sys, threading, time
port, count, path, connections = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.time() + 300
while True:
    try:
        first = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        first.request("GET", path)
        first.getresponse().read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("instructions.sh: the node did not answer within 5 minutes")
        time.sleep(0.5)
failures = []
def send(connection, requests):
    for _ in range(requests):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            failures.append(response.status)
            return
shares = [(count - 1) // connections + (i < (count - 1) % connections) for i in range(connections)]
links = [first] + [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in shares[1:]]
threads = [threading.Thread(target=send, args=pair) for pair in zip(links, shares)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit(f"instructions.sh: the node answered {failures[0]}")
EOF

# Total instructions of one run of BINARY answering COUNT requests.
count_run() {
  local binary="$1" count="$2" out="$work/callgrind.out"
  [[ -n "${KEEP:-}" ]] && out="$KEEP.$(basename "$binary").$count"
  rm -f "$out"
  local serve=(serve --config "$work/isola.toml")
  if [[ "$(basename "$binary")" == deno ]]; then
    serve=(serve --port "$PORT" --host 127.0.0.1 "$worker")
  fi
  timeout 900 valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$out" \
    "$binary" "${serve[@]}" > "$work/node.log" 2>&1 &
  local node=$!
  if ! python3 "$work/client.py" "$PORT" "$count" "${URL_PATH:-/}" "${CONNECTIONS:-1}"; then
    kill "$node" 2>/dev/null || true
    tail -5 "$work/node.log" >&2
    exit 1
  fi
  kill -TERM "$node"
  wait "$node" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

RUNS=${RUNS:-3}
for binary in "$@"; do
  [[ -x "$binary" ]] || { echo "instructions.sh: $binary is not an executable" >&2; exit 2; }
  if [[ "$(head -c 2 "$binary")" == "#!" ]]; then
    echo "instructions.sh: $binary is a script (a shim?); callgrind must run the binary itself" >&2
    exit 2
  fi
  per_request=()
  for _ in $(seq "$RUNS"); do
    few=$(count_run "$binary" "$FEW")
    many=$(count_run "$binary" "$MANY")
    per_request+=($(( (many - few) / (MANY - FEW) )))
  done
  sorted=($(printf '%s\n' "${per_request[@]}" | sort -n))
  echo "$binary: ${sorted[$(( RUNS / 2 ))]} instructions per request" \
    "(median of $RUNS runs; ${sorted[0]}-${sorted[$(( RUNS - 1 ))]})"
done
