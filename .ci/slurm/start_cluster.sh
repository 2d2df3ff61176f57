#!/usr/bin/env bash
# A real one-node SLURM cluster on 127.0.0.1 for CI: Debian's slurmctld/slurmd/slurm-client
# (22.05) + munge, no slurmdbd, one fake GPU GRES (gres.conf File=/dev/null, so --gpus=1 jobs
# run and get CUDA_VISIBLE_DEVICES=0).
#
#   .ci/slurm/start_cluster.sh [STATE_DIR]      # default /tmp/physweep-slurm
#   export SLURM_CONF=STATE_DIR/etc/slurm.conf  # what clients (sbatch, squeue, snakemake) need
#   .ci/slurm/stop_cluster.sh  [STATE_DIR]
#
# Needs root (installs packages, starts daemons as root). There is no systemd: munged, slurmctld
# and slurmd run in the foreground (-F / -D) in the background of this script; their PIDs are
# written to STATE_DIR/pids/ and stop_cluster.sh ends exactly those. Every wait is bounded.
# Exit status: 0 cluster up (node idle); 3 cannot run here (not root, no apt-get, install
# failed); 1 the cluster did not come up (logs in STATE_DIR/log/ are printed).
# Env: SLURM_CI_GPUS (fake GPUs on the node, default 1), SLURM_CI_WAIT_S (default 60),
#      SLURM_CI_NO_INSTALL=1 (fail with 3 instead of installing missing packages).
set -euo pipefail

STATE=${1:-/tmp/physweep-slurm}
GPUS=${SLURM_CI_GPUS:-1}
WAIT_S=${SLURM_CI_WAIT_S:-60}
t_start=$(date +%s.%N)

say() { echo "start_cluster: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    say "needs root (installs packages and runs the SLURM daemons)"; exit 3
fi
if [[ -s $STATE/pids/slurmctld ]] && kill -0 "$(cat "$STATE/pids/slurmctld")" 2>/dev/null; then
    say "a cluster of $STATE is already running: stop it first (stop_cluster.sh $STATE)"; exit 1
fi

# --- packages ---------------------------------------------------------------------------------
missing=()
for bin in munged slurmctld slurmd sbatch squeue scontrol; do
    command -v "$bin" >/dev/null || missing+=("$bin")
done
if ((${#missing[@]})); then
    if [[ ${SLURM_CI_NO_INSTALL:-0} == 1 ]] || ! command -v apt-get >/dev/null; then
        say "missing ${missing[*]} and apt-get is unavailable (or SLURM_CI_NO_INSTALL=1)"; exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(slurmctld slurmd slurm-client munge)
    if ! timeout 300 apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1
    then
        timeout 300 apt-get update -qq >/dev/null 2>&1 || true
        if ! timeout 300 apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; then
            say "apt-get install ${pkgs[*]} failed"; exit 3
        fi
    fi
fi
t_installed=$(date +%s.%N)

# --- state directory: a clean controller state every time -------------------------------------
rm -rf "$STATE"
mkdir -p "$STATE"/{etc,log,pids,ctld,spool}
chmod 755 "$STATE"
HOST=$(hostname -s)
# the node's hardware, as slurmd sees it; RealMemory a little below the real memory
read -r CPUS SOCKETS CORES THREADS MEM < <(slurmd -C | awk '/^NodeName/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["CPUs"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }')
MEM=$((MEM * 95 / 100))

cat > "$STATE/etc/slurm.conf" <<EOF
# one-node CI cluster written by .ci/slurm/start_cluster.sh
ClusterName=physweepci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/pids/slurmctld.pidfile
SlurmdPidFile=$STATE/pids/slurmd.pidfile
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
KillWait=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
: > "$STATE/etc/gres.conf"
# File= lines (not a bare Count=): a count-only gres line leaves the node drained in 22.05
fake_devices=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty)
for ((i = 0; i < GPUS; i++)); do
    echo "NodeName=$HOST Name=gpu File=${fake_devices[$i]}" >> "$STATE/etc/gres.conf"
done
export SLURM_CONF=$STATE/etc/slurm.conf
# Job steps (srun inside a job, as snakemake's slurm-jobstep runs it) do not get SLURM_CONF:
# point the default location at this cluster's files (symlinks; stop_cluster.sh removes them).
# An /etc/slurm/slurm.conf of some other cluster is never replaced.
mkdir -p /etc/slurm
for f in slurm.conf gres.conf; do
    if [[ -e /etc/slurm/$f && ! -L /etc/slurm/$f ]]; then
        say "/etc/slurm/$f exists and is not a link of this script: not touching it"; exit 3
    fi
    ln -sfn "$STATE/etc/$f" "/etc/slurm/$f"
done

# --- daemons ----------------------------------------------------------------------------------
# munged runs as the munge user, which may not traverse STATE (pytest's tmp dirs are 0700)
MUNGE_DIR=/run/munge/physweep
mkdir -p "$MUNGE_DIR"
chown munge:munge /run/munge "$MUNGE_DIR"
chmod 755 /run/munge "$MUNGE_DIR"
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
start() {  # start NAME CMD...: run in the foreground of a background subshell, record the PID
    local name=$1; shift
    setsid "$@" > "$STATE/log/$name.out" 2>&1 < /dev/null &
    echo $! > "$STATE/pids/$name"
}
wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD until it succeeds, bounded
    local limit=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then
            say "timed out after ${limit}s waiting for $what"
            for f in "$STATE"/log/*; do echo "=== $f" >&2; tail -n 30 "$f" >&2; done
            "$(dirname "$0")/stop_cluster.sh" "$STATE" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}
start munged runuser -u munge -- munged -F --socket=/run/munge/munge.socket.2 \
    --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed"
wait_for 20 munged sh -c 'munge -n | unmunge'
start slurmctld slurmctld -D -f "$SLURM_CONF"
wait_for "$WAIT_S" slurmctld scontrol ping
start slurmd slurmd -D -f "$SLURM_CONF"
node_idle() { sinfo -h -N -n "$HOST" -o '%T' | grep -qx idle; }
wait_for "$WAIT_S" "node $HOST to be idle" node_idle
t_up=$(date +%s.%N)
awk -v a="$t_start" -v b="$t_installed" -v c="$t_up" 'BEGIN {
    printf "start_cluster: install/check %.1f s, daemons up and node idle %.1f s\n", b - a, c - b }' >&2
echo "SLURM_CONF=$SLURM_CONF"
