#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, for sweeper's tests and benchmarks.
#
#   slurm/local_cluster.sh start    install (apt) and start munge, MariaDB, slurmdbd, slurmctld, slurmd
#   slurm/local_cluster.sh status   exit 0 when the node answers and is usable
#   slurm/local_cluster.sh stop     stop the daemons this script started (by PID), nothing else
#
# Needs root and apt-get (Debian). Idempotent: packages or daemons that are already there are
# reused. Settings (environment): SLURM_CPUS (default 8: more slots than cores, allowed by
# SlurmdParameters=config_overrides, so throttles can be tested on a small machine),
# SLURM_MEM_MB (16000), MAX_ARRAY_SIZE (1001), MAX_JOB_COUNT (100000).
# Partitions: `debug` (default, preemptable: PreemptMode=REQUEUE) and `urgent` (higher priority
# tier: its jobs preempt debug jobs, which get the --signal first: preempt_send_user_signal).
set -euo pipefail

MARK="# managed by sweeper slurm/local_cluster.sh"
STATE=/run/sweeper-local-cluster
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
CLUSTER=sweeper
NODE=$(hostname -s)
CPUS=${SLURM_CPUS:-8}
MEM_MB=${SLURM_MEM_MB:-16000}
MAX_ARRAY_SIZE=${MAX_ARRAY_SIZE:-1001}
MAX_JOB_COUNT=${MAX_JOB_COUNT:-100000}
DB_PASS=sweeper-test-only

log() { printf '[local_cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what did not come up within ${limit}s"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_daemon() {  # stop_daemon NAME PIDFILE: by PID, waiting until it has exited
  local pid
  running "$2" || return 0
  pid=$(cat "$2")
  log "stopping $1 (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "$1 (pid $pid) did not stop"
}

started() { mkdir -p "$STATE"; echo "$1" >> "$STATE/started"; }

install_packages() {
  local missing=()
  for cmd in slurmctld slurmd slurmdbd munged mysqld_safe sacct; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  log "installing slurm-wlm munge slurmdbd mariadb-server (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
}

start_munge() {
  mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key /var/log/munge /var/lib/munge /run/munge
  chmod 400 /etc/munge/munge.key
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  log "starting munged"
  munged --force
  started munged
  wait_for 10 munged bash -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting MariaDB"
    (mysqld_safe --user=mysql >/dev/null 2>&1 &)
    started mysqld
    wait_for 60 MariaDB mysqladmin ping
  fi
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

write_configs() {
  mkdir -p /etc/slurm /var/log/slurm /var/spool/sweeper-slurmctld /var/spool/sweeper-slurmd
  chown slurm:slurm /var/log/slurm /var/spool/sweeper-slurmctld
  for f in "$CONF" "$DBD_CONF"; do
    if [ -f "$f" ] && ! grep -qF "$MARK" "$f"; then
      log "keeping your $f as $f.bak before writing the test cluster's"
      mv "$f" "$f.bak"
    fi
  done
  cat > "$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$DBD_CONF"
  chmod 600 "$DBD_CONF"
  local new
  new=$(mktemp)
  cat > "$new" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
StateSaveLocation=/var/spool/sweeper-slurmctld
SlurmdSpoolDir=/var/spool/sweeper-slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmdParameters=config_overrides
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=$MAX_JOB_COUNT
MinJobAge=10
KillWait=5
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=urgent Nodes=$NODE Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
  if [ -f "$CONF" ] && cmp -s "$new" "$CONF"; then rm -f "$new"; return 1; fi
  mv "$new" "$CONF"
  chmod 644 "$CONF"
  return 0
}

start_slurm() {
  local changed=$1
  if ! running /run/slurmdbd.pid; then
    log "starting slurmdbd"
    slurmdbd
    started slurmdbd
  fi
  wait_for 60 slurmdbd sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if running /run/slurmctld.pid && [ "$changed" = 1 ]; then
    # Some settings (MaxArraySize, the node's CPUs) only take effect on a restart; jobs survive it.
    log "config changed: restarting slurmctld and slurmd"
    stop_daemon slurmctld /run/slurmctld.pid
    stop_daemon slurmd /run/slurmd.pid
  fi
  if ! running /run/slurmctld.pid; then
    log "starting slurmctld"
    slurmctld
    started slurmctld
  fi
  wait_for 60 slurmctld scontrol ping
  if ! running /run/slurmd.pid; then
    log "starting slurmd"
    slurmd
    started slurmd
  fi
  wait_for 60 "the node" bash -c "sinfo -h -n '$NODE' -o %T | grep -Eq 'idle|mixed|alloc'" || true
  if ! sinfo -h -n "$NODE" -o %T | grep -Eq 'idle|mixed|alloc'; then
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 30 "the node" bash -c "sinfo -h -n '$NODE' -o %T | grep -Eq 'idle|mixed|alloc'"
  fi
}

status() {
  scontrol ping >/dev/null 2>&1 || { log "slurmctld is not answering"; return 1; }
  local state
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  echo "$state" | grep -Eq 'idle|mixed|alloc' || { log "node $NODE is '$state'"; return 1; }
  sacct -n -X -S now-1minutes >/dev/null 2>&1 || { log "accounting (sacct) is not answering"; return 1; }
  log "up: node $NODE $state, MaxArraySize=$(scontrol show config | awk '/^MaxArraySize/ {print $3}')"
}

stop() {
  [ -f "$STATE/started" ] || { log "nothing to stop (this script started no daemon)"; return 0; }
  for daemon in slurmd slurmctld slurmdbd mysqld munged; do
    grep -qx "$daemon" "$STATE/started" || continue
    local pidfile
    case $daemon in
      mysqld) pidfile=$(ls /run/mysqld/*.pid 2>/dev/null | head -1) ;;
      munged) pidfile=/run/munge/munged.pid ;;
      *) pidfile=/run/$daemon.pid ;;
    esac
    [ -n "$pidfile" ] && stop_daemon "$daemon" "$pidfile"
  done
  rm -f "$STATE/started"
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
case ${1:-} in
  start)
    install_packages
    start_munge
    start_mariadb
    changed=0
    write_configs && changed=1
    start_slurm "$changed"
    status
    ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
