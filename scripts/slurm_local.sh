#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for testing the job scripts in jobs/.
#
#   bash scripts/slurm_local.sh start DIR   # install (Debian) if missing, configure in DIR, start munged,
#                                           # slurmctld, slurmd; prints "export SLURM_CONF=DIR/slurm.conf"
#   bash scripts/slurm_local.sh stop DIR    # stop the daemons started from DIR (and their slurmstepd),
#                                           # SIGKILL after 10 s; exits 1 if any is left
#
# Exits 1 with a reason on stderr when Slurm cannot be installed or started
# (the tests then skip and say why).
set -u
cmd=${1:?start or stop}; dir=${2:?state directory}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
# The daemons of the cluster in DIR, whatever the pid files say: slurmctld, slurmd, slurmstepd
# and munged carrying SLURM_CONF=DIR/slurm.conf in their environment (start exports it before
# starting them), so another cluster's daemons, or a pid reused since, are left alone.
ours() {
    local p comm
    for p in /proc/[0-9]*; do
        read -r comm 2>/dev/null <"$p/comm" || continue
        case $comm in slurmctld|slurmd|slurmstepd|munged) ;; *) continue ;; esac
        tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "SLURM_CONF=$dir/slurm.conf" && echo "${p#/proc/}"
    done
}
if [ "$cmd" = stop ]; then
    export SLURM_CONF=$dir/slurm.conf
    if [ -n "$(ours)" ]; then
        timeout 10 scancel --user="$(id -un)" 2>/dev/null
        for _ in $(seq 20); do  # up to 10 s for slurmd to end the steps: slurmstepd ignores SIGTERM
            [ -z "$(timeout 5 squeue -h -t PD,R,CG,S 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    seen=""
    for i in $(seq 30); do  # SIGTERM, up to 10 s for a clean shutdown, then SIGKILL and up to 5 s more
        pids=$(ours)
        if [ -z "$pids" ]; then  # and up to 5 s for init to reap them (pgrep lists zombies too)
            for _ in $(seq 10); do
                left=""; for p in $seen; do [ -e "/proc/$p" ] && left=1; done
                [ -z "$left" ] && break
                sleep 0.5
            done
            exit 0
        fi
        seen="$seen $pids"
        case $i in 1) kill $pids 2>/dev/null ;; 21) kill -9 $pids 2>/dev/null ;; esac
        sleep 0.5
    done
    echo "still running after SIGKILL: $(ps -o pid=,args= -p "$(echo $pids | tr ' ' ,)")" >&2
    exit 1
fi
need() { command -v "$1" >/dev/null 2>&1; }
if ! need slurmctld || ! need slurmd || ! need sbatch || ! need munged; then
    if need apt-get && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >"$dir/apt.log" 2>&1 \
            || { echo "apt-get install slurm failed (see $dir/apt.log)" >&2; exit 1; }
    else
        echo "Slurm is not installed and cannot be (needs root and apt-get)" >&2; exit 1
    fi
fi
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log" "$dir/munge"
cat >"$dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
JobCompType=jobcomp/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF=$dir/slurm.conf
key=/etc/munge/munge.key
[ -f "$key" ] || { echo "no munge key at $key" >&2; exit 1; }
munged --force --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" >/dev/null 2>&1 \
    || { echo "munged did not start (see $dir/log/munged.log)" >&2; exit 1; }
slurmctld || { echo "slurmctld did not start (see $dir/log/slurmctld.log)" >&2; exit 1; }
slurmd || { echo "slurmd did not start (see $dir/log/slurmd.log)" >&2; exit 1; }
for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -q -E '^(idle|mix|alloc)'; then
        echo "export SLURM_CONF=$dir/slurm.conf"
        exit 0
    fi
    sleep 1
done
echo "the node did not become idle in 60 s: $(sinfo 2>&1 | tail -2)" >&2
exit 1
