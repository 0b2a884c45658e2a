#!/usr/bin/env bash
# Stop the broker started by start.sh: SIGTERM, up to $KAFKA_STOP_TIMEOUT s, then SIGKILL.
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if ! pid=$(kafka_pid); then
  echo "kafka-local: not running ($KAFKA_PIDFILE)"
  rm -f "$KAFKA_PIDFILE"
  exit 0
fi
kill -TERM "$pid"
for ((i = 0; i < KAFKA_STOP_TIMEOUT * 10; i++)); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "kafka-local: pid $pid still up after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL" >&2
  kill -KILL "$pid"
fi
rm -f "$KAFKA_PIDFILE"
echo "kafka-local: stopped (pid $pid)"
