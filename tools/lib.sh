# shellcheck shell=bash
# Shell helpers shared by the tools/ scripts. Source it: `. "$(dirname "$0")/lib.sh"`.

# ensure_venv VENV REQUIREMENTS: a Python virtual environment at VENV with REQUIREMENTS
# installed (wheels only), re-created whenever the requirements file changes (a hash stamp).
ensure_venv() {
  local venv=$1 req=$2 stamp want
  stamp=$venv/.requirements.sha256
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "== setting up $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --only-binary=:all: -r "$req"
  echo "$want" >"$stamp"
}

# apt_install WHO PACKAGE...: installs Debian packages with apt-get (through sudo when not
# root and sudo exists), running `apt-get update` only when the first try fails.
apt_install() {
  local who=$1 sudo=""
  shift
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi
  echo "$who: apt-get install $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
    { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}
