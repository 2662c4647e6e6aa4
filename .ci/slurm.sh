# Sourced by .ci/run: make sure a one-node Slurm cluster runs on loopback for tests/slurm and export
# ARCTUI_TEST_SLURM=1. Installs Debian's slurm-wlm and munge when the machine lacks them. The node
# runs in a container: proctrack/linuxproc and task/none need no cgroups; no accounting database
# (a jobcomp file records ended jobs). Re-sourcing leaves a running cluster alone.
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
fi
SLURM_ROOT=${ARCTUI_SLURM_DIR:-/tmp/arctui-ci-slurm}
SLURM_NODE=$(hostname -s)
if ! scontrol ping 2>/dev/null | grep -q "is UP" || ! sinfo -h -o %T 2>/dev/null | grep -Eq "idle|mix|alloc"; then
    mkdir -p "$SLURM_ROOT"/{ctld,slurmd,log} /etc/slurm /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || su munge -s /bin/sh -c "/usr/sbin/munged" 2>/dev/null || /usr/sbin/munged --force
    # More CPUs than the machine has (config_overrides): several small test jobs run side by side.
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=arctui-ci
SlurmctldHost=$SLURM_NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=cred_expire=20
StateSaveLocation=$SLURM_ROOT/ctld
SlurmdSpoolDir=$SLURM_ROOT/slurmd
SlurmctldPidFile=$SLURM_ROOT/slurmctld.pid
SlurmdPidFile=$SLURM_ROOT/slurmd.pid
SlurmctldLogFile=$SLURM_ROOT/log/slurmctld.log
SlurmdLogFile=$SLURM_ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_ROOT/log/jobcomp.log
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MinJobAge=600
InactiveLimit=0
NodeName=$SLURM_NODE NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    cp /etc/slurm/slurm.conf "$SLURM_ROOT/slurm.conf"
    pgrep -x slurmctld >/dev/null || slurmctld -c -i
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        sinfo -h -o %T 2>/dev/null | grep -Eq "idle|mix|alloc" && break
        scontrol update nodename="$SLURM_NODE" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
fi
sinfo -h -o %T | grep -Eq "idle|mix|alloc" || { echo "Slurm did not come up; see $SLURM_ROOT/log" >&2; return 1; }
export ARCTUI_TEST_SLURM=1
echo "Slurm for tests: node $SLURM_NODE, partition debug ($SLURM_ROOT)"
