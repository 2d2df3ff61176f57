#!/usr/bin/env bash
# Stop the daemons started by start_cluster.sh, by the PIDs it recorded (never by name):
# cancel what is still queued, SIGTERM, wait up to 15 s, then SIGKILL.
#   .ci/slurm/stop_cluster.sh [STATE_DIR]      # default /tmp/physweep-slurm
set -uo pipefail

STATE=${1:-/tmp/physweep-slurm}
PIDS=$STATE/pids
[[ -d $PIDS ]] || exit 0
export SLURM_CONF=$STATE/etc/slurm.conf
if [[ -s $PIDS/slurmctld ]] && kill -0 "$(cat "$PIDS/slurmctld")" 2>/dev/null; then
    timeout 10 scancel --full --quiet --user=root >/dev/null 2>&1 || true
fi
for name in slurmd slurmctld munged; do
    f=$PIDS/$name
    [[ -s $f ]] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop_cluster: $name ($pid) ignored SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$f"
done
# job processes slurmd started (slurmstepd and its children) are in the daemons' sessions
# only while the daemons live; any left over belong to recorded job steps: end them by PID
for pidfile in "$STATE"/spool/*.pid; do
    [[ -e $pidfile ]] || continue
    pid=$(cat "$pidfile" 2>/dev/null) && kill -KILL "$pid" 2>/dev/null
done
# the /etc/slurm links start_cluster.sh made to this cluster's files
for f in slurm.conf gres.conf; do
    link=/etc/slurm/$f
    [[ -L $link && $(readlink "$link") == "$STATE/etc/$f" ]] && rm -f "$link"
done
exit 0
