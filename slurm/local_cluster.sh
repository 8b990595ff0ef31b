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
#
# It never takes over a SLURM installation it did not set up. It refuses (one line, exit 3)
#   - to replace a slurm.conf or slurmdbd.conf that lacks its marker line ($MARK below),
#   - to start next to slurmctld/slurmd/slurmdbd processes it did not start when there is no
#     slurm.conf of its own (someone else's cluster),
#   - to stop or restart a daemon it did not start: it records the PID, the kernel's start time
#     and the boot of each daemon it starts in $STATE/pids, and signals a PID only when all still
#     match (a reused PID is never signalled). A pid file that names a process of another program
#     is stale: that daemon counts as not running. (Records of older versions of this script,
#     names only in $STATE/started, count for daemons started before that file was written.)
# SWEEPER_TEST_CLUSTER_FORCE=1 overrides the refusals (the old behaviour): a foreign config is
# moved to NAME.bak, the slurmctld/slurmd that the pid files name are restarted, and `stop` stops
# each daemon it has a record of, whichever process of that program its pid file names.
# Locations, for tests of these guards: SWEEPER_TEST_CLUSTER_ETC (the config dir, /etc/slurm;
# exported to SLURM commands as SLURM_CONF), SWEEPER_TEST_CLUSTER_RUN (where the pid files live:
# /run/slurm*.pid, /run/munge/munged.pid, /run/mysqld/mysqld.pid), SWEEPER_TEST_CLUSTER_STATE
# (this script's own records, /run/sweeper-local-cluster).
set -euo pipefail

MARK="# managed by sweeper slurm/local_cluster.sh"
ETC=${SWEEPER_TEST_CLUSTER_ETC:-/etc/slurm}
RUN=${SWEEPER_TEST_CLUSTER_RUN:-/run}
STATE=${SWEEPER_TEST_CLUSTER_STATE:-/run/sweeper-local-cluster}
FORCE=${SWEEPER_TEST_CLUSTER_FORCE:-0}
CONF=$ETC/slurm.conf
DBD_CONF=$ETC/slurmdbd.conf
MUNGE_PID=$RUN/munge/munged.pid
MYSQL_PID=$RUN/mysqld/mysqld.pid
CLUSTER=sweeper
NODE=$(hostname -s)
CPUS=${SLURM_CPUS:-8}
MEM_MB=${SLURM_MEM_MB:-16000}
MAX_ARRAY_SIZE=${MAX_ARRAY_SIZE:-1001}
MAX_JOB_COUNT=${MAX_JOB_COUNT:-100000}
DB_PASS=sweeper-test-only
REFUSED=3  # exit status of a refusal, so callers can tell it from a failure
export SLURM_CONF=$CONF

log() { printf '[local_cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
refuse() {  # refuse WHAT: one line, exit $REFUSED
  log "refusing $1; set SWEEPER_TEST_CLUSTER_FORCE=1 to override"
  exit "$REFUSED"
}
forced() { [ "$FORCE" = 1 ]; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2 i; shift 2
  for ((i = 0; i < limit * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what did not come up within ${limit}s"
}

# --- processes: which daemon runs, and did this script start it ----------------------------------

proc_stat() {  # proc_stat PID: the fields of /proc/PID/stat after the command name (state first)
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  printf '%s\n' "${stat##*) }"
}

alive() {  # alive PID: running, and not a zombie
  local fields
  read -ra fields <<< "$(proc_stat "$1")"
  [ "${#fields[@]}" -gt 19 ] && [ "${fields[0]}" != Z ]
}

identity() {  # identity PID: "PID START BOOT", START the kernel's start time (stat field 22)
  local fields boot
  read -ra fields <<< "$(proc_stat "$1")"
  [ "${#fields[@]}" -gt 19 ] || return 1
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  printf '%s %s %s\n' "$1" "${fields[19]}" "$boot"
}

pidfile_of() {  # pidfile_of DAEMON
  case $1 in
    munged) printf '%s\n' "$MUNGE_PID" ;;
    mysqld) printf '%s\n' "$MYSQL_PID" ;;
    *) printf '%s\n' "$RUN/$1.pid" ;;
  esac
}

is_daemon() {  # is_daemon DAEMON PID: that process runs the daemon's program (not a reused PID)
  local comm
  alive "$2" || return 1
  comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
  case $1 in
    mysqld) [ "$comm" = mariadbd ] || [ "$comm" = mysqld ] ;;
    *) [ "$comm" = "$1" ] ;;
  esac
}

daemon_pid() {  # daemon_pid DAEMON: the PID in its pid file, when that process is the daemon
  local pidfile pid
  pidfile=$(pidfile_of "$1")
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile" 2>/dev/null | tr -d '[:space:]')
  [[ $pid =~ ^[0-9]+$ ]] && is_daemon "$1" "$pid" || return 1
  printf '%s\n' "$pid"
}

recorded() {  # recorded DAEMON: this script started one (now running or not)
  grep -qs "^$1 " "$STATE/pids" || grep -qsx "$1" "$STATE/started"
}

forget() {  # forget DAEMON
  [ -f "$STATE/pids" ] || return 0
  { grep -v "^$1 " "$STATE/pids" || true; } > "$STATE/pids.new"
  mv "$STATE/pids.new" "$STATE/pids"
}

record() {  # record DAEMON: note who the daemon this script just started is
  local pid="" id i
  for ((i = 0; i < 100; i++)); do
    pid=$(daemon_pid "$1") && break
    sleep 0.1
  done
  if [ -z "$pid" ] || ! id=$(identity "$pid"); then
    log "warning: no $1 in $(pidfile_of "$1"): 'stop' will leave it running"
    return 0
  fi
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  forget "$1"
  printf '%s %s\n' "$1" "$id" >> "$STATE/pids"
}

legacy_owned() {  # legacy_owned DAEMON PID: named in the $STATE/started of older versions of this
  # script (names only), under our own slurm.conf, and started before that record was last
  # written (a PID reused later is not ours)
  local legacy=$STATE/started btime ticks fields mtime
  [ -f "$legacy" ] && grep -qx "$1" "$legacy" && ours "$CONF" || return 1
  read -ra fields <<< "$(identity "$2")"
  [ "${#fields[@]}" -eq 3 ] || return 1
  btime=$(awk '$1 == "btime" {print $2}' /proc/stat)
  ticks=$(getconf CLK_TCK)
  mtime=$(stat -c %Y "$legacy")
  [ $((btime + fields[1] / ticks)) -le $((mtime + 2)) ]
}

owned() {  # owned DAEMON PID: this script started that very process
  local id
  is_daemon "$1" "$2" && id=$(identity "$2") || return 1
  grep -qsxF "$1 $id" "$STATE/pids" || legacy_owned "$1" "$2"
}

stop_daemon() {  # stop_daemon DAEMON: by PID, only one this script started, waiting until it exits
  local pid i
  pid=$(daemon_pid "$1") || { forget "$1"; return 0; }
  forced || owned "$1" "$pid" \
    || refuse "to stop $1: pid $pid in $(pidfile_of "$1") was not started by this script"
  log "stopping $1 (pid $pid)"
  kill "$pid"
  for ((i = 0; i < 100; i++)); do
    if ! alive "$pid"; then forget "$1"; return 0; fi
    sleep 0.1
  done
  die "$1 (pid $pid) did not stop"
}

ours() { [ -f "$1" ] && grep -qxF "$MARK" "$1"; }

# --- configs ------------------------------------------------------------------------------------

dbd_conf() {
  cat <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

slurm_conf() {
  cat <<EOF
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
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
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
}

conf_changed() { ! { [ -f "$CONF" ] && cmp -s "$CONF" <(slurm_conf); }; }

preflight_start() {  # every refusal happens here, before anything is installed, written or signalled
  local f daemon pid
  forced && return 0
  for f in "$CONF" "$DBD_CONF"; do
    if [ -e "$f" ] && ! ours "$f"; then
      refuse "to touch $f: it was not written by this script (no '$MARK' line)"
    fi
  done
  for daemon in slurmdbd slurmctld slurmd; do
    if pid=$(daemon_pid "$daemon") && ! owned "$daemon" "$pid"; then
      # Under our own slurm.conf it is ours in all but the record (started by hand, say): it is
      # reused as it is, but never restarted.
      ours "$CONF" || refuse "to start next to $daemon pid $pid (from $(pidfile_of "$daemon")), which this script did not start and which runs without its slurm.conf ($CONF)"
      if [ "$daemon" != slurmdbd ] && conf_changed; then
        refuse "to restart $daemon for the changed $CONF: pid $pid in $(pidfile_of "$daemon") was not started by this script"
      fi
    fi
  done
  ours "$CONF" && return 0
  for daemon in slurmdbd slurmctld slurmd; do  # ones whose pid files are elsewhere
    while read -r pid; do
      owned "$daemon" "$pid" \
        || refuse "to start next to $daemon pid $pid, which this script did not start and which runs without its slurm.conf ($CONF)"
    done < <(pgrep -x "$daemon" 2>/dev/null || true)
  done
}

CHANGED=0
write_configs() {  # sets CHANGED=1 when slurm.conf changed
  mkdir -p "$ETC" /var/log/slurm /var/spool/sweeper-slurmctld /var/spool/sweeper-slurmd
  chown slurm:slurm /var/log/slurm /var/spool/sweeper-slurmctld
  local f
  for f in "$CONF" "$DBD_CONF"; do
    if [ -e "$f" ] && ! ours "$f"; then
      forced || refuse "to touch $f: it was not written by this script (no '$MARK' line)"
      log "SWEEPER_TEST_CLUSTER_FORCE=1: keeping your $f as $f.bak before writing the test cluster's"
      mv "$f" "$f.bak"
    fi
  done
  if ! { [ -f "$DBD_CONF" ] && cmp -s "$DBD_CONF" <(dbd_conf); }; then
    dbd_conf > "$DBD_CONF"
  fi
  chown slurm:slurm "$DBD_CONF"
  chmod 600 "$DBD_CONF"
  conf_changed || return 0
  local new
  new=$(mktemp "$ETC/.slurm.conf.XXXXXX")
  slurm_conf > "$new"
  chmod 644 "$new"
  mv "$new" "$CONF"
  CHANGED=1
}

# --- daemons ------------------------------------------------------------------------------------

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
  mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge "$(dirname "$MUNGE_PID")"
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key /var/log/munge /var/lib/munge /run/munge "$(dirname "$MUNGE_PID")"
  chmod 400 /etc/munge/munge.key
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  log "starting munged"
  munged --force --pid-file="$MUNGE_PID"
  wait_for 10 munged bash -c 'munge -n </dev/null | unmunge'
  record munged
}

start_mariadb() {
  mkdir -p /run/mysqld "$(dirname "$MYSQL_PID")"
  chown mysql:mysql /run/mysqld "$(dirname "$MYSQL_PID")"
  if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting MariaDB"
    (mysqld_safe --user=mysql --pid-file="$MYSQL_PID" >/dev/null 2>&1 &)
    wait_for 60 MariaDB mysqladmin ping
    record mysqld
  fi
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

node_up() { sinfo -h -n "$NODE" -o %T | grep -Eq 'idle|mixed|alloc'; }

start_slurm() {
  local changed=$1
  if ! daemon_pid slurmdbd >/dev/null; then
    log "starting slurmdbd"
    slurmdbd
    record slurmdbd
  fi
  wait_for 60 slurmdbd sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if daemon_pid slurmctld >/dev/null && [ "$changed" = 1 ]; then
    # Some settings (MaxArraySize, the node's CPUs) only take effect on a restart; jobs survive it.
    log "config changed: restarting slurmctld and slurmd"
    stop_daemon slurmctld
    stop_daemon slurmd
  fi
  if ! daemon_pid slurmctld >/dev/null; then
    log "starting slurmctld"
    slurmctld
    record slurmctld
  fi
  wait_for 60 slurmctld scontrol ping
  if ! daemon_pid slurmd >/dev/null; then
    log "starting slurmd"
    slurmd
    record slurmd
  fi
  wait_for 60 "the node" node_up || true
  if ! node_up; then
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 30 "the node" node_up
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
  local daemon pid any=0
  for daemon in slurmd slurmctld slurmdbd mysqld munged; do
    if recorded "$daemon"; then any=1; fi
  done
  [ "$any" = 1 ] || { log "nothing to stop (this script started no daemon)"; return 0; }
  # Refuse before stopping anything: a recorded daemon whose pid file now names another one.
  for daemon in slurmd slurmctld slurmdbd mysqld munged; do
    if ! recorded "$daemon" || ! pid=$(daemon_pid "$daemon"); then continue; fi
    forced || owned "$daemon" "$pid" \
      || refuse "to stop $daemon: pid $pid in $(pidfile_of "$daemon") was not started by this script"
  done
  [ "$(id -u)" = 0 ] || die "must run as root (it stops daemons)"
  for daemon in slurmd slurmctld slurmdbd mysqld munged; do
    if recorded "$daemon"; then stop_daemon "$daemon"; fi
  done
  rm -f "$STATE/pids" "$STATE/started"
}

case ${1:-} in
  start)
    preflight_start
    [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
    install_packages
    start_munge
    start_mariadb
    write_configs
    start_slurm "$CHANGED"
    status
    ;;
  status)
    [ "$(id -u)" = 0 ] || die "must run as root"
    status
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
