#!/usr/bin/env bash
# Run the health monitor (manage.py health_monitor) in the background.
#
#   scripts/health-monitor.sh start [extra health_monitor flags]
#   scripts/health-monitor.sh stop
#   scripts/health-monitor.sh status
#
# Environment: HEALTH_URL (default http://127.0.0.1:${WEB_PORT:-8000}/health),
# HEALTH_INTERVAL (seconds, default 30), BLAST_RUN_DIR (pid file, default
# .run), BLAST_LOG_DIR (default logs). The monitor logs every check to
# $BLAST_LOG_DIR/health-monitor.log; its own stdout/stderr go to
# $BLAST_LOG_DIR/health-monitor.out.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
RUN_DIR=${BLAST_RUN_DIR:-.run}
LOG_DIR=${BLAST_LOG_DIR:-logs}
PID_FILE="$RUN_DIR/health-monitor.pid"
LOG_FILE="$LOG_DIR/health-monitor.log"
URL=${HEALTH_URL:-http://127.0.0.1:${WEB_PORT:-8000}/health}
INTERVAL=${HEALTH_INTERVAL:-30}

# The pid in the pid file, if that process is still our monitor.
running_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid belongs to another program: check the command line.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "health_monitor" || return 1
  echo "$pid"
}

started_lines() {
  if [[ -f $LOG_FILE ]]; then grep -c "monitor started" "$LOG_FILE" || true; else echo 0; fi
}

start() {
  local pid
  if pid=$(running_pid); then
    echo "health monitor already running (pid $pid)"
    return 0
  fi
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  local before
  before=$(started_lines)
  nohup "$PY" manage.py health_monitor --url "$URL" --interval "$INTERVAL" --log-file "$LOG_FILE" "$@" \
    >>"$LOG_DIR/health-monitor.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  # Started when its first line is in the log (or it exited: report that).
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      echo "health monitor exited at start; see $LOG_DIR/health-monitor.out" >&2
      tail -n 20 "$LOG_DIR/health-monitor.out" >&2 || true
      return 1
    fi
    if [[ $(started_lines) -gt $before ]]; then
      break
    fi
    sleep 0.2
  done
  echo "health monitor started (pid $pid): $URL every ${INTERVAL}s, log $LOG_FILE"
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    echo "health monitor not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "health monitor (pid $pid) did not stop within 10s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  echo "health monitor stopped (pid $pid)"
}

status() {
  local pid
  if pid=$(running_pid); then
    echo "health monitor running (pid $pid), log $LOG_FILE"
    [[ -f $LOG_FILE ]] && tail -n 1 "$LOG_FILE"
    return 0
  fi
  echo "health monitor not running"
  return 3
}

command=${1:-}
shift || true
case $command in
  start) start "$@" ;;
  stop) stop ;;
  status) status ;;
  restart) stop; start "$@" ;;
  *) echo "usage: $0 start|stop|status|restart [health_monitor flags]" >&2; exit 2 ;;
esac
