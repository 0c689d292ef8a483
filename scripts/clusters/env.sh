# env.sh - client environment for the clusters started by up-all.sh.
# Usage: source scripts/clusters/env.sh   (bash/sh; sets variables only)
# Slurm needs nothing. The Torque wrappers' directory is deliberately NOT put
# on PATH: their qsub/qstat would shadow Grid Engine's /usr/bin/qsub/qstat.
# Tests that want the Torque flavour prepend "$JOBBRIDGE_TORQUE_BIN" to PATH.

# Grid Engine (CLI and DRMAA)
export SGE_ROOT=/var/lib/gridengine
export SGE_CELL=default
export DRMAA_LIBRARY_PATH=/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0
# libdrmaa pulls in libjemalloc, which needs static TLS: without this a
# pyenv/venv python fails "libjemalloc.so.2: cannot allocate memory in static TLS block"
export GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384

# Open MPI as root, more ranks than cores
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# Slurm's Torque/PBS wrappers (private prefix of torque-wrappers-up.sh)
export JOBBRIDGE_TORQUE_BIN=${TORQUE_WRAPPERS_PREFIX:-/opt/jobbridge-torque}/bin

# OpenPBS (openpbs-up.sh). Its daemons live in a private network namespace, so
# every PBS command runs through a prefix: as root `ip netns exec jbpbs`, as
# the ordinary user $JOBBRIDGE_PBS_USER through its one sudo rule. Full paths:
# /usr/bin/qstat is Grid Engine's. Job ids look like 12.pbshost.
export JOBBRIDGE_PBS_BIN=/opt/pbs/bin
export JOBBRIDGE_PBS_USER=${OPENPBS_CI_USER:-pbsuser}
export JOBBRIDGE_PBS_HOST_COMMAND="ip netns exec ${OPENPBS_CI_NETNS:-jbpbs}"
export JOBBRIDGE_PBS_USER_HOST_COMMAND="sudo -n /usr/sbin/ip netns exec ${OPENPBS_CI_NETNS:-jbpbs} /usr/sbin/runuser -u $JOBBRIDGE_PBS_USER --"
# The SSH "cluster" of the remote-resource tests (sshd-up.sh; defaults shown):
# its login node's port, its jump host's port, its account, and the folder of
# the laptop's keys and ssh_config ($SSH_CI_STATE/client)
export SSH_CI_PORT=${SSH_CI_PORT:-2222}
export SSH_CI_JUMP_PORT=${SSH_CI_JUMP_PORT:-2223}
export SSH_CI_USER=${SSH_CI_USER:-jbcluster}
export SSH_CI_STATE=${SSH_CI_STATE:-/var/tmp/jobbridge-ssh}
