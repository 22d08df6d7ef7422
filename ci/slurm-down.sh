#!/usr/bin/env bash
# Stop what ci/slurm-up.sh started, by the PIDs in their pid files: slurmd, slurmctld, munged.
set -uo pipefail
STATE=${SIMBIAS_SLURM_STATE:-/var/tmp/simbias-slurm}

stop() {  # stop NAME PIDFILE
  local name=$1 pidfile=$2 pid
  [[ -s $pidfile ]] || { echo "slurm-down: $name: no pid file $pidfile"; return 0; }
  pid=$(<"$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "slurm-down: stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
stop munged "$STATE/munged.pid"   # only when slurm-up started it
