#!/usr/bin/env bash
# Ingest cost in CPU instructions per reading, counted by valgrind (callgrind): a figure
# that does not move with the machine's load, for comparing two builds on a shared or
# noisy machine where `benches/run.sh`'s throughput medians swing by 20% or more.
#
#   bash benches/instructions.sh --http-listen 127.0.0.1:0   # this build (release), dashboard on
#   bash benches/instructions.sh --http-listen ""            # dashboard off
#   SENSORLOG_BENCH_SERVER_BIN=/old/sensorlog bash benches/instructions.sh   # another build
#
# KEEP=DIR keeps the larger run's callgrind profile as DIR/callgrind.out, for
# `callgrind_annotate --inclusive=yes DIR/callgrind.out` (where the instructions go).
#
# CACHE=1 runs cachegrind's cache simulation instead and prints, per reading, the
# instructions and the simulated misses of a 32 KiB L1 data cache and of a 1 MiB last
# level, the size of this machine's L2 (a miss there goes to the shared L3): what a flood
# of new names costs in memory traffic, which instructions do not show and which CPU
# seconds on a shared VM are too noisy to separate (issue 22). With KEEP=DIR the
# profile is DIR/callgrind.out too, for `cg_annotate --sort=DLmr,DLmw DIR/callgrind.out`.
#
# Arguments are extra `sensorlog serve` flags (none by default, so that older builds can
# be measured: give the dashboard a free port when 8091 is taken). EVENTS=1 keeps a
# `curl -N /events` client on the dashboard during the run (what an open dashboard costs
# the daemon; under valgrind the run is ~50x slower while the stream still sends once a
# second, so this overstates that cost).
#
# The daemon runs under callgrind while `sensorlog simulate` sends BOARDS boards x COUNT
# JSON readings as fast as it can, twice (COUNT and 2 x COUNT, fresh daemon each); the
# difference divided by the extra readings is the marginal cost of one reading, without
# start-up and shutdown. Defaults: BOARDS=20 COUNT=5000 (about a minute). NAMES=flood
# gives every reading a device name never seen before (`simulate --new-name-per-reading`):
# the cost of a flood of new names, to compare with the stable names of the default. Needs valgrind
# (installed from Debian when missing). Loopback only; every process started here is
# ended here, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

boards=${BOARDS:-20}
count=${COUNT:-5000}
format=${FORMAT:-json}
names=()
case "${NAMES:-stable}" in
  stable) ;;
  flood) names=(--new-name-per-reading) ;;
  *) echo "instructions: NAMES must be stable or flood" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null; then
  echo "instructions: installing valgrind (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq valgrind >/dev/null
  else
    sudo apt-get install -y -qq valgrind >/dev/null
  fi
fi

# SENSORLOG_BENCH_SIM_BIN: the generator's binary (then nothing is built when the daemon's
# is given too, so that a saved build can be measured while the tree is being edited).
if [ -z "${SENSORLOG_BENCH_SIM_BIN:-}" ] || [ -z "${SENSORLOG_BENCH_SERVER_BIN:-}" ]; then
  cargo build --release --quiet
fi
sim=${SENSORLOG_BENCH_SIM_BIN:-target/release/sensorlog}
daemon=${SENSORLOG_BENCH_SERVER_BIN:-target/release/sensorlog}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One run: prints the instructions the daemon executed in total.
run() {
  local n=$1 dir
  dir=$(mktemp -d "$work/run.XXXX")
  valgrind "${tool[@]}" --"${tool_name}"-out-file="$dir/cg.out" \
    "$daemon" serve --listen 127.0.0.1:0 --csv "$dir/out.csv" --max-connections 11000 \
    "${extra[@]}" 2>"$dir/log" &
  local pid=$! addr=""
  for _ in $(seq 600); do
    addr=$(grep -o 'Listening on [0-9.:]*' "$dir/log" | head -n1 | awk '{print $3}' | sed 's/\.$//') || true
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    kill "$pid" 2>/dev/null || true
    echo "instructions: the daemon did not start; its log:" >&2
    cat "$dir/log" >&2
    exit 1
  fi
  local curl_pid=""
  if [ "${EVENTS:-0}" = 1 ]; then
    local url
    url=$(grep -o 'Dashboard at http://[0-9.:]*/' "$dir/log" | head -n1 | awk '{print $3}')
    [ -n "$url" ] || { echo "instructions: EVENTS=1 but the dashboard is off" >&2; kill "$pid"; exit 1; }
    curl -sN --max-time 600 "${url}events" >/dev/null 2>&1 &
    curl_pid=$!
    sleep 3
  fi
  "$sim" simulate --addr "$addr" -n "$boards" --rate 0 --count "$n" --format "$format" "${names[@]}" >/dev/null 2>&1
  # The generator is done when its bytes are in the socket buffers; wait until the CSV
  # stops growing (at most a minute) before stopping the daemon.
  local prev=-1 stable=0 size
  for _ in $(seq 300); do
    size=$(stat -c %s "$dir/out.csv")
    if [ "$size" = "$prev" ]; then stable=$((stable + 1)); [ "$stable" -ge 5 ] && break; else stable=0; fi
    prev=$size
    sleep 0.2
  done
  if [ -n "$curl_pid" ]; then kill "$curl_pid" 2>/dev/null || true; wait "$curl_pid" 2>/dev/null || true; fi
  kill -TERM "$pid"
  wait "$pid" || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dir/cg.out" "$KEEP/callgrind.out"; fi
  if [ "${CACHE:-0}" = 1 ]; then
    # Ir D1mr D1mw DLmr DLmw, in that order, from the events and summary lines.
    awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
         /^summary:/ { print $col["Ir"], $col["D1mr"], $col["D1mw"], $col["DLmr"], $col["DLmw"] }' "$dir/cg.out"
  else
    grep -E '^(summary|totals):' "$dir/cg.out" | head -n1 | awk '{print $2}'
  fi
}

if [ "${CACHE:-0}" = 1 ]; then
  tool_name=cachegrind
  tool=(--tool=cachegrind --cache-sim=yes --D1=32768,8,64 --LL=1048576,16,64)
else
  tool_name=callgrind
  tool=(--tool=callgrind)
fi

extra=("$@")
echo "instructions: $daemon, $boards boards x $count and x $((2 * count)) $format readings, ${NAMES:-stable} names, flags: ${extra[*]:-(none)}${EVENTS:+, /events client}" >&2
a=$(run "$count")
b=$(run $((2 * count)))
if [ "${CACHE:-0}" = 1 ]; then
  read -r -a x <<<"$a"
  read -r -a y <<<"$b"
  n=$((boards * count))
  awk -v n="$n" -v a="${x[*]}" -v b="${y[*]}" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    printf "per reading: instructions %.0f, L1d misses %.2f (read %.2f, write %.2f), 1 MiB last-level misses %.2f (read %.2f, write %.2f)\n",
      (y[1] - x[1]) / n, (y[2] + y[3] - x[2] - x[3]) / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n,
      (y[4] + y[5] - x[4] - x[5]) / n, (y[4] - x[4]) / n, (y[5] - x[5]) / n }'
else
  per=$(( (b - a) / (boards * count) ))
  echo "instructions per reading: $per  (totals $a and $b)"
fi
