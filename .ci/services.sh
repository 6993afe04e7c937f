#!/usr/bin/env bash
# Makes sure PostgreSQL, MariaDB, Redis and RabbitMQ answer on loopback, starting (or installing) any
# that does not. Idempotent: a running service is left alone.
set -uo pipefail

up() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() { # port name seconds
  for _ in $(seq 1 "$3"); do up "$1" && { echo "$2: up on $1"; return 0; }; sleep 1; done
  echo "$2: still down on $1 after $3 s" >&2
  return 1
}

apt_updated=""
need() { # command package...
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}"
}

if ! up 5432; then
  ls /etc/postgresql >/dev/null 2>&1 || need psql postgresql
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for 5432 postgresql 30
  su postgres -c "psql -tc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 || createdb test" || true
else
  echo "postgresql: up on 5432"
fi

if ! up 3306; then
  need mariadbd mariadb-server
  # No systemd here, and Debian's init script waits 30 s on its own checks and then reports a
  # failure: start the server directly, detached (crates/ordermill/tests/mysql_restart.rs
  # starts it the same way).
  install -d -o mysql -g mysql /run/mysqld
  setsid /usr/sbin/mariadbd --user=mysql >/dev/null 2>&1 < /dev/null &
  wait_for 3306 mariadb 60
else
  echo "mariadb: up on 3306"
fi
# The tests log in as root over TCP without a password and make a database per test.
mysql -uroot -e "CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" \
  || echo "mariadb: could not create database test" >&2

if ! up 6379; then
  need redis-server redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for 6379 redis 15
else
  echo "redis: up on 6379"
fi

if ! up 5672; then
  need rabbitmq-server rabbitmq-server
  # Hundreds of quorum queues (the bus tests declare a topology per case) need more than the
  # default 1,024 file descriptors; short of them the broker stops accepting connections.
  # The wrapper script switches to the rabbitmq user through su, whose PAM session resets the
  # limit to 1,024: raise it inside that session.
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    su rabbitmq -s /bin/sh -c "cd /var/lib/rabbitmq && ulimit -n $(ulimit -Hn) && /usr/lib/rabbitmq/bin/rabbitmq-server -detached"
  else
    (ulimit -n "$(ulimit -Hn)"; rabbitmq-server -detached)
  fi
  wait_for 5672 rabbitmq 90
else
  echo "rabbitmq: up on 5672"
fi

# nginx is not a service here: the scaled-out test (crates/ordermill/tests/scaled_out.rs)
# starts its own as a child process on a config in a temp dir. Only the binary is needed, so
# the distribution's service is not started (and is stopped if the package started it).
if ! command -v nginx >/dev/null 2>&1; then
  need nginx nginx
  if [ -f /run/nginx.pid ]; then nginx -s stop 2>/dev/null || true; fi
fi
command -v nginx >/dev/null 2>&1 && echo "nginx: $(nginx -v 2>&1)"

# libfaketime runs an api node with its wall clock off (crates/ordermill/tests/clock_skew.rs).
command -v faketime >/dev/null 2>&1 || need faketime faketime
