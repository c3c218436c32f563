#!/usr/bin/env bash
# `make bench`: run the benchmarks, write their results into bench/results/
# and regenerate docs/BENCHMARKS.md from them (bench/report.py).
#
#   scripts/bench.sh                      connections messages inbound campaign_health health baseline scaleout,
#                                         then the report
#   scripts/bench.sh connections health   only these, then the report
#   scripts/bench.sh chaos                the 30-minute chaos soak (never run by default)
#   scripts/bench.sh report               only the report
#
# Environment (defaults are the published sizes):
#   BENCH_DATABASE_URL     PostgreSQL server bench/messages.py creates its
#                          database on (postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_SESSIONS         connections: sessions held by one worker (10000)
#   BENCH_MESSAGES, BENCH_MESSAGE_INSTANCES, BENCH_BATCH
#                          messages: 50000 messages over 1000 instances, 500 a request
#   BENCH_INBOUND_RATE, BENCH_INBOUND_SECONDS, BENCH_INBOUND_INSTANCES
#                          inbound: 1000 inbound messages a second for 30 s over 50 instances
#   BENCH_CAMPAIGN_HEALTH_RECIPIENTS, BENCH_CAMPAIGN_HEALTH_INSTANCES
#                          campaign_health: a 10000-recipient campaign over 4 instances
#   BENCH_HEALTH_INSTANCES, BENCH_HEALTH_CONCURRENCY, BENCH_HEALTH_SECONDS
#                          health: 10000 instances, 50 clients, 30 s a phase
#   BENCH_BASELINE_ARGS    extra arguments for bench/baseline.py
#   BENCH_SCALEOUT_INSTANCES, BENCH_SCALEOUT_WORKERS
#                          scaleout: 9000 instances over 3 workers (then a 4th joins)
#   BENCH_RESULTS          results folder (bench/results)
#
# A benchmark that fails does not stop the others; the script exits 1 at the
# end if any failed. A result is replaced only by a run that wrote a new one.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(connections messages inbound campaign_health health baseline scaleout)
known=" ${all[*]} chaos report "
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=("${all[@]}")
for step in "${steps[@]}"; do
  [[ $known == *" $step "* ]] || { echo "unknown benchmark '$step' (known:$known)" >&2; exit 2; }
done

scripts/ensure-venv.sh requirements-bench.txt
scripts/ensure-keys.sh
PY=.venv/bin/python
results=${BENCH_RESULTS:-bench/results}
mkdir -p "$results"
export BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if [[ ${steps[*]} != report ]]; then
  REDIS_URL=$(scripts/ensure-redis.sh)
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export PYTHONUNBUFFERED=1

failed=()

# stamp FILE COMMAND STARTED EXIT: add what the report shows above the figures.
stamp() {
  "$PY" - "$@" <<'PYEOF'
import json, subprocess, sys
path, command, started, code = sys.argv[1:5]
data = json.loads(open(path).read())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
meta = {
    "command": command,
    "measured_at": started,
    "commit": commit + (" (tracked files modified)" if dirty.strip() else ""),
    "exit_status": int(code),
}
rest = {k: v for k, v in data.items() if k not in meta}
open(path, "w").write(json.dumps({**meta, **rest}, indent=2) + "\n")
PYEOF
}

# measure NAME RESULT COMMAND...: run COMMAND, which writes RESULT.new; keep it as RESULT.
measure() {
  local name=$1 result=$2
  shift 2
  local started code=0
  started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  echo "==> $name: $*" >&2
  rm -f "$result.new"
  "$@" || code=$?
  if [[ -s $result.new ]]; then
    stamp "$result.new" "$(shown "$@")" "$started" "$code"
    mv "$result.new" "$result"
  fi
  if [[ $code -ne 0 || ! -f $result ]]; then
    echo "==> $name failed (exit status $code)" >&2
    failed+=("$name")
  fi
}

# The command as someone would type it, results written to their final names.
shown() {
  local out="" arg
  for arg in "$@"; do out+="${out:+ }$(printf '%q' "${arg%.new}")"; done
  echo "$out"
}

for step in "${steps[@]}"; do
  case $step in
    connections)
      rm -f "$results/connections-timeline.csv.new"
      measure connections "$results/connections.json" \
        "$PY" bench/connections.py --sessions "${BENCH_SESSIONS:-10000}" \
        --timeline "$results/connections-timeline.csv.new" --json "$results/connections.json.new"
      if [[ -s $results/connections-timeline.csv.new ]]; then
        mv "$results/connections-timeline.csv.new" "$results/connections-timeline.csv"
      fi
      ;;
    messages)
      measure messages "$results/messages.json" \
        "$PY" bench/messages.py --messages "${BENCH_MESSAGES:-50000}" \
        --instances "${BENCH_MESSAGE_INSTANCES:-1000}" --batch "${BENCH_BATCH:-500}" \
        --database-url "$BENCH_DATABASE_URL" --json "$results/messages.json.new"
      ;;
    inbound)
      measure inbound "$results/inbound.json" \
        "$PY" bench/inbound.py --rate "${BENCH_INBOUND_RATE:-1000}" --seconds "${BENCH_INBOUND_SECONDS:-30}" \
        --instances "${BENCH_INBOUND_INSTANCES:-50}" --database-url "$BENCH_DATABASE_URL" \
        --json "$results/inbound.json.new"
      ;;
    campaign_health)
      measure campaign_health "$results/campaign-health.json" \
        "$PY" bench/campaign_health.py --recipients "${BENCH_CAMPAIGN_HEALTH_RECIPIENTS:-10000}" \
        --instances "${BENCH_CAMPAIGN_HEALTH_INSTANCES:-4}" --database-url "$BENCH_DATABASE_URL" \
        --json "$results/campaign-health.json.new"
      ;;
    health)
      measure health "$results/health-latency.json" \
        "$PY" bench/health_latency.py --instances "${BENCH_HEALTH_INSTANCES:-10000}" \
        --concurrency "${BENCH_HEALTH_CONCURRENCY:-50}" --seconds "${BENCH_HEALTH_SECONDS:-30}" \
        --json "$results/health-latency.json.new"
      ;;
    scaleout)
      measure scaleout "$results/scaleout.json" \
        "$PY" bench/scaleout.py --instances "${BENCH_SCALEOUT_INSTANCES:-9000}" \
        --workers "${BENCH_SCALEOUT_WORKERS:-3}" --database-url "$BENCH_DATABASE_URL" \
        --json "$results/scaleout.json.new"
      ;;
    baseline)
      if [[ -f bench/baseline.py ]]; then
        # shellcheck disable=SC2086  # extra arguments are split on purpose
        measure baseline "$results/baseline.json" \
          "$PY" bench/baseline.py ${BENCH_BASELINE_ARGS:-} --json "$results/baseline.json.new"
      else
        echo "==> baseline: bench/baseline.py is not there: skipped" >&2
      fi
      ;;
    chaos)
      command=("$PY" bench/chaos_soak.py --instances 1000 --minutes 30 --seed 1 --database-url "$BENCH_DATABASE_URL")
      echo "==> chaos: ${command[*]}" >&2
      code=0
      { echo "# measured $(date -u +%Y-%m-%dT%H:%MZ) at commit $(git rev-parse --short HEAD)"
        echo "\$ $(shown "${command[@]}") | tee $results/chaos-soak.txt"; "${command[@]}"; } 2>&1 \
        | tee "$results/chaos-soak.txt.new" || code=$?
      mv "$results/chaos-soak.txt.new" "$results/chaos-soak.txt"
      [[ $code -eq 0 ]] || failed+=(chaos)
      ;;
    report) ;;
  esac
done

"$PY" bench/report.py --results "$results"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]} (their earlier results, if any, are kept)" >&2
  exit 1
fi
