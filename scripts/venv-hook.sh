#!/usr/bin/env bash
# Make the card's commands work as written in the activated venv, from the repo root:
#   dagster asset materialize --select train_field_agent
# Dagster's asset commands take the code location only as -m/-f (they do not read pyproject's
# [tool.dagster]); click reads any option from DAGSTER_CLI_<COMMAND>_<OPTION>, so activate sets
# the module for them. `dg` reads pyproject's [tool.dg] itself. DAGSTER_HOME defaults to the
# repo's .dagster_home, as `make demo` and `make ui` use, so runs land in one instance.
set -euo pipefail
venv=${1:?usage: venv-hook.sh VENV}
repo=$(cd "$(dirname "$0")/.." && pwd)
activate="$venv/bin/activate"
marker="# flywheel: the card's commands"
grep -qF "$marker" "$activate" && exit 0
cat >> "$activate" <<HOOK

$marker (scripts/venv-hook.sh)
for _flywheel_cmd in ASSET_MATERIALIZE ASSET_LIST; do
    export "DAGSTER_CLI_\${_flywheel_cmd}_MODULE_NAME=dagster_project"
done
unset _flywheel_cmd
export DAGSTER_HOME="\${DAGSTER_HOME:-$repo/.dagster_home}"
mkdir -p "\$DAGSTER_HOME" && touch "\$DAGSTER_HOME/dagster.yaml"
HOOK
