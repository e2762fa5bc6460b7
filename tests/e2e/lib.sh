# Shared setup for the scripts that run the tray app on a private desktop (tests/e2e/run.sh,
# scripts/measure-app). Sourced by bash with `set -euo pipefail`.
#
# e2e_begin NAME makes a scratch directory ($scratch) and arranges that every process group
# started with start_group is stopped, and the scratch directory removed, on exit. The other
# functions start the test rig, a private X server with a tray host, and a private D-Bus
# session with an unlocked gnome-keyring as the Secret Service.

# Process groups started with start_group, in order of start.
groups=()

# Makes $scratch (named after NAME) and installs the cleanup for exit and interrupts.
e2e_begin() {
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/snowgate-$1.XXXXXX")
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Stops the process groups in reverse order of start, so X clients go before the X server, and
# gives them up to 3 s to exit (the rig stops its parts and deletes PostgreSQL's data) before
# killing what is left.
e2e_cleanup() {
  local i group alive
  for ((i = ${#groups[@]} - 1; i >= 0; i--)); do
    kill -TERM -- "-${groups[i]}" 2>/dev/null || true
  done
  for _ in $(seq 30); do
    alive=0
    for group in "${groups[@]}"; do
      kill -0 -- "-$group" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for ((i = ${#groups[@]} - 1; i >= 0; i--)); do
    kill -KILL -- "-${groups[i]}" 2>/dev/null || true
  done
  rm -rf "$scratch"
}

# Starts a command in the background as the leader of its own process group, so that cleanup
# stops it together with everything it spawned. Its pid is "${groups[-1]}".
start_group() {
  setsid "$@" &
  groups+=("$!")
}

# Fails unless every named tool is on PATH.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || {
      echo "missing $tool; install xvfb webkit2gtk-driver dbus-x11 libglib2.0-bin imagemagick gnome-keyring" >&2
      exit 1
    }
  done
}

# start_rig RIG DIR LOG [ARG...]: starts `RIG up --dir DIR ARG...` (the IdP and Snowflake front;
# it writes DIR/config.toml for Snowgate; with --team also the team server and its parts) with
# its output in LOG, and waits until it is ready.
start_rig() {
  local rig=$1 dir=$2 log=$3
  shift 3
  start_group "$rig" up --dir "$dir" "$@" >"$log" 2>&1
  for _ in $(seq 600); do
    grep -q '^RIG READY' "$log" && break
    kill -0 "${groups[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^RIG READY' "$log" || { echo "the rig did not start; see $log" >&2; exit 1; }
}

# start_desktop LOGDIR: starts Xvfb, exports its DISPLAY, and starts a tray host (trayer) if
# there is one, so the app's icon is on screen. Logs go to LOGDIR.
start_desktop() {
  local logs=$1
  start_group Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$scratch/display" 2>"$logs/xvfb.log"
  for _ in $(seq 100); do
    [ -s "$scratch/display" ] && break
    sleep 0.1
  done
  [ -s "$scratch/display" ] || { echo "Xvfb did not start; see $logs/xvfb.log" >&2; exit 1; }
  export DISPLAY=":$(tr -d '[:space:]' <"$scratch/display")"
  echo "   DISPLAY=$DISPLAY"
  if command -v trayer >/dev/null; then
    # Without a tray host the icon is hidden (it is still on D-Bus).
    start_group trayer --edge top --align right --widthtype request --height 32 \
      2>"$logs/trayer.log"
    sleep 0.5
  fi
}

# start_session COMMAND...: runs COMMAND in a private D-Bus session, as its own process group
# ("${groups[-1]}", for the caller to wait for). Inside the session, an unlocked gnome-keyring
# serves the Secret Service (the app keeps the refresh token there); it exits with the
# session's bus. Its files and control socket live under $scratch/keyring.
start_session() {
  local keyring_home="$scratch/keyring"
  mkdir -p "$keyring_home/data" "$keyring_home/run"
  chmod 700 "$keyring_home/run"
  start_group dbus-run-session -- env KEYRING_HOME="$keyring_home" sh -c '
    printf pw | HOME="$KEYRING_HOME" XDG_DATA_HOME="$KEYRING_HOME/data" \
      XDG_RUNTIME_DIR="$KEYRING_HOME/run" \
      gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
    exec "$@"' session "$@"
}
