#!/usr/bin/env bash
# Builds the wheel folder that scripts/gpu_check.sh installs from on a machine without network.
#
#   scripts/make_gpu_wheels.sh [DIR]      (default DIR: .whl, which .gitignore ignores)
#
# Run it here (with network), then take DIR to the GPU machine beside the working tree. It holds
# what such a machine (its own Python and torch) lacks to run the plugin: a pure-Python wheel of
# basicsr 1.4.2 (PyPI ships only its sdist; without BASICSR_EXT its setup builds no extension)
# and lmdb's binary wheel for the target Python. basicsr's other requirements (addict, future,
# yapf, tb-nightly) are not imported when it runs; the GPU check's set-up step verifies that by
# importing what the plugin uses. The plugin itself is not packed: the check runs the working
# tree's copy. Target Python: $GPU_PYTHON_VERSION (default 3.12), x86-64 manylinux.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
pyver=${GPU_PYTHON_VERSION:-3.12}
py=${PYTHON:-python3}
mkdir -p "$dir"
rm -f "$dir"/basicsr-*.whl "$dir"/lmdb-*.whl  # one version of each: two would stop the install
# Built with this environment's setuptools (no isolated build env to download).
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dir" 'basicsr==1.4.2'
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" 'lmdb>=1.0'
ls -l "$dir"/*.whl
echo "wheel folder $dir: $(du -sk "$dir" | cut -f1) KiB (for Python $pyver x86-64)"
