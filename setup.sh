#!/usr/bin/env bash
# One command for each job, on a fresh Debian/Ubuntu machine with Python 3.11+:
#   bash setup.sh lab    set everything up, then open JupyterLab on notebooks/
#   bash setup.sh test   set everything up, then run every test (what CI runs)
# Extra arguments after "test" go to pytest, e.g. bash setup.sh test -k parity
# The virtual environment lives outside the checkout (VITLIB_VENV, default ~/.cache/vitlib/venv)
# so that fresh clones reuse it; every run still installs whatever is missing.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-}"; shift || true
case "$job" in lab|test) ;; *) echo "usage: bash setup.sh lab|test [pytest args]" >&2; exit 2 ;; esac

PY="${PYTHON:-python3}"
"$PY" - <<'PY' || { echo "vitlib needs Python 3.11 or newer (set PYTHON=python3.11)." >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 11))
PY

# System packages: the Fashion-MNIST files (so nothing is downloaded) and, for the browser test,
# Chromium. Skipped quietly where apt-get or root/sudo is missing: vitlib can download the data.
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  command -v apt-get >/dev/null || return 0
  local missing=(); for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}"
  { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"; } \
    || echo "warning: could not install ${missing[*]}; continuing without them" >&2
}
pkgs=(python3-venv dataset-fashion-mnist)
[ "$job" = test ] && pkgs+=(chromium)
apt_install "${pkgs[@]}"

VENV="${VITLIB_VENV:-$HOME/.cache/vitlib/venv}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
extras=""; [ "$job" = test ] && extras="[test]"
"$VENV/bin/python" -m pip install -q -e ".$extras"
export PATH="$VENV/bin:$PATH"

if [ "$job" = lab ]; then
  exec jupyter lab notebooks/
fi

# Notebooks run in quick mode in CI; the full suite stays well under 30 minutes on 2 cores.
export VITLIB_QUICK="${VITLIB_QUICK:-1}"
set +e
python -m pytest "$@"
rc=$?
set -e
# pytest's exit code 5 means "no tests collected", e.g. a -k selection that matched nothing.
if [ "$rc" = 5 ]; then echo "pytest collected no tests for this selection."; exit 0; fi
exit "$rc"
