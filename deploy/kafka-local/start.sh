#!/usr/bin/env bash
# Start a single-node KRaft Kafka (broker+controller) on 127.0.0.1:$KAFKA_PORT, in the background.
# Usage: start.sh [--fresh]    --fresh (or KAFKA_FRESH=1) wipes $KAFKA_DATA_DIR first.
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

case ${1:-} in
  --fresh) KAFKA_FRESH=1 ;;
  "") ;;
  *) echo "usage: $0 [--fresh]" >&2 && exit 2 ;;
esac
wait_ready() { "$KAFKA_PYTHON" "$kafka_here/wait_ready.py" "127.0.0.1:$KAFKA_PORT" "$@"; }

if pid=$(kafka_pid); then
  if [[ $KAFKA_FRESH == 1 ]]; then
    "$kafka_here/stop.sh"
  else
    if ! wait_ready --pid "$pid" --timeout "$KAFKA_READY_TIMEOUT" --quiet; then
      echo "kafka-local: pid $pid is up but not answering; see $KAFKA_DATA_DIR/server.log" >&2
      exit 1
    fi
    echo "kafka-local: already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    exit 0
  fi
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
  echo "kafka-local: port $KAFKA_PORT is taken by a process not started from $KAFKA_DATA_DIR" >&2
  exit 1
fi

"$kafka_here/fetch.sh"
[[ $KAFKA_FRESH == 1 ]] && rm -rf "$KAFKA_DATA_DIR"
mkdir -p "$KAFKA_DATA_DIR"
props=$KAFKA_DATA_DIR/server.properties
cat >"$props" <<PROPS
# written by deploy/kafka-local/start.sh on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA_DIR/logs
num.partitions=8
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS

read -ra heap <<<"$KAFKA_HEAP_OPTS"
read -ra extra <<<"$KAFKA_OPTS"
java=("$KAFKA_JAVA" -Dlog4j2.configurationFile="$kafka_here/log4j2.properties"
  -Dkafka.logs.dir="$KAFKA_DATA_DIR" -cp "$KAFKA_LIB/*")

if [[ ! -f $KAFKA_DATA_DIR/logs/meta.properties ]]; then
  cluster_id=$("${java[@]}" kafka.tools.StorageTool random-uuid)
  "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >&2
fi

# setsid: own session, so a Ctrl-C in the shell or make that started it leaves it running.
# (A background child of a script is no group leader, so setsid execs in place and $! is java's pid.)
setsid "${java[@]}" "${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true "${extra[@]}" \
  kafka.Kafka "$props" </dev/null >"$KAFKA_DATA_DIR/kafka.out" 2>&1 &
echo $! >"$KAFKA_PIDFILE"

if ! wait_ready --pid "$!" --timeout "$KAFKA_READY_TIMEOUT"; then
  echo "kafka-local: broker not ready; tail of $KAFKA_DATA_DIR/server.log and kafka.out:" >&2
  tail -n 40 "$KAFKA_DATA_DIR/server.log" "$KAFKA_DATA_DIR/kafka.out" >&2 || true
  exit 1
fi
echo "kafka-local: ready on 127.0.0.1:$KAFKA_PORT (pid $(cat "$KAFKA_PIDFILE"), data $KAFKA_DATA_DIR)"
