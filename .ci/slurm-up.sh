#!/usr/bin/env bash
# Start a real one-node Slurm cluster on this machine (Debian's slurm-wlm 22.05 and munge), for
# tests/test_slurm.py. Needs root. Idempotent: rerunning restarts the daemons with a fresh config.
#
#   - one node: this host (NodeAddr 127.0.0.1) with this machine's CPUs (nproc) and most of its memory
#   - one partition, `ci` (the default partition)
#   - no cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none (works in containers)
#   - no accounting database: AccountingStorageType=accounting_storage/none, so `sacct` does not
#     work; finished jobs stay visible to `squeue`/`scontrol show job` for MinJobAge (1 h), which
#     is what the executor plugin's `status-command: squeue` needs, and every finished job is
#     appended to the job completion log /var/log/slurm/jobcomp.log (JobCompType=jobcomp/filetxt)
#   - GPUs: the node advertises $PASM_SLURM_FAKE_GPUS (default 2) `gpu` GRES whose "device files"
#     are empty regular files (/var/lib/pasm-fake-gpus/gpuN; slurmd counts a gpu GRES only with
#     a File=, and without cgroups nothing opens them), so jobs asking for --gpus=N are scheduled,
#     counted and run as on a GPU cluster, but there is no device (the CI workflow runs with
#     device: cpu). PASM_SLURM_FAKE_GPUS=0: no GPUs.
#
# Logs: /var/log/slurm/{slurmctld,slurmd}.log. Stop: .ci/slurm-up.sh stop
set -euo pipefail

CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
FAKE_GPUS=${PASM_SLURM_FAKE_GPUS:-2}
HOST=$(hostname -s)

log() { echo "slurm-up: $*" >&2; }

daemon_pid() {  # daemon_pid slurmctld|slurmd: its pid, if its pid file names a live process of that name
    local pid
    pid=$(cat "/run/$1.pid" 2>/dev/null) && [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] \
        && echo "$pid"
}

daemon_alive() { daemon_pid "$1" >/dev/null; }

stop_daemons() {  # only the daemons this script started (a stale pid file may name another process)
    local d pid
    for d in slurmd slurmctld; do
        if pid=$(daemon_pid $d) && kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
        rm -f "/run/$d.pid"
    done
}

if [[ ${1:-} == stop ]]; then
    stop_daemons
    exit 0
fi

[[ $(id -u) == 0 ]] || { log "must run as root"; exit 1; }

# 1. Packages (Debian's registry). `apt-get update` only when the lists do not know slurmd yet.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sinfo >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show slurmd >/dev/null 2>&1; then
        apt-get update -qq
    fi
    log "installing slurmctld slurmd slurm-client munge"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
fi
log "$(sinfo --version)"

# 2. munge: a key, and the daemon running as the munge user.
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile /etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
fi
munge -n </dev/null | unmunge >/dev/null || { log "munge does not work"; exit 1; }

# 3. slurm.conf for this one node.
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # leave 10% to the OS
GRES_NODE=""
GRES_TYPES=""
if [[ $FAKE_GPUS -gt 0 ]]; then
    GRES_NODE="Gres=gpu:$FAKE_GPUS"
    GRES_TYPES="GresTypes=gpu"
fi
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by .ci/slurm-up.sh: a one-node test cluster, not a production configuration.
ClusterName=pasm-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
MaxJobCount=10000
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB $GRES_NODE State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if [[ $FAKE_GPUS -gt 0 ]]; then
    mkdir -p /var/lib/pasm-fake-gpus
    for ((g = 0; g < FAKE_GPUS; g++)); do touch "/var/lib/pasm-fake-gpus/gpu$g"; done
    echo "NodeName=$HOST Name=gpu File=/var/lib/pasm-fake-gpus/gpu[0-$((FAKE_GPUS - 1))]" >"$CONF_DIR/gres.conf"
else
    rm -f "$CONF_DIR/gres.conf"
fi
log "node $HOST: CPUs=$CPUS RealMemory=$MEM_MB ${GRES_NODE:-no GPUs}"

# 4. Daemons (a fresh start each time: -c clears the controller's saved state).
stop_daemons
/usr/sbin/slurmctld -c
/usr/sbin/slurmd
sleep 1

# 5. Wait until the node is idle (and stop early when a daemon has died).
for i in $(seq 60); do
    for d in slurmctld slurmd; do
        if (( i > 5 )) && ! daemon_alive $d; then
            log "$d is not running; its log:"
            tail -n 20 "$LOG_DIR/$d.log" >&2
            exit 1
        fi
    done
    state=$(timeout 10 sinfo -h -N -n "$HOST" -o %T 2>/dev/null || true)
    if [[ $state == idle ]]; then
        sinfo
        exit 0
    fi
    if [[ $state == drain* || $state == down* ]] && (( i % 10 == 0 )); then
        scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
    fi
    sleep 1
done
log "node $HOST is not idle after 60 s (state: ${state:-none}); sinfo -R and the logs:"
sinfo -R || true
tail -n 30 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" || true
exit 1
