#!/usr/bin/env bash
# Brings up the services Strata's tests talk to: MariaDB on 127.0.0.1:3306
# (root, no password) and PostgreSQL on 127.0.0.1:5432 (postgres, trust).
# Starts them when stopped; installs them with apt-get when missing and run
# as root; otherwise stops with a message that says how to fix it.
set -euo pipefail

fail() {
  echo "services: $*" >&2
  exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  fail "$what did not come up within 30 s"
}

apt_install() {
  is_root || fail "$1 is not installed: run \`sudo apt-get install -y $1\`, then run this script again"
  echo "services: installing $1" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

mariadb_tcp() { mariadb --protocol=tcp -h127.0.0.1 -P3306 -uroot -e 'SELECT 1' >/dev/null 2>&1; }

ensure_mariadb() {
  if mariadb_tcp; then return 0; fi
  [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  if ! mysqladmin --protocol=tcp -h127.0.0.1 -P3306 ping >/dev/null 2>&1; then
    is_root || fail "MariaDB is stopped: run \`sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd\`"
    echo "services: starting MariaDB" >&2
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for MariaDB "mysqladmin --protocol=tcp -h127.0.0.1 -P3306 ping"
  fi
  if ! mariadb_tcp; then
    # A fresh Debian install lets root in only through the socket; open TCP without a password.
    is_root || fail "MariaDB refuses root over TCP: run \`sudo mariadb -e \"ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')\"\`"
    mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
    mariadb_tcp || fail "MariaDB refuses root over TCP on 127.0.0.1:3306"
  fi
  mariadb --protocol=tcp -h127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
}

postgres_tcp() { psql -h 127.0.0.1 -p 5432 -U postgres -tAc 'SELECT 1' postgres >/dev/null 2>&1; }

ensure_postgres() {
  # psql also drives the tests of Strata's own PostgreSQL protocol.
  command -v psql >/dev/null || apt_install postgresql-client
  if postgres_tcp; then return 0; fi
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version=""
  if [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
  fi
  [ -n "$version" ] || fail "PostgreSQL is installed but has no cluster in /etc/postgresql"
  if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    is_root || fail "PostgreSQL is stopped: run \`sudo pg_ctlcluster --skip-systemctl-redirect $version main start\`"
    echo "services: starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for PostgreSQL "pg_isready -h 127.0.0.1 -p 5432"
  fi
  if ! postgres_tcp; then
    # A fresh install asks for a password over TCP; trust loopback, as the test machines do.
    is_root || fail "PostgreSQL refuses postgres over TCP: allow 'host all all 127.0.0.1/32 trust' in pg_hba.conf"
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    wait_for "PostgreSQL (trust)" postgres_tcp
  fi
}

ensure_mariadb
ensure_postgres
