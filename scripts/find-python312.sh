#!/usr/bin/env bash
# Print the path of a CPython 3.12 interpreter: $PYTHON, python3.12 on PATH, pyenv's, or uv's.
# LeRobot >= 0.5 needs Python >= 3.12 and the pinned stack is locked for 3.12.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' >/dev/null 2>&1; }
for cand in "${PYTHON:-}" python3.12 python3; do
  [ -n "$cand" ] || continue
  p=$(command -v "$cand" 2>/dev/null) || continue
  # pyenv shims exist on PATH even when they refuse to run: `ok` runs them to be sure
  if ok "$p"; then echo "$p"; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for p in $(ls -d "$root"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV); do
    if ok "$p"; then echo "$p"; exit 0; fi
  done
fi
for p in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
  if [ -x "$p" ] && ok "$p"; then echo "$p"; exit 0; fi
done
if command -v uv >/dev/null 2>&1 && p=$(uv python find 3.12 2>/dev/null) && ok "$p"; then echo "$p"; exit 0; fi
echo "error: no Python 3.12 found (tried \$PYTHON, python3.12, pyenv, uv). Install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12" >&2
exit 1
