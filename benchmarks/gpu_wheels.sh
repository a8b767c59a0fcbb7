#!/usr/bin/env bash
# The wheels a lent GPU machine lacks (it reaches no package index; its Python 3.12 holds
# torch, numpy, scipy, scikit-learn, matplotlib, pillow, click, tqdm, fsspec, h5py, psutil,
# pyyaml, jinja2, msgpack, cloudpickle, networkx, imageio...), into .gpu-wheels/ (ignored by
# git; carry it: run(carry=[".gpu-wheels"])). There: pip install --no-index
# --find-links .gpu-wheels --no-deps .gpu-wheels/*.whl && pip install --no-deps -e .
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-wheels
rm -rf "$out" && mkdir -p "$out"
pip wheel -q --no-deps -w "$out" PyOpenGL==3.1.0   # pyrender's pin: an sdist, built here
pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$out" \
  "zarr>=3" numcodecs donfig google-crc32c typing-extensions \
  pyrender==0.1.45 "trimesh>=4" pyglet==1.5.31 freetype-py \
  dask distributed partd locket toolz tblib zict sortedcontainers tornado
du -sh "$out"
