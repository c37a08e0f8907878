#!/usr/bin/env bash
# Per-role RabbitMQ users for Vigil, so that only a worker can tell a vehicle what to do.
#
#   scripts/rabbitmq-roles.sh [--prefix P] [--vhost V] [--users U] VEHICLE...
#   scripts/rabbitmq-roles.sh --delete [--users U] VEHICLE...
#
# Creates (or updates) these users on vhost V (default /), for the queues and exchanges
# under prefix P (default vigil, as [amqp] prefix):
#
#   U-worker          takes tasks, publishes replies (through the default exchange) and
#                     retries; reads no reply queue
#   U-vehicle-<id>    publishes tasks to P.tasks, consumes only P.replies.<id>; cannot
#                     publish to the default exchange, so cannot reach any reply queue
#   U-monitor         looks at the task queues (passive declares); publishes nothing
#
# U defaults to vigil. Every process declares the topology it uses, so each role may
# configure (declare) those names and nothing else. Passwords: $VIGIL_ROLE_PASSWORD if
# set (tests), else a random one per user, printed once as `user password`.
# Workers reply with user_id = their user, which RabbitMQ checks against the connection;
# list the worker user in the vehicles' [amqp] reply_publishers. Vehicles publish tasks as
# their user: set the workers' [amqp] task_publisher = "U-vehicle-{vehicle}".
set -euo pipefail

prefix=vigil vhost=/ users=vigil delete=0
vehicles=()
while (($#)); do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --vhost) vhost=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --delete) delete=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "rabbitmq-roles.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) vehicles+=("$1"); shift ;;
  esac
done
for v in "${vehicles[@]}"; do
  if [[ ! $v =~ ^[A-Za-z0-9_.-]+$ ]]; then
    echo "rabbitmq-roles.sh: vehicle id '$v' must be letters, digits, '_', '.' or '-'" >&2
    exit 2
  fi
done

ctl() { rabbitmqctl --quiet "$@" >/dev/null; }
re() { printf '%s' "$1" | sed 's/[.[\^$*+?(){}|\\-]/\\&/g'; }

user_list=("$users-worker" "$users-monitor")
for v in "${vehicles[@]}"; do user_list+=("$users-vehicle-$v"); done

if ((delete)); then
  for u in "${user_list[@]}"; do rabbitmqctl --quiet delete_user "$u" >/dev/null 2>&1 || true; done
  exit 0
fi

existing=$(rabbitmqctl --quiet list_users | awk '{print $1}')
make_user() { # name
  local pw=${VIGIL_ROLE_PASSWORD:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  if grep -qx -- "$1" <<<"$existing"; then
    ctl change_password "$1" "$pw"
  else
    ctl add_user "$1" "$pw"
  fi
  [[ -n ${VIGIL_ROLE_PASSWORD:-} ]] || echo "$1 $pw"
}

p=$(re "$prefix")
tasks="$p\\.tasks(\\..*)?"
make_user "$users-worker"
ctl set_permissions -p "$vhost" "$users-worker" "^$tasks\$" "^(amq\\.default|$tasks)\$" "^$tasks\$"
make_user "$users-monitor"
ctl set_permissions -p "$vhost" "$users-monitor" '^$' '^$' "^$tasks\$"
for v in "${vehicles[@]}"; do
  replies="$p\\.replies\\.$(re "$v")"
  make_user "$users-vehicle-$v"
  # write: publish tasks, bind the queues it declares; read: bind from the exchanges,
  # consume its own replies. Not amq.default, not the task queue.
  ctl set_permissions -p "$vhost" "$users-vehicle-$v" \
    "^($tasks|$replies)\$" "^$p\\.tasks(\\.obstacle|\\.dead)?\$" "^($p\\.tasks|$p\\.tasks\\.dlx|$replies)\$"
done
