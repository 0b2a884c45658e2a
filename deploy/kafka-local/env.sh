# shellcheck shell=bash disable=SC2034
# Sourced by the kafka-local scripts: every env var they honour, with its default.
KAFKA_LOCAL_HOME=$(realpath -m "${KAFKA_LOCAL_HOME:-$HOME/.cache/conversation-sessions/kafka}")
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_DATA_DIR=$(realpath -m "${KAFKA_DATA_DIR:-$KAFKA_LOCAL_HOME/data-$KAFKA_PORT}")
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_FRESH=${KAFKA_FRESH:-0}

kafka_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_LIB=$KAFKA_LOCAL_HOME/lib
KAFKA_PIDFILE=$KAFKA_DATA_DIR/kafka.pid
KAFKA_JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
if [[ -z ${KAFKA_PYTHON:-} ]]; then
  KAFKA_PYTHON=$kafka_here/../../.venv/bin/python
  [[ -x $KAFKA_PYTHON ]] || KAFKA_PYTHON=python3
fi

# Print the broker's pid if the pid file names a live kafka.Kafka process.
kafka_pid() {
  local pid
  pid=$(cat "$KAFKA_PIDFILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && ps -o args= -p "$pid" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}
