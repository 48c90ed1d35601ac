#!/usr/bin/env bash
# Build a labeler's own environment: scripts/labeler-env.sh NAME [DIR] (default .labeler-envs/NAME)
# from labelers/envs/NAME.txt. The worker runs there with the project on PYTHONPATH, so the
# environment holds only the labeler's dependencies and dagster-pipes.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/labeler-env.sh NAME [DIR]}
dir=${2:-.labeler-envs/$name}
req=labelers/envs/$name.txt
[ -f "$req" ] || { echo "labeler-env: no $req; labelers with their own environment: $(ls labelers/envs | sed 's/.txt//' | tr '\n' ' ')" >&2; exit 2; }
py=$(scripts/find-python312.sh)
rm -rf "$dir.tmp"
"$py" -m venv "$dir.tmp"
"$dir.tmp/bin/pip" install --disable-pip-version-check -q -r "$req"
if ! grep -q '^torch' "$req"; then
  # torch from the pipeline's environment, after this one's own site-packages (so its own transformers wins)
  own=$("$dir.tmp/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  lend=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$lend" > "$own/zz-pipeline-torch.pth"
fi
rm -rf "$dir" && mv "$dir.tmp" "$dir"
echo "labeler-env: $dir ($("$dir/bin/python" -c 'import transformers; print("transformers", transformers.__version__)'))"
