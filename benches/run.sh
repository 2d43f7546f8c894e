#!/usr/bin/env bash
# Ingest benchmark: sensorlog against a raw TCP-to-file copier and rsyslog, on loopback.
#
#   bash benches/run.sh              # full run (about 5 minutes on 2 cores)
#   bash benches/run.sh --quick      # counts divided by 10, for a smoke run
#   bash benches/run.sh latency raw  # only workloads/contenders whose names contain a filter word
#   bash benches/run.sh tls          # TLS against plain TCP, same daemon, 100x20000 (benches/tls.rs)
#
# Installs rsyslog (Debian package) when rsyslogd is missing, without starting the system
# service: the benchmark runs its own foreground rsyslogd with a generated config. If the
# install fails the benchmark still runs and says why rsyslog was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."

# `bash benches/run.sh tls`: ingest over TLS against plain TCP (benches/tls.rs), 100x20000.
if [ "${1:-}" = "tls" ]; then
  exec cargo bench --bench tls
fi

if ! command -v rsyslogd >/dev/null && [ ! -x /usr/sbin/rsyslogd ]; then
  echo "bench: rsyslogd not found; installing the rsyslog package (its service is not started)." >&2
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # invoke-rc.d consults this file: exit 101 = "action not allowed", so no service starts.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  log=$(mktemp)
  if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsyslog; } >"$log" 2>&1; then
    echo "bench: installed $(/usr/sbin/rsyslogd -v 2>/dev/null | head -n1)." >&2
  else
    reason=$(grep -E '^(E:|W:)' "$log" | head -n3 | tr '\n' ' ')
    [ -n "$reason" ] || reason=$(tail -n3 "$log" | tr '\n' ' ')
    export SENSORLOG_BENCH_RSYSLOG_SKIP="apt-get install rsyslog failed: ${reason:-unknown error}"
    echo "bench: rsyslog will be skipped: $SENSORLOG_BENCH_RSYSLOG_SKIP" >&2
  fi
  rm -f "$log"
  if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

exec cargo bench --bench ingest -- "$@"
