#!/usr/bin/env bash
# A three-node RabbitMQ test cluster beside the machine's default node.
#
#   rabbitmq-cluster.sh up             start rabbit-a/b/c@localhost and cluster them
#   rabbitmq-cluster.sh down           stop all three and remove their data
#   rabbitmq-cluster.sh kill N         kill -9 node N (a, b or c)
#   rabbitmq-cluster.sh pause N        kill -STOP node N
#   rabbitmq-cluster.sh resume N       kill -CONT node N
#   rabbitmq-cluster.sh start N        start node N again (it rejoins)
#   rabbitmq-cluster.sh ctl N ARGS...  rabbitmqctl -n rabbit-N@localhost ARGS...
#   rabbitmq-cluster.sh pid N          the node's OS pid
#
# Nodes: rabbit-a/b/c@localhost, AMQP on 127.0.0.1:5681/5682/5683, Erlang
# distribution on 127.0.0.1:25681/25682/25683, each with its own data dir,
# log dir, config file, environment file and (empty) plugin file under
# $MQKIT_CLUSTER_DIR (default /tmp/mqkit-rabbitmq-cluster). They run as the
# `rabbitmq` user with the machine's Erlang cookie and register with the
# machine's epmd. The default node (rabbit@localhost, 5672) is never
# touched: every rabbitmqctl call names its node with -n, nodes are stopped
# by the pids in their own pid files, and epmd is left alone.
set -euo pipefail

DIR=${MQKIT_CLUSTER_DIR:-/tmp/mqkit-rabbitmq-cluster}
NODES=(a b c)
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_HOME=/var/lib/rabbitmq

port_of() {
  case "$1" in
    a) echo 5681 ;;
    b) echo 5682 ;;
    c) echo 5683 ;;
    *) echo "unknown node '$1' (a, b or c)" >&2; exit 2 ;;
  esac
}

node_name() { echo "rabbit-$1@localhost"; }

# The environment one node's scripts run with, in the array ENV: nothing
# from /etc/rabbitmq/rabbitmq-env.conf (it names the default node).
node_env() {
  local n=$1 port
  port=$(port_of "$n")
  local d="$DIR/$n"
  ENV=(
    HOME="$RMQ_HOME"
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf"
    RABBITMQ_NODENAME="$(node_name "$n")"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$port"
    RABBITMQ_DIST_PORT="$((port + 20000))"
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$d/mnesia"
    RABBITMQ_LOG_BASE="$d/log"
    RABBITMQ_PID_FILE="$d/pid"
    ERL_EPMD_ADDRESS=127.0.0.1
    "ERL_FLAGS=-kernel inet_dist_use_interface {127,0,0,1}"
  )
}

as_rabbitmq() {
  local n=$1
  shift
  node_env "$n"
  (cd "$RMQ_HOME" && runuser -u rabbitmq -- env "${ENV[@]}" "$@")
}

# rabbitmqctl on node N, given up after 60 s (a listing waits for every
# node, and a paused one never answers).
ctl() {
  local n=$1
  shift
  as_rabbitmq "$n" timeout 60 "$RMQ_BIN/rabbitmqctl" -n "$(node_name "$n")" "$@"
}

# Whether process $2 is node $1 of this cluster (its environment names the
# node's data dir).
is_node() {
  tr '\0' '\n' 2>/dev/null <"/proc/$2/environ" | grep -qx "RABBITMQ_MNESIA_BASE=$DIR/$1/mnesia"
}

# The node's OS pid: the one in its pid file if that process is this node,
# or else the beam.smp process whose environment names this node's data
# dir (a node killed before it wrote its pid file). Never another process.
pid_of() {
  local f="$DIR/$1/pid" p
  if [[ -s $f ]] && p=$(cat "$f") && is_node "$1" "$p"; then
    echo "$p"
    return 0
  fi
  for p in $(pgrep -x beam.smp || true); do
    if is_node "$1" "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

alive() {
  local pid
  pid=$(pid_of "$1") || return 1
  kill -0 "$pid" 2>/dev/null
}

prepare() {
  local n=$1 port
  port=$(port_of "$n")
  local d="$DIR/$n"
  mkdir -p "$d/mnesia" "$d/log"
  : >"$d/rabbitmq-env.conf"
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
log.console = false
log.file.level = info
# A paused or killed peer is noticed within seconds.
net_ticktime = 10
cluster_partition_handling = autoheal
EOF
  echo '[].' >"$d/advanced.config"
  echo '[].' >"$d/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$d"
}

start_node() {
  local n=$1
  if alive "$n"; then
    return 0
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$(port_of "$n")") 2>/dev/null; then
    echo "port $(port_of "$n") is taken by something else; not starting $(node_name "$n")" >&2
    exit 1
  fi
  prepare "$n"
  rm -f "$DIR/$n/pid"
  as_rabbitmq "$n" "$RMQ_BIN/rabbitmq-server" -detached >>"$DIR/$n/log/startup.log" 2>&1
}

# Waits up to 90 s for the node to run (await_startup fails at once while
# the node's VM is not registered yet, so it is asked again).
await_node() {
  local n=$1
  for _ in $(seq 90); do
    if ctl "$n" await_startup --timeout 5 >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  echo "$(node_name "$n") did not start; its logs:" >&2
  tail -n 40 "$DIR/$n/log/"*.log >&2 || true
  exit 1
}

up() {
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  for n in "${NODES[@]}"; do start_node "$n"; done
  for n in "${NODES[@]}"; do await_node "$n"; done
  for n in b c; do
    if ctl "$n" cluster_status --formatter json 2>/dev/null | grep -q "rabbit-a@localhost"; then
      continue
    fi
    ctl "$n" stop_app >/dev/null
    ctl "$n" join_cluster "$(node_name a)" >/dev/null
    ctl "$n" start_app >/dev/null
  done
  for n in "${NODES[@]}"; do await_node "$n"; done
}

stop_node() {
  local n=$1 pid
  pid=$(pid_of "$n") || return 0
  kill -CONT "$pid" 2>/dev/null || true
  if kill -0 "$pid" 2>/dev/null; then
    as_rabbitmq "$n" timeout 30 "$RMQ_BIN/rabbitmqctl" -n "$(node_name "$n")" stop >/dev/null 2>&1 || true
  fi
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$DIR/$n/pid"
}

down() {
  [[ -d $DIR ]] || return 0
  for n in "${NODES[@]}"; do stop_node "$n"; done
  rm -rf "$DIR"
}

signal() {
  local sig=$1 n=$2 pid
  pid=$(pid_of "$n") || { echo "$(node_name "$n") has no pid file" >&2; exit 1; }
  kill "-$sig" "$pid"
}

cmd=${1:-}
case "$cmd" in
  up) up ;;
  down) down ;;
  kill) signal KILL "${2:?node}" ;;
  pause) signal STOP "${2:?node}" ;;
  resume) signal CONT "${2:?node}" ;;
  start) start_node "${2:?node}"; await_node "$2" ;;
  ctl) n=${2:?node}; shift 2; ctl "$n" "$@" ;;
  pid) pid_of "${2:?node}" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
