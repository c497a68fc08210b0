#!/bin/sh
# How both images build gpufleet's environment (their build stages run this from /src):
#   venv.sh deps     pip and setuptools from requirements/build.txt into /opt/build, and
#                    exactly requirements/runtime.txt (hashes checked, wheels only) into
#                    /opt/gpufleet, a venv that never gets an installer of its own;
#   venv.sh package  gpufleet's wheel from the source, without dependencies of its own
#                    choosing, into /opt/gpufleet, and its bytecode compiled.
# PIP_CERT names a CA bundle for pip only where the build machine needs its own.
set -eu
[ -n "${PIP_CERT:-}" ] || unset PIP_CERT
case "${1:-}" in
  deps)
    python3 -m venv /opt/build
    /opt/build/bin/pip install --quiet --require-hashes -r /src/requirements/build.txt
    python3 -m venv --without-pip /opt/gpufleet
    /opt/build/bin/pip --python /opt/gpufleet/bin/python install --quiet \
      --require-hashes --only-binary :all: -r /src/requirements/runtime.txt
    ;;
  package)
    /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation -w /src/dist /src
    /opt/build/bin/pip --python /opt/gpufleet/bin/python install --quiet --no-deps \
      /src/dist/gpufleet-*.whl
    /opt/gpufleet/bin/python -m compileall -q /opt/gpufleet
    ;;
  *)
    echo "usage: venv.sh deps|package" >&2
    exit 2
    ;;
esac
