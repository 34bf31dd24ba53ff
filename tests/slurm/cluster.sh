#!/usr/bin/env bash
# A real single-node Slurm for the tests: Debian's slurmctld/slurmd and munge, no systemd.
#   tests/slurm/cluster.sh start   install if needed, configure for this host, start, wait until idle
#   tests/slurm/cluster.sh stop    stop the daemons started here (by PID) and remove the test's slurm.conf
# State lives in $SLURM_TEST_DIR (default /tmp/saliency-audit-slurm). Needs root and apt.
set -euo pipefail

STATE=${SLURM_TEST_DIR:-/tmp/saliency-audit-slurm}
HOST=$(hostname -s)

die() { echo "cluster.sh: $*" >&2; exit 1; }

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v squeue >/dev/null && return
  [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root (apt-get install slurmctld slurmd slurm-client munge)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

configure() {
  getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts
  mkdir -p "$STATE"/{spool,slurmd,log} /run/munge /var/log/munge /var/lib/munge /etc/slurm
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(free -m | awk '/^Mem:/ {print $2}') * 8 / 10 ))
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=saliency-audit-test
SlurmctldHost=$HOST
SlurmUser=root
StateSaveLocation=$STATE/spool
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=3600
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  install
  configure
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n | unmunge >/dev/null || die "munged did not start"
  fi
  if ! sinfo -h >/dev/null 2>&1; then
    slurmctld -D >"$STATE/log/slurmctld.out" 2>&1 & echo $! > "$STATE/ctld.pid"
    slurmd -D >"$STATE/log/slurmd.out" 2>&1 & echo $! > "$STATE/d.pid"
  fi
  for _ in $(seq 120); do
    [ "$(sinfo -h -o %t 2>/dev/null | head -1)" = idle ] && { echo "slurm: node $HOST idle"; return; }
    sleep 0.5
  done
  tail -5 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
  die "the Slurm node did not become idle within 60 s (logs in $STATE/log)"
}

stop() {
  for pidfile in "$STATE/d.pid" "$STATE/ctld.pid"; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  # Left behind, the config points every Slurm client at the stopped controller: the Slurm executor
  # plugin runs `scontrol show config` when Snakemake starts, and each start would wait 9 s for it.
  if grep -q '^ClusterName=saliency-audit-test$' /etc/slurm/slurm.conf 2>/dev/null; then
    rm -f /etc/slurm/slurm.conf
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
