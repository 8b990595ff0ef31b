#!/usr/bin/env bash
# A PostgreSQL server of the tests' own: loopback only, in a data dir of its own, never the
# system's cluster (Debian's `main`) or its service.
#
#   scripts/test_postgres.sh start    install Debian's postgresql if missing, initdb once, start
#                                     (idempotent: a running one is reused); prints the URL
#   scripts/test_postgres.sh status   prints the URL and exits 0 when it accepts connections
#   scripts/test_postgres.sh stop     stops it (only this server: pg_ctl on its own data dir)
#
# The URL (also written to $SWEEPER_TEST_PG_DIR/url): postgresql://sweeper@127.0.0.1:PORT/sweeper_test
# The role `sweeper` (no superuser, may create databases) logs in without a password from
# 127.0.0.1 only; the superuser `postgres` only through the server's own socket dir (peer).
# Needs root (the server runs as the postgres user). Environment: SWEEPER_TEST_PG_DIR (default
# /var/tmp/sweeper-test-pg: data/, socket/, server.log), SWEEPER_TEST_PG_PORT (55432).
# Exit status: 0 ok, 1 failure, 2 usage, 3 refused (a dir it did not create, or the port is
# taken by another server).
set -euo pipefail

MARK="# written by sweeper scripts/test_postgres.sh"
ROOT=${SWEEPER_TEST_PG_DIR:-/var/tmp/sweeper-test-pg}
PORT=${SWEEPER_TEST_PG_PORT:-55432}
DATA=$ROOT/data
SOCK=$ROOT/socket
LOG=$ROOT/server.log
ROLE=sweeper
DB=sweeper_test
URL=postgresql://$ROLE@127.0.0.1:$PORT/$DB
REFUSED=3

log() { printf '[test_postgres] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
refuse() { log "refusing $1"; exit "$REFUSED"; }

[[ $PORT =~ ^[0-9]+$ ]] || die "SWEEPER_TEST_PG_PORT must be a port number, not '$PORT'"

bin_dir() {  # the newest Debian PostgreSQL's binaries
  local dir best=""
  for dir in /usr/lib/postgresql/*/bin; do
    if [ ! -x "$dir/initdb" ] || [ ! -x "$dir/pg_ctl" ]; then continue; fi
    if [ -z "$best" ] || [ "$(basename "$(dirname "$dir")")" -gt "$(basename "$(dirname "$best")")" ]; then
      best=$dir
    fi
  done
  [ -n "$best" ] || return 1
  printf '%s\n' "$best"
}

install() {
  bin_dir >/dev/null && return 0
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL under /usr/lib/postgresql and no apt-get to install it"
  log "installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
  bin_dir >/dev/null || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

check_root_dir() {  # ROOT must be ours: a real dir (no symlink), owned by postgres, with our marker
  [ -e "$ROOT" ] || [ -L "$ROOT" ] || return 0
  if [ -L "$ROOT" ] || [ ! -d "$ROOT" ] || [ "$(stat -c %U "$ROOT")" != postgres ] \
      || ! grep -qxF "$MARK" "$ROOT/OWNER" 2>/dev/null; then
    refuse "to use $ROOT: this script did not create it (no '$MARK' in $ROOT/OWNER); remove it or set SWEEPER_TEST_PG_DIR"
  fi
}

make_root_dir() {
  [ -d "$ROOT" ] && return 0
  mkdir -p "$(dirname "$ROOT")"
  mkdir -m 700 "$ROOT"  # fails if someone else made it meanwhile
  printf '%s\n' "$MARK" > "$ROOT/OWNER"
  chown -R postgres:postgres "$ROOT"
}

conf_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }

write_conf() {  # our settings, included last by postgresql.conf
  {
    printf '%s\n' "$MARK"
    printf 'listen_addresses = %s\n' "'127.0.0.1'"
    printf 'port = %s\n' "$PORT"
    printf 'unix_socket_directories = %s\n' "$(conf_quote "$SOCK")"
    # Throwaway test data: durability is not worth the time.
    printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
  } > "$DATA/sweeper.conf"
  chown postgres:postgres "$DATA/sweeper.conf"
}

init_data() {  # initdb once (again when the data dir is from another major version)
  local bin=$1 version
  version=$(basename "$(dirname "$bin")")
  if [ -f "$DATA/PG_VERSION" ]; then
    [ "$(cat "$DATA/PG_VERSION")" = "$version" ] && return 0
    running "$bin" && die "$DATA is PostgreSQL $(cat "$DATA/PG_VERSION") and runs; stop it first"
    log "$DATA is PostgreSQL $(cat "$DATA/PG_VERSION"), the binaries are $version: making it anew"
    rm -rf "$DATA"
  elif [ -e "$DATA" ]; then
    rm -rf "$DATA"  # a half-made one, inside our own dir
  fi
  log "initdb $DATA (PostgreSQL $version)"
  mkdir -p "$SOCK"
  chown postgres:postgres "$SOCK"
  chmod 700 "$SOCK"
  as_postgres "$bin/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C \
    --auth-local=peer --auth-host=reject >/dev/null
  cat > "$DATA/pg_hba.conf" <<EOF
$MARK
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
host    all       $ROLE     127.0.0.1/32   trust
EOF
  printf "\ninclude_if_exists = 'sweeper.conf'\n" >> "$DATA/postgresql.conf"
  chown postgres:postgres "$DATA/pg_hba.conf" "$DATA/postgresql.conf"
}

proc_state() {  # proc_state PID: R, S, Z...; fails when there is no such process
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  printf '%s\n' "${stat%% *}"
}

lock_pid() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null; }

running() {  # the server of $DATA runs: its postmaster is alive (not a zombie) and is postgres
  local pid state
  pid=$(lock_pid) && state=$(proc_state "$pid") || return 1
  [ "$state" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]
}

wait_zombie() {  # a postmaster killed hard is a zombie until reaped, and still holds the lock file
  local i pid
  for ((i = 0; i < 150; i++)); do
    pid=$(lock_pid) && [ "$(proc_state "$pid" || true)" = Z ] || return 0
    sleep 0.1
  done
}

answers() { "$1/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; }

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

admin_sql() {  # admin_sql BIN SQL: as the superuser, through the server's own socket
  as_postgres "$1/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt -c "$2"
}

start() {
  local bin
  check_root_dir
  install
  bin=$(bin_dir)
  make_root_dir
  init_data "$bin"
  write_conf
  if running "$bin"; then
    if ! answers "$bin"; then
      log "restarting the server in $DATA (it does not answer on 127.0.0.1:$PORT)"
      as_postgres "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 restart >/dev/null
    fi
  else
    port_taken && refuse "to start on port $PORT: another server listens on 127.0.0.1:$PORT; set SWEEPER_TEST_PG_PORT"
    wait_zombie
    log "starting PostgreSQL on 127.0.0.1:$PORT ($DATA)"
    as_postgres "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
      || die "the server did not start; see $LOG"
  fi
  if [ "$(admin_sql "$bin" "SELECT count(*) FROM pg_roles WHERE rolname = '$ROLE'")" = 0 ]; then
    admin_sql "$bin" "CREATE ROLE $ROLE LOGIN CREATEDB"
  fi
  if [ "$(admin_sql "$bin" "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 0 ]; then
    admin_sql "$bin" "CREATE DATABASE $DB OWNER $ROLE"
  fi
  "$bin/psql" "$URL" -qAt -c 'SELECT 1' >/dev/null || die "$URL does not accept connections; see $LOG"
  printf '%s\n' "$URL" > "$ROOT/url"
  printf '%s\n' "$URL"
}

status() {
  local bin
  bin=$(bin_dir) || { log "PostgreSQL is not installed"; return 1; }
  [ -d "$DATA" ] || { log "no server in $DATA"; return 1; }
  running "$bin" || { log "the server in $DATA is not running"; return 1; }
  "$bin/psql" "$URL" -qAt -c 'SELECT 1' >/dev/null 2>&1 || { log "$URL does not accept connections"; return 1; }
  printf '%s\n' "$URL"
}

stop() {
  local bin
  [ -d "$ROOT" ] || { log "nothing to stop (no $ROOT)"; return 0; }
  check_root_dir
  bin=$(bin_dir) || { log "nothing to stop (PostgreSQL is not installed)"; return 0; }
  running "$bin" || { log "nothing to stop (the server in $DATA is not running)"; return 0; }
  log "stopping the server in $DATA"
  as_postgres "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and runs the server as the postgres user)"
case ${1:-} in
  start) start ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
