#!/usr/bin/env bash
# Intel MPI's runtime (PyPI impi-rt, CUDA offload with I_MPI_OFFLOAD=1), trimmed to what mpi4py runs on:
#
#   bash scripts/impi_trim.sh [DEST]        # default .impi (git-ignored); about 25 MB
#
# The wheel is 129 MB (310 MB unpacked: benchmarks, Fortran, tuning files for every CPU); this keeps
# libmpi.so.12 (the MPICH ABI that mpi4py's "mpich" variant loads), libfabric and its shm provider,
# Hydra's mpiexec and proxies, the GPU collective kernels and the generic tuning files, so that
# scripts/gpu_check.sh can carry it to the GPU box (the device tool carries 64 MiB at most).
set -eu
cd "$(dirname "$0")/.."
dest=${1:-.impi}
version=2021.18.1  # 2021.19 needs a libfabric wheel this index lacks
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m pip download -q --no-deps "impi-rt==$version" -d "$tmp"
python - "$tmp"/impi_rt-*.whl "$dest" <<'PY'
import os, stat, sys, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
prefix = "impi_rt-2021.18.1.data/data/"
keep = ("lib/libmpi.so.12", "lib/libfabric.so.1", "lib/libshm-fi.so", "lib/libmpi_shm_heap_proxy.so",
        "bin/mpiexec.hydra", "bin/hydra_pmi_proxy", "bin/hydra_bstrap_proxy", "opt/mpi/etc/coll.fatbin",
        "opt/mpi/etc/collectives.conf", "opt/mpi/etc/pt2pt.conf", "opt/mpi/etc/tuning_generic_shm.dat")
with zipfile.ZipFile(wheel) as z:
    for name in keep:
        out = os.path.join(dest, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(prefix + name) as src, open(out, "wb") as dst:
            dst.write(src.read())
        if name.startswith("bin/"):
            os.chmod(out, os.stat(out).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
du -sh "$dest"
