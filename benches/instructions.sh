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
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
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
  grep -E '^(summary|totals):' "$dir/cg.out" | head -n1 | awk '{print $2}'
}

extra=("$@")
echo "instructions: $daemon, $boards boards x $count and x $((2 * count)) $format readings, ${NAMES:-stable} names, flags: ${extra[*]:-(none)}${EVENTS:+, /events client}" >&2
a=$(run "$count")
b=$(run $((2 * count)))
per=$(( (b - a) / (boards * count) ))
echo "instructions per reading: $per  (totals $a and $b)"
