#!/usr/bin/env bash
# bootstrap.sh: installs the orchard runtime bundle on the EC2 instance and checks that it works.
#
# Usage: bootstrap.sh <bucket-name> <region>
#   bucket-name  the data bucket: `orchard doctor` checks that the instance can list its images/ and results/
#                prefixes, and loads the default model from its models/ prefix, where the data stack put it
#   region       its AWS region: orchard's S3 client gets it through the `orchard` wrapper (AWS_REGION)
#
# Runs as root under cfn-init on Amazon Linux 2023 x86_64, from the folder the runtime bundle asset was extracted
# to (orchard.cjs, the wasm binaries, package.json with the pinned native dependencies, the scripts). Steps:
#   1. install Node.js 22 from the AL2023 namespaced packages: they install `node-22` and `npm-22`, called by name
#      (plain `node` is the distribution's default version, or absent)
#   2. install the bundle's pinned dependencies for this CPU and libc (sharp, onnxruntime-node, chart.js;
#      @tensorflow/tfjs-node when it installs and loads: it is optional, for the TensorFlow.js engine only), then
#      delete the onnxruntime-node binaries of other platforms (about 200 MB the instance never loads)
#   3. create the unprivileged system user that runs the pipeline
#   4. put `orchard` on the PATH
#   5. run `orchard doctor` as that user: sharp, ONNX Runtime, the TensorFlow.js backend, S3 access to the prefixes
#      a run lists, and the default model, read from s3://<bucket>/models/ (the data stack's custom resource put
#      it there, pinned by SHA-256), whose compiled ONNX graph it caches there so that the first run compiles
#      nothing; a failed check fails the bootstrap, and with it cfn-signal and `cdk deploy`
#   6. schedule `shutdown -h +2`: the instance stops itself (it bills only while a run runs; the trigger starts it)
# Every step is idempotent: cfn-init runs this again when the stack is updated. A rerun with an unchanged
# package.json keeps the installed dependencies (no second try at tfjs-node: delete the stamp file it names).
#
# Environment (defaults are what the instance uses; the overrides let the non-dnf steps run on a development
# machine or in a test):
#   ORCHARD_HOME          folder holding the bundle                       default /opt/orchard
#   ORCHARD_NODE          Node.js 22 binary                               default node-22
#   ORCHARD_NPM           its npm                                         default npm-22
#   ORCHARD_USER          user that runs orchard                          default orchard
#   ORCHARD_WRAPPER       where the `orchard` command is written          default /usr/local/bin/orchard
#   ORCHARD_MODEL         model the doctor loads and caches               default: orchard's default (mobilenet_v2)
#   ORCHARD_SKIP_PACKAGES=1  skip the dnf step (Node.js already installed)
#   ORCHARD_NO_SHUTDOWN=1    do not schedule the shutdown
#   AWS_ENDPOINT_URL      S3-compatible endpoint (tests: a local S3 server); unset on AWS
#
# Exit status: 0 when every step succeeded; otherwise the status of the step that failed (orchard doctor: 1).
set -euo pipefail

usage() {
  echo "usage: $(basename "$0") <bucket-name> <region>" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
BUCKET=$1
REGION=$2
# Both end up in a file and in a URI: accept only what AWS accepts for them.
[[ $BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || { echo "bootstrap: invalid bucket name: $BUCKET" >&2; usage; }
[[ $REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || { echo "bootstrap: invalid region: $REGION" >&2; usage; }

ORCHARD_HOME=${ORCHARD_HOME:-/opt/orchard}
ORCHARD_NODE=${ORCHARD_NODE:-node-22}
ORCHARD_NPM=${ORCHARD_NPM:-npm-22}
ORCHARD_USER=${ORCHARD_USER:-orchard}
ORCHARD_WRAPPER=${ORCHARD_WRAPPER:-/usr/local/bin/orchard}
ORCHARD_USER_HOME=/var/lib/orchard
TFJS_NODE=@tensorflow/tfjs-node
# cfn-init gives a command only the `env` it declares (HOME): bash then sets a default PATH, ending with the
# current directory, that it does not export. Export it, without ".", for npm, its install scripts and orchard.
export PATH=${PATH%:.}
# npm keeps its cache under HOME.
export HOME=${HOME:-/root}
export AWS_REGION=$REGION
# ONNX Runtime's telemetry off for the checks below too (runtime/contracts/deployment.ts, ORT_TELEMETRY_OFF).
export ORT_DISABLE_TELEMETRY=1 ORT_TELEMETRY_DISABLED=1

log() { echo "bootstrap: $(date -u +%H:%M:%S) $*"; }

# 1. Node.js 22 -------------------------------------------------------------------------------------------------
if [[ ${ORCHARD_SKIP_PACKAGES:-} == 1 ]]; then
  log "skipping the package install (ORCHARD_SKIP_PACKAGES=1)"
else
  log "installing Node.js 22 (nodejs22, nodejs22-npm)"
  dnf install -y nodejs22 nodejs22-npm
fi
NODE_BIN=$(command -v "$ORCHARD_NODE") || { echo "bootstrap: $ORCHARD_NODE not found on PATH" >&2; exit 1; }
command -v "$ORCHARD_NPM" >/dev/null || { echo "bootstrap: $ORCHARD_NPM not found on PATH" >&2; exit 1; }
log "Node.js $("$NODE_BIN" --version) at $NODE_BIN, npm $("$ORCHARD_NPM" --version)"

# 2. Pinned dependencies ------------------------------------------------------------------------------------------
cd "$ORCHARD_HOME"
ORCHARD_HOME=$PWD
[[ -f orchard.cjs && -f package.json ]] || { echo "bootstrap: $ORCHARD_HOME holds no orchard bundle (orchard.cjs, package.json)" >&2; exit 1; }
# A rerun with the same package.json (an update that changed something else) keeps what is installed, as long
# as it still loads; a changed package.json (a new runtime with other versions) installs again.
stamp=node_modules/.orchard-package-json.sha256
wanted=$(sha256sum package.json | cut -d' ' -f1)
if [[ -f $stamp && $(<"$stamp") == "$wanted" ]] &&
  "$NODE_BIN" -e "require('sharp'); require('onnxruntime-node'); require.resolve('chart.js')" >/dev/null 2>&1; then
  log "dependencies already installed for this package.json; delete $ORCHARD_HOME/$stamp to reinstall"
else
  log "installing the bundle's dependencies in $ORCHARD_HOME (an optional one that fails to install is skipped)"
  # Install scripts (tfjs-node's) call plain `node`, which AL2023 points at whichever Node.js is active, if any:
  # for them, `node` is this Node.js 22.
  node_shim=$(mktemp -d)
  ln -s "$NODE_BIN" "$node_shim/node"
  # --foreground-scripts: the log shows the install scripts' own output (why tfjs-node could not download
  # libtensorflow, if it could not), which npm otherwise keeps to its debug log.
  PATH="$node_shim:$PATH" "$ORCHARD_NPM" install --omit=dev --no-audit --no-fund --no-update-notifier --foreground-scripts
  rm -rf "$node_shim"
  echo "$wanted" >"$stamp"
fi
# onnxruntime-node ships every platform's CPU binaries; keep this machine's only.
ort_bin=node_modules/onnxruntime-node/bin/napi-v6
ort_platform=$("$NODE_BIN" -p 'process.platform + "/" + process.arch')
if [[ -d $ort_bin/$ort_platform ]]; then
  find "$ort_bin" -mindepth 2 -maxdepth 2 -type d ! -path "$ort_bin/$ort_platform" -exec rm -rf {} +
  log "engine: onnx (onnxruntime-node $("$NODE_BIN" -p "require('onnxruntime-node/package.json').version") for $ort_platform)"
else
  log "onnxruntime-node has no build for $ort_platform: runs fall back to TensorFlow.js"
fi
# tfjs-node downloads libtensorflow when it installs. Installed but unable to load, it would make the `auto`
# backend fail every run: remove it so that WebAssembly runs instead, and say which backend that is.
if "$NODE_BIN" -e "require('$TFJS_NODE')" >/dev/null 2>&1; then
  log "backend: tensorflow ($TFJS_NODE $("$NODE_BIN" -p "require('$TFJS_NODE/package.json').version") loads)"
else
  if [[ -d node_modules/$TFJS_NODE ]]; then
    log "$TFJS_NODE is installed but does not load; removing it"
    "$NODE_BIN" -e "require('$TFJS_NODE')" 2>&1 | head -n 5 || true
    rm -rf "node_modules/$TFJS_NODE"
  fi
  log "backend: wasm ($TFJS_NODE is not installed: npm could not install it, see its output in this log). The TensorFlow.js engine works, more slowly"
fi
# The bundle is extracted and installed by root; the pipeline user only reads it.
chmod -R a+rX "$ORCHARD_HOME"

# 3. The pipeline user -------------------------------------------------------------------------------------------
if id -u "$ORCHARD_USER" >/dev/null 2>&1; then
  log "user $ORCHARD_USER exists"
else
  log "creating system user $ORCHARD_USER (home $ORCHARD_USER_HOME, no login shell)"
  useradd --system --create-home --home-dir "$ORCHARD_USER_HOME" --shell /sbin/nologin "$ORCHARD_USER"
fi

# 4. `orchard` on the PATH: written to a temporary file, then renamed, so a rerun never leaves half a file -------
log "writing $ORCHARD_WRAPPER"
mkdir -p "$(dirname "$ORCHARD_WRAPPER")"
wrapper_tmp=$(mktemp "$ORCHARD_WRAPPER.XXXXXX")
{
  echo '#!/bin/bash'
  # shellcheck disable=SC2016 # ${AWS_REGION:-…} and "$@" are for the wrapper to expand, not this script
  printf 'export AWS_REGION="${AWS_REGION:-%s}"\n' "$REGION"
  # A fixed glibc mmap threshold: big buffers are unmapped when freed (runtime/contracts/deployment.ts, PROCESS_ENV)
  # shellcheck disable=SC2016
  printf 'export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-%s}"\n' 4194304
  # No telemetry from ONNX Runtime (PROCESS_ENV): nothing under ~/.cache/Microsoft, no upload
  echo 'export ORT_DISABLE_TELEMETRY=1 ORT_TELEMETRY_DISABLED=1'
  # No model downloads (PROCESS_ENV): the default weights are read from s3://<bucket>/models/ only
  echo 'export ORCHARD_MODEL_DOWNLOADS=off'
  # shellcheck disable=SC2016
  printf 'exec %q %q "$@"\n' "$NODE_BIN" "$ORCHARD_HOME/orchard.cjs"
} >"$wrapper_tmp"
chmod 755 "$wrapper_tmp"
mv -f "$wrapper_tmp" "$ORCHARD_WRAPPER"

# 5. Self-check as the pipeline user; it caches the model's compiled graph into the bucket ------------------------
# The prefixes of the data stack (lib/constructs/data-bucket.ts): the role may list under them, not the bucket root.
doctor=("$ORCHARD_WRAPPER" doctor --bucket "s3://$BUCKET/images/" --bucket "s3://$BUCKET/results/"
  --model-cache "s3://$BUCKET/models/")
if [[ -n ${ORCHARD_MODEL:-} ]]; then doctor+=(--model "$ORCHARD_MODEL"); fi
log "running: ${doctor[*]} (as $ORCHARD_USER)"
if [[ $(id -un) == "$ORCHARD_USER" ]]; then
  "${doctor[@]}"
else
  runuser -u "$ORCHARD_USER" -- "${doctor[@]}"
fi

# 6. Stop the instance: it runs only while a run runs ----------------------------------------------------------
if [[ ${ORCHARD_NO_SHUTDOWN:-} == 1 ]]; then
  log "not scheduling a shutdown (ORCHARD_NO_SHUTDOWN=1)"
elif pgrep -u "$ORCHARD_USER" >/dev/null; then
  # A rerun (stack update) while a pipeline run is in progress: stopping now would interrupt it.
  log "bootstrap done; $ORCHARD_USER has processes running (a pipeline run?): not stopping the instance"
else
  log "bootstrap done; the instance stops in 2 minutes (npm run trigger starts it for a run)"
  shutdown -h +2
fi
log "done"
