#!/usr/bin/env bash
# Bring up a one-node Slurm cluster on this machine (Debian's slurm-wlm and munge; no systemd):
# writes /etc/slurm/slurm.conf for a node called localhost and starts munged, slurmctld and
# slurmd. Needs root. ci/slurm-down.sh stops them again. Settings that matter for Snakemake's
# SLURM executor plugin (snakemake-executor-plugin-slurm):
#   - no slurmdbd, so `sacct` has nothing to ask: run snakemake with
#     `--slurm-status-command squeue`;
#   - MinJobAge=300: the plugin keeps using squeue only if MinJobAge >= 3 x
#     --slurm-init-seconds-before-status-checks (finished jobs must stay visible to squeue);
#   - DefMemPerCPU: a job that asks for no memory would otherwise take the whole node.
set -euo pipefail

SLURM_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
STATE=${SIMBIAS_SLURM_STATE:-/var/tmp/simbias-slurm}   # pid files, logs, spool

if [[ $(id -u) -ne 0 ]]; then
  echo "slurm-up: needs root (apt-get and the daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$STATE"/{spool/ctld,spool/d,log} /run/munge /var/log/munge /var/lib/munge "$(dirname "$SLURM_CONF")"
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

# the node as slurmd sees it (CPUs, sockets, cores, memory), named localhost
hw=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //')
mem=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$hw")
cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$hw")
real=$((mem * 9 / 10))                      # leave some memory to the daemons
hw=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$real/" <<<"$hw")
defmem=$((real / cpus))

cat >"$SLURM_CONF" <<CONF
# one-node cluster for CI, written by ci/slurm-up.sh
ClusterName=simbias
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
DefMemPerCPU=$defmem
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=localhost $hw State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

running() { [[ -s $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# munged runs as the munge user; slurm-down stops it only if we started it here
if running /run/munge/munged.pid; then
  echo "slurm-up: munged already running"
else
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi
munge -n | unmunge >/dev/null

running "$STATE/slurmctld.pid" || slurmctld -f "$SLURM_CONF"   # daemonizes, writes its pid file
running "$STATE/slurmd.pid" || slurmd -f "$SLURM_CONF" -N localhost

for _ in $(seq 1 60); do
  if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    sinfo
    exit 0
  fi
  sleep 0.5
done
echo "slurm-up: the node did not come up; logs in $STATE/log" >&2
tail -n 20 "$STATE"/log/*.log >&2 || true
exit 1
