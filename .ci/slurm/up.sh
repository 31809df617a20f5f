#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine for CI: munge, slurmctld and
# slurmd started by hand (no systemd), the node described by `slurmd -C`, one
# partition `debug`, no accounting. Run as root. Safe to run repeatedly: when the
# controller already answers with the node idle it does nothing.
#
#   .ci/slurm/up.sh      # then: sinfo, sbatch, snakemake --executor slurm, ...
#   .ci/slurm/down.sh    # stop everything again
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
TIMEOUT=${SLURM_UP_TIMEOUT:-60}

started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
say() { echo "slurm-up: $*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm-up: must run as root (installs packages, starts daemons)" >&2
    exit 1
fi

node_state() { sinfo --noheader --format=%T 2>/dev/null | head -1; }
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Checked through pid files first: sinfo (and `munge -n`) retry for ~9 s when
# nothing answers.
if running /run/munge/munged.pid && running /run/slurmctld.pid && running /run/slurmd.pid \
        && [[ $(node_state) == idle ]]; then
    say "already up (node idle)"
    exit 0
fi

# --- packages -----------------------------------------------------------------
packages=(slurmctld slurmd slurm-client munge)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/slurm-apt.log 2>&1 \
        || { tail -30 /tmp/slurm-apt.log >&2; exit 1; }
fi

# --- munge --------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating munge key"
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running /run/munge/munged.pid; then
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do [[ -S /run/munge/munge.socket.2 ]] && break; sleep 0.1; done
fi
munge -n | unmunge > /dev/null || { echo "slurm-up: munge does not work" >&2; tail -20 /var/log/munge/munged.log >&2; exit 1; }

# --- slurm.conf ---------------------------------------------------------------
host=$(hostname -s)
node_line=$(slurmd -C | head -1)   # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
[[ $node_line == NodeName=* ]] || { echo "slurm-up: unexpected 'slurmd -C' output: $node_line" >&2; exit 1; }
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
new_conf=$(cat <<CONF
# Written by skysift .ci/slurm/up.sh: a one-node CI cluster, no accounting.
ClusterName=skysift-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that ask for no memory get this much per CPU instead of the whole node.
DefMemPerCPU=1000
EnforcePartLimits=ALL
# GresTypes: none (22.05 rejects an empty "GresTypes=" line; unset means no GRES).
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Short intervals: CI jobs are seconds long.
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
$node_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
if [[ ! -f $CONF || $(cat "$CONF") != "$new_conf" ]]; then
    printf '%s\n' "$new_conf" > "$CONF"
    say "wrote $CONF ($node_line)"
fi

# --- daemons ------------------------------------------------------------------
if ! running /run/slurmctld.pid; then
    slurmctld          # daemonises; keeps its state in $STATE_DIR
fi
if ! running /run/slurmd.pid; then
    slurmd
else
    scontrol reconfigure > /dev/null 2>&1 || true
fi
# The cluster belongs to CI: jobs that a killed earlier run left in the saved
# state (listed as running, holding the only node "allocated") are cancelled
# rather than waited for. Not `slurmctld -c`: it restarts job ids, which slurmd
# still holds as revoked credentials.
leftover=$(squeue --noheader --format=%i 2>/dev/null | tr '\n' ' ' || true)
if [[ -n ${leftover// /} ]]; then
    say "cancelling jobs left by an earlier run: $leftover"
    # shellcheck disable=SC2086
    scancel $leftover > /dev/null 2>&1 || true
fi

state=""
while (( $(elapsed) < TIMEOUT )); do
    state=$(node_state)
    [[ $state == idle ]] && break
    # A node left down/drained by an earlier run comes back once slurmd answers.
    if [[ $state == down* || $state == drain* ]]; then
        scontrol update NodeName="$host" State=RESUME > /dev/null 2>&1 || true
    fi
    sleep 1
done
if [[ $state != idle ]]; then
    {
        echo "slurm-up: node not idle after ${TIMEOUT} s (state: '${state:-no answer}')"
        echo "--- sinfo"; sinfo -N -l 2>&1 || true
        echo "--- $LOG_DIR/slurmctld.log (tail)"; tail -25 "$LOG_DIR/slurmctld.log" 2>&1 || true
        echo "--- $LOG_DIR/slurmd.log (tail)"; tail -25 "$LOG_DIR/slurmd.log" 2>&1 || true
    } >&2
    exit 1
fi
# The node may read "idle" from the controller's saved state before slurmd has
# registered: one real job step proves the whole chain (munge, ctld, slurmd).
if ! timeout 30 srun --quiet --ntasks=1 --time=1 true; then
    echo "slurm-up: node idle but a test job step failed" >&2
    tail -n 25 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    exit 1
fi
say "node $host idle, partition debug up ($(sinfo --noheader --format='%c CPUs, %m MB'))  in $(elapsed) s"
