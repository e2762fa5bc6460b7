#!/usr/bin/env bash
# End-to-end smoke test of the Snowgate tray app: builds the UI and the debug app, starts a
# private X server (Xvfb) with a tray host (trayer) and a private D-Bus session, and runs
# tests/e2e/smoke.mjs against the real binary through tauri-driver and WebKitWebDriver.
# Artifacts (screenshots, driver logs) land in target/e2e-artifacts/. Every process it
# starts is stopped on exit. The last line is "N passed, M failed"; the exit code is non-zero
# if anything failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
artifacts="$root/target/e2e-artifacts"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/snowgate-e2e.XXXXXX")
groups=()

# Stops the process groups in reverse order of start, so X clients go before the X server.
cleanup() {
  local i
  for ((i = ${#groups[@]} - 1; i >= 0; i--)); do
    kill -TERM -- "-${groups[i]}" 2>/dev/null || true
  done
  sleep 0.3
  for ((i = ${#groups[@]} - 1; i >= 0; i--)); do
    kill -KILL -- "-${groups[i]}" 2>/dev/null || true
  done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a command in the background as the leader of its own process group, so that cleanup
# stops it together with everything it spawned.
start_group() {
  setsid "$@" &
  groups+=("$!")
}

for tool in Xvfb WebKitWebDriver dbus-run-session gdbus compare import; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool; install xvfb webkit2gtk-driver dbus-x11 libglib2.0-bin imagemagick" >&2
    exit 1
  }
done

tauri_driver=$(command -v tauri-driver || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver")
if [ ! -x "$tauri_driver" ]; then
  echo "== installing tauri-driver"
  cargo install tauri-driver --locked
fi

echo "== building the UI and the debug app"
npm run ui:build --silent
cargo build -p snowgate-app
app="$root/target/debug/snowgate-app"

rm -rf "$artifacts"
mkdir -p "$artifacts"

echo "== starting Xvfb"
start_group Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$scratch/display" 2>"$artifacts/xvfb.log"
for _ in $(seq 100); do
  [ -s "$scratch/display" ] && break
  sleep 0.1
done
[ -s "$scratch/display" ] || { echo "Xvfb did not start; see $artifacts/xvfb.log" >&2; exit 1; }
export DISPLAY=":$(tr -d '[:space:]' <"$scratch/display")"
echo "   DISPLAY=$DISPLAY"

if command -v trayer >/dev/null; then
  # A tray host, so the app's icon is on screen (desktop.png). Without one the icon is hidden.
  start_group trayer --edge top --align right --widthtype request --height 32 \
    2>"$artifacts/trayer.log"
  sleep 0.5
fi

echo "== running the smoke test (screenshots and logs go to $artifacts)"
status=0
# The session's stderr (D-Bus activation, GTK and WebKit chatter, X errors at teardown) goes to
# a log, so the results on stdout end with the summary line.
start_group dbus-run-session -- env TAURI_DRIVER="$tauri_driver" \
  node tests/e2e/smoke.mjs "$app" "$artifacts" "$scratch" 2>"$artifacts/session.log"
wait "${groups[-1]}" || status=$?
exit "$status"
