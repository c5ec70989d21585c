#!/usr/bin/env bash
# run-pipeline.sh: what the orchard SSM document runs on the instance: one `orchard run`.
#
# Usage: run-pipeline.sh            (no arguments: the run's parameters come from the environment)
#
# SSM Run Command runs it as root. The document declares its parameters with `interpolationType: ENV_VAR`, so the
# SSM Agent (3.3.2746.0 or later) hands each one over as an environment variable named SSM_<parameter name>,
# never as text inside a shell command:
#   SSM_input         required  s3://bucket/prefix/ of the images
#   SSM_output        required  s3://bucket/prefix/ the run folder goes under
#   SSM_components    optional  number of principal components (whole number)       } components wins over
#   SSM_variance      optional  share of variance to explain, e.g. 0.95 (0 < v < 1)  } variance; neither: 0.95
#   SSM_model         optional  preset name (e.g. mobilenet_v2), s3:// URI or https:// URL of a tfjs model
#   SSM_runId         optional  run id (letters, digits, . _ -); the same id resumes an interrupted run
#   SSM_maxErrorRate  optional  share of images allowed to fail, 0 to 1
# An empty value means "not given". SSM fills every parameter that is not sent with its default, so a variance
# next to a components value is the document's default, not a choice: components then wins. Each value is
# checked against a strict pattern and passed to orchard as one element of an argument array: nothing is
# evaluated, nothing is word-split, no value can become an option.
#
# orchard then runs as the unprivileged pipeline user (runuser; directly when this already is that user), from
# ORCHARD_HOME, with plain log lines: they read well in the SSM console and in CloudWatch Logs, and the trigger
# finds the run's one-line result ("done: …") on stdout. (--json-logs is for log pipelines that parse JSON.)
#
# Environment (defaults are the instance's; tests point them at a local bundle):
#   ORCHARD_HOME  folder of the bundle, the working directory of the run     default /opt/orchard
#   ORCHARD_BIN   the orchard command                                        default `orchard` on the PATH
#   ORCHARD_USER  user that runs orchard                                     default orchard
#
# Exit status: orchard's own (0 done, 1 fatal, 2 invalid configuration, 3 too many failed images, 130
# interrupted); 2 when a parameter is invalid, before anything runs.
set -euo pipefail
# Character classes below must mean ASCII whatever locale the SSM Agent runs with.
export LC_ALL=C

if [[ $# -ne 0 ]]; then
  echo "usage: $(basename "$0")   (parameters come from SSM_* environment variables; see the header)" >&2
  exit 2
fi

ORCHARD_HOME=${ORCHARD_HOME:-/opt/orchard}
ORCHARD_BIN=${ORCHARD_BIN:-orchard}
ORCHARD_USER=${ORCHARD_USER:-orchard}
# The bootstrap writes the `orchard` wrapper there; SSM's PATH may not include it.
PATH=${PATH:-/usr/bin:/bin}:/usr/local/bin

fail() {
  echo "run-pipeline: $*" >&2
  exit 2
}

# The patterns each parameter must match (RUN_PARAMETER_<name>): the ones the SSM document's allowedPattern holds,
# written next to this script by the bundle from lib/run-parameters.ts, their one source of truth.
parameters="$(dirname "${BASH_SOURCE[0]}")/run-parameters.sh"
[[ -r $parameters ]] || { echo "run-pipeline: $parameters is missing: the runtime bundle is incomplete" >&2; exit 1; }
# shellcheck source=/dev/null
source "$parameters"

# param <name> <required|optional> <description>: prints the value of SSM_<name>, or nothing when it is empty and
# optional; exits 2 when it does not match RUN_PARAMETER_<name>.
param() {
  local name=$1 presence=$2 description=$3
  local variable="SSM_$name" pattern="RUN_PARAMETER_$name"
  if [[ -z ${!variable+set} && $presence == required ]]; then
    fail "$variable is not set: the SSM document must declare '$name' with interpolationType ENV_VAR, and the" \
      "instance needs SSM Agent 3.3.2746.0 or later"
  fi
  local value=${!variable-}
  if [[ -z $value ]]; then
    [[ $presence == optional ]] || fail "parameter '$name' is required"
    return 0
  fi
  if [[ $value =~ ${!pattern} ]]; then
    printf '%s' "$value"
    return 0
  fi
  fail "parameter '$name': expected $description but got $(printf '%q' "$value")"
}

S3_EXPECTED="an s3:// URI (after the bucket: letters, digits, spaces, non-ASCII letters and !_.*()/+=,@:-)"
input=$(param input required "$S3_EXPECTED")
output=$(param output required "$S3_EXPECTED")
components=$(param components optional "a whole number of components from 1 to 9999")
variance=$(param variance optional "a fraction between 0 and 1, e.g. 0.95")
model=$(param model optional "a preset name, an s3:// URI or an https:// URL")
run_id=$(param runId optional "letters, digits, '.', '_' or '-' (at most 128, not starting with . _ -)")
max_error_rate=$(param maxErrorRate optional "a number from 0 to 1")
if [[ -n $components && -n $variance ]]; then
  echo "run-pipeline: components=$components given: variance=$variance (the document's default) does not apply" >&2
  variance=
fi

args=(run --input "$input" --output "$output")
if [[ -n $components ]]; then args+=(--components "$components"); fi
if [[ -n $variance ]]; then args+=(--variance "$variance"); fi
if [[ -n $model ]]; then args+=(--model "$model"); fi
if [[ -n $run_id ]]; then args+=(--run-id "$run_id"); fi
if [[ -n $max_error_rate ]]; then args+=(--max-error-rate "$max_error_rate"); fi

bin=$(command -v "$ORCHARD_BIN") ||
  { echo "run-pipeline: '$ORCHARD_BIN' not found: has the bootstrap run? (see /var/log/cfn-init-cmd.log)" >&2; exit 1; }
# The pipeline user cannot enter the SSM Agent's working directory, and Node.js needs a readable one.
cd "$ORCHARD_HOME"

# The bootstrap schedules a stop two minutes after `cdk deploy` succeeds; a run sent in that window must not be
# cut short by it. (Only root can cancel it, and only a root run can have been sent that early.)
if [[ $EUID -eq 0 ]] && command -v shutdown >/dev/null; then
  shutdown -c 2>/dev/null || true
fi

if [[ $(id -un) == "$ORCHARD_USER" ]]; then
  runner=()
elif [[ $EUID -eq 0 ]]; then
  runner=(runuser -u "$ORCHARD_USER" --)
else
  echo "run-pipeline: runs as root (SSM) or as $ORCHARD_USER, not as $(id -un)" >&2
  exit 1
fi
command_line=$(printf '%q ' "$bin" "${args[@]}")
echo "run-pipeline: as $ORCHARD_USER in $ORCHARD_HOME: ${command_line% }" >&2
exec "${runner[@]}" "$bin" "${args[@]}"
