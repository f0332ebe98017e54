#!/usr/bin/env bash
# One-command GPU check (issue 11, item 4): the test suite with CUDA, 200 iterations of the paper
# recipe under torchrun with a kill and a resume, and basicsr benchmark's cost table, all logged to
# one results folder with a summary naming the GPU. Under 8 minutes on one GPU.
#
#   scripts/make_gpu_wheels.sh .whl                              # here, with network (once)
#   scripts/gpu_check.sh [--wheels .whl] [--out DIR] [--quick]   # there, no network needed
#
# Uses the python3 it finds ($PYTHON to choose another) and its torch; installs only what that
# Python lacks, from the wheel folder, into a virtual environment of its own under the work
# folder. Results go to $OUT when set, else to --out (default results/gpu_check). --quick: tiny
# sizes and few iterations, on the CPU when there is no GPU (tests/test_gpu_check.py runs it).
# Exit status 0 when every step passed. See scripts/gpu_check.py --help.
set -u
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
