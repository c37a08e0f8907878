#!/usr/bin/env bash
# Development and CI brokers: a Kafka-protocol broker (nisshi) and RabbitMQ.
#
#   scripts/brokers.sh up       install what is missing, start both, wait until they answer
#   scripts/brokers.sh down     stop the Kafka-protocol broker (RabbitMQ belongs to the machine)
#   scripts/brokers.sh status   say whether each answers; exit 1 if one does not
#   scripts/brokers.sh restart-kafka   stop and start the Kafka broker, keeping its data
#   scripts/brokers.sh secure-kafka DIR PORT USER PASSWORD
#                       a second Kafka-protocol broker on 127.0.0.1:PORT that serves only
#                       TLS (a self-signed certificate for 127.0.0.1, DIR/ca.pem) and
#                       requires SASL/SCRAM-SHA-512 as USER; its data and pid in DIR
#                       (`kill $(cat DIR/nisshi.pid)` stops it)
#   scripts/brokers.sh secure-amqp DIR PORT
#                       a second RabbitMQ node (vigil-tls-PORT@localhost) that serves only
#                       AMQPS on 127.0.0.1:PORT and requires a client certificate: a test
#                       CA (DIR/ca.pem), the server's certificate, and a client's
#                       (DIR/client.pem, DIR/client.key); guest/guest, data and logs in DIR
#   scripts/brokers.sh stop-amqp PORT   stops that node
#
# Settings (environment):
#   VIGIL_CACHE        where the nisshi binary is cached      (~/.cache/vigil)
#   VIGIL_NISSHI_DATA   the broker's working directory (data)  ($VIGIL_CACHE/kafka-data)
#   VIGIL_NISSHI_PORT   listener port                           (9092)
#   VIGIL_RABBIT_PORT    RabbitMQ port                           (5672)
set -euo pipefail

NISSHI_VERSION=0.8.1
cache=${VIGIL_CACHE:-$HOME/.cache/vigil}
nisshi_root="$cache/nisshi-$NISSHI_VERSION"
nisshi="$nisshi_root/bin/nisshi"
data=${VIGIL_NISSHI_DATA:-$cache/kafka-data}
kport=${VIGIL_NISSHI_PORT:-9092}
aport=${VIGIL_RABBIT_PORT:-5672}
pidfile="$data/nisshi.pid"
log="$data/nisshi.log"

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # name port seconds
  local name=$1 port=$2 secs=$3 i
  for ((i = 0; i < secs * 5; i++)); do
    if answers 127.0.0.1 "$port"; then return 0; fi
    sleep 0.2
  done
  echo "brokers.sh: $name did not answer on 127.0.0.1:$port within ${secs}s" >&2
  return 1
}

install_nisshi() {
  if [[ -x "$nisshi" ]]; then return 0; fi
  echo "brokers.sh: installing nisshi $NISSHI_VERSION into $nisshi_root (about 10 minutes on 2 cores, once)" >&2
  mkdir -p "$nisshi_root"
  # nisshi declares rustc 1.96 but builds and runs on 1.95.
  CARGO_TARGET_DIR="$cache/nisshi-build" cargo install nisshi --version "$NISSHI_VERSION" --locked \
    --ignore-rust-version --root "$nisshi_root" -q
  rm -rf "$cache/nisshi-build"
}

kafka_up() {
  install_nisshi
  if answers 127.0.0.1 "$kport"; then return 0; fi
  mkdir -p "$data"
  # The sqlite path is relative to the working directory; data survives a restart.
  # `cd` first, then one backgrounded command: `$!` is the broker's own pid.
  (
    cd "$data" || exit 1
    nohup "$nisshi" broker --listener-url "tcp://127.0.0.1:$kport" \
      --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine sqlite://kafka.db \
      >>"$log" 2>&1 &
    echo $! >"$pidfile"
  )
  wait_for "Kafka-protocol broker (nisshi, log $log)" "$kport" 60
}

kafka_down() {
  if [[ -f "$pidfile" ]]; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  # Whatever answers now is not the broker this data directory started: say so rather
  # than "restart" someone else's broker.
  for _ in $(seq 50); do answers 127.0.0.1 "$kport" || return 0; sleep 0.1; done
  echo "brokers.sh: something still answers on 127.0.0.1:$kport after stopping the broker of $data" >&2
  return 1
}

rabbit_up() {
  if answers 127.0.0.1 "$aport"; then return 0; fi
  if ! command -v rabbitmq-server >/dev/null; then
    echo "brokers.sh: RabbitMQ is not installed (apt-get install rabbitmq-server)" >&2
    return 1
  fi
  rabbitmq-server -detached || true
  wait_for RabbitMQ "$aport" 90
  # start_app after a test's stop_app leaves the node up but the app stopped.
  rabbitmqctl await_startup >/dev/null 2>&1 || true
}

rabbit_ensure_app() {
  # A test that ran `rabbitmqctl stop_app` and died leaves the port closed.
  if ! answers 127.0.0.1 "$aport" && command -v rabbitmqctl >/dev/null; then
    rabbitmqctl start_app >/dev/null 2>&1 || true
  fi
}

secure_kafka() { # dir port user password
  local dir=$1 port=$2 user=$3 password=$4 pid
  install_nisshi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$dir/key.pem" -out "$dir/ca.pem" 2>/dev/null
  # Users are created over the protocol, which a TLS-only, authenticating listener
  # refuses to an anonymous client: create it on a plain start, then restart secured.
  start() {
    (
      cd "$dir" || exit 1
      nohup "$nisshi" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://kafka.db "$@" \
        >>"$dir/nisshi.log" 2>&1 &
      echo $! >"$dir/nisshi.pid"
    )
    wait_for "secured Kafka-protocol broker (log $dir/nisshi.log)" "$port" 30
  }
  start
  "$nisshi" user create --broker "tcp://127.0.0.1:$port" --mechanism scram512 "$user" "$password" >/dev/null
  pid=$(cat "$dir/nisshi.pid")
  kill "$pid"
  for _ in $(seq 50); do answers 127.0.0.1 "$port" || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 50); do answers 127.0.0.1 "$port" || break; sleep 0.1; done
  start --cert "$dir/ca.pem" --key "$dir/key.pem" --authentication
}

# A throwaway PKI: a CA, a server certificate for 127.0.0.1/localhost and a client's.
test_pki() { # dir
  local d=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes) who ext
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=vigil-test-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/server.ext"
  for who in server client; do
    ext=()
    [[ $who == server ]] && ext=(-extfile "$d/server.ext")
    openssl req "${ec[@]}" -subj "/CN=vigil-$who" -keyout "$d/$who.key" -out "$d/$who.csr" 2>/dev/null
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
      "${ext[@]}" -out "$d/$who.pem" 2>/dev/null
  done
}

secure_amqp() { # dir port
  local dir=$1 port=$2 node="vigil-tls-$2@localhost"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rabbitmqctl -q -n "$node" stop >/dev/null 2>&1 || true
  rm -rf "${dir:?}/mnesia" "${dir:?}/log"
  mkdir -p "$dir/mnesia" "$dir/log"
  test_pki "$dir"
  printf '%s\n' "listeners.tcp = none" "listeners.ssl.default = 127.0.0.1:$port" \
    "ssl_options.cacertfile = $dir/ca.pem" "ssl_options.certfile = $dir/server.pem" \
    "ssl_options.keyfile = $dir/server.key" "ssl_options.verify = verify_peer" \
    "ssl_options.fail_if_no_peer_cert = true" >"$dir/rabbitmq.conf"
  echo "[]." >"$dir/enabled_plugins"
  # The node runs as the rabbitmq user (the server script switches to it).
  chmod 644 "$dir"/*.key
  if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq: "$dir"; fi
  RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port > 45000 ? port - 20000 : port + 20000)) \
    RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
    RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/rabbitmq.pid \
    rabbitmq-server -detached
  wait_for "RabbitMQ TLS node $node (logs in $dir/log)" "$port" 60
  # The listener opens before the node is ready for clients.
  rabbitmqctl -q -n "$node" await_startup >/dev/null
}

case ${1:-status} in
  up)
    rabbit_ensure_app
    rabbit_up
    kafka_up
    echo "brokers.sh: Kafka-protocol broker on 127.0.0.1:$kport, RabbitMQ on 127.0.0.1:$aport" >&2
    ;;
  down) kafka_down ;;
  restart-kafka)
    kafka_down
    kafka_up
    ;;
  install) install_nisshi; echo "$nisshi" ;;
  secure-kafka)
    [[ $# -eq 5 ]] || { echo "usage: scripts/brokers.sh secure-kafka DIR PORT USER PASSWORD" >&2; exit 2; }
    secure_kafka "$2" "$3" "$4" "$5"
    ;;
  secure-amqp)
    [[ $# -eq 3 ]] || { echo "usage: scripts/brokers.sh secure-amqp DIR PORT" >&2; exit 2; }
    secure_amqp "$2" "$3"
    ;;
  stop-amqp)
    [[ $# -eq 2 ]] || { echo "usage: scripts/brokers.sh stop-amqp PORT" >&2; exit 2; }
    rabbitmqctl -q -n "vigil-tls-$2@localhost" stop >/dev/null 2>&1 || true
    ;;
  path) echo "$nisshi" ;;
  status)
    ok=0
    if answers 127.0.0.1 "$kport"; then echo "kafka: up (127.0.0.1:$kport)"; else echo "kafka: down"; ok=1; fi
    if answers 127.0.0.1 "$aport"; then echo "rabbitmq: up (127.0.0.1:$aport)"; else echo "rabbitmq: down"; ok=1; fi
    exit $ok
    ;;
  *)
    echo "usage: scripts/brokers.sh up|down|status|restart-kafka|install|path|secure-kafka|secure-amqp|stop-amqp" >&2
    exit 2
    ;;
esac
