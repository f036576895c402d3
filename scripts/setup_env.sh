#!/usr/bin/env bash
# Create/refresh .venv and build the stt_ros package (messages + Python package) into it.
# Idempotent: each step records a hash of its inputs under .venv/.stamps and is skipped when
# nothing changed. Prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
V=$ROOT/.venv
STAMPS=$V/.stamps
PY=${PYTHON:-python3.11}
t0=$(date +%s)
did=()

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# 1. the virtual environment
if [ ! -x "$V/bin/python" ]; then
  command -v "$PY" >/dev/null || { echo "setup: $PY not found; install Python 3.11 (or set PYTHON=...)" >&2; exit 1; }
  "$PY" -m venv "$V"
  did+=("created .venv with $($V/bin/python --version)")
fi
mkdir -p "$STAMPS"

# 2. pinned dependencies
req_hash=$(hash_of requirements.txt)
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$req_hash" ]; then
  "$V/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$req_hash" > "$STAMPS/requirements"
  rm -f "$STAMPS/build"   # new message packages may need a rebuild
  did+=("installed pinned dependencies from requirements.txt")
fi

# 3. the message wheels' exported CMake targets name the include dirs of the machine that built
#    them; point them at this interpreter's and numpy's (idempotent).
py_inc=$("$V/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$V/bin/python" -c 'import numpy; print(numpy.get_include())')
fixed=0
for f in "$V"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
  if grep -q '/opt/python/cp311-cp311' "$f"; then
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
    fixed=$((fixed + 1))
  fi
done
[ "$fixed" -gt 0 ] && did+=("rewrote include paths in $fixed exported CMake files")

# 4. build and install the package (messages + symlinked Python package) into the venv prefix.
#    Inputs: build files, messages, and the *list* of Python files (edits to existing files need
#    no rebuild: they are symlinked; a new file needs one).
build_hash=$( { hash_of CMakeLists.txt package.xml setup.cfg msg/*.msg scripts/stt_node; \
  find stt_ros stt_train launch config -type f -not -path '*/__pycache__/*' | sort; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMPS/build" 2>/dev/null)" != "$build_hash" ] || \
   ! "$V/bin/python" -c 'import stt_ros.msg' >/dev/null 2>&1; then
  export CMAKE_PREFIX_PATH=$V AMENT_PREFIX_PATH=$V
  export PATH=$V/bin:$PATH
  cmake -S . -B build/cmake -Wno-dev -DCMAKE_PREFIX_PATH="$V" -DCMAKE_INSTALL_PREFIX="$V" \
    -DPython3_EXECUTABLE="$V/bin/python" -DAMENT_CMAKE_SYMLINK_INSTALL=ON -DBUILD_TESTING=OFF \
    > build.log 2>&1 || { tail -30 build.log >&2; echo "setup: cmake configure failed (full log: build.log)" >&2; exit 1; }
  cmake --build build/cmake -j2 >> build.log 2>&1 || { tail -30 build.log >&2; echo "setup: build failed (build.log)" >&2; exit 1; }
  cmake --install build/cmake >> build.log 2>&1 || { tail -30 build.log >&2; echo "setup: install failed (build.log)" >&2; exit 1; }
  echo "$build_hash" > "$STAMPS/build"
  did+=("built and installed stt_ros (TemporalConsistency message, symlinked Python package) into .venv")
fi

# 5. the real `ros2 launch` (launch, launch_ros, ros2cli, composition_interfaces): not on PyPI; the
#    read-only ../shared/ros2-launch holds unmodified snapshots and installs them (~20 s). Without
#    it the tests that run `ros2 launch` skip and say why.
SHARED=${STT_SHARED:-$ROOT/../shared}
if [ -x "$SHARED/ros2-launch/install-into" ]; then
  launch_hash=$(hash_of "$SHARED/ros2-launch/install-into")
  if [ "$(cat "$STAMPS/ros2-launch" 2>/dev/null)" != "$launch_hash" ] || \
     ! "$V/bin/python" -c 'import launch_ros, ros2launch, composition_interfaces.srv' >/dev/null 2>&1; then
    mkdir -p build
    "$SHARED/ros2-launch/install-into" "$V" "$ROOT/build/ros2-launch" > build/ros2-launch.log 2>&1 || {
      tail -30 build/ros2-launch.log >&2; echo "setup: installing ros2 launch failed (build/ros2-launch.log)" >&2; exit 1; }
    echo "$launch_hash" > "$STAMPS/ros2-launch"
    did+=("installed launch, launch_ros and the ros2 CLI from $SHARED/ros2-launch into .venv")
  fi
else
  echo "setup: $SHARED/ros2-launch not found: no ros2 launch in .venv (its tests will skip)"
fi

bash scripts/install_trt_bindings.sh  # TensorRT 10/11 bindings for the API check (test_tensorrt_api.py)
if [ ${#did[@]} -eq 0 ]; then
  echo "setup: up to date ($(( $(date +%s) - t0 )) s, nothing redone)"
else
  for d in "${did[@]}"; do echo "setup: $d"; done
  echo "setup: done in $(( $(date +%s) - t0 )) s"
fi
