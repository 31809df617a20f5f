#!/usr/bin/env bash
# Stop the CI cluster that up.sh started: slurmctld, slurmd, munged. Safe to run
# repeatedly and when nothing is running. Stops each daemon through its pid file.
set -uo pipefail

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, wait up to 10 s, then KILL
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-down: $name ($pid) ignored TERM; killing" >&2
            kill -9 "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

if [[ -s /run/slurmctld.pid ]] && kill -0 "$(cat /run/slurmctld.pid)" 2>/dev/null; then
    # Orderly: the controller saves its state and tells slurmd to exit.
    timeout 10 scontrol shutdown > /dev/null 2>&1 || true
fi
stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid
echo "slurm-down: stopped"
