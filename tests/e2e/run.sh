#!/usr/bin/env bash
# End-to-end smoke test of the Snowgate tray app: builds the UI, the debug app, the CLI and the
# test rig, starts the rig (a real OpenID provider and Snowflake front on loopback), a private
# X server (Xvfb) with a tray host (trayer), and a private D-Bus session with an unlocked
# gnome-keyring as the Secret Service, and runs tests/e2e/smoke.mjs against the real binary
# through tauri-driver and WebKitWebDriver. The app's "system browser" is a script that signs
# in at the rig's IdP headlessly (`snowgate-rig login --follow`). Artifacts (screenshots,
# driver and rig logs) land in target/e2e-artifacts/. Every process it starts is stopped on
# exit. The last line is "N passed, M failed"; the exit code is non-zero if anything failed.
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

for tool in Xvfb WebKitWebDriver dbus-run-session gdbus compare import gnome-keyring-daemon; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool; install xvfb webkit2gtk-driver dbus-x11 libglib2.0-bin imagemagick gnome-keyring" >&2
    exit 1
  }
done

tauri_driver=$(command -v tauri-driver || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver")
if [ ! -x "$tauri_driver" ]; then
  echo "== installing tauri-driver"
  cargo install tauri-driver --locked
fi

echo "== building the UI, the debug app, the CLI and the rig"
npm run ui:build --silent
cargo build -p snowgate-app -p snowgate-cli -p snowgate-rig
app="$root/target/debug/snowgate-app"
rig="$root/target/debug/snowgate-rig"

rm -rf "$artifacts"
mkdir -p "$artifacts"

echo "== starting the rig (IdP and Snowflake front)"
rig_dir="$scratch/rig"
start_group "$rig" up --dir "$rig_dir" >"$artifacts/rig.log" 2>&1
for _ in $(seq 600); do
  grep -q '^RIG READY' "$artifacts/rig.log" && break
  kill -0 "${groups[-1]}" 2>/dev/null || break
  sleep 0.1
done
grep -q '^RIG READY' "$artifacts/rig.log" || { echo "the rig did not start; see $artifacts/rig.log" >&2; exit 1; }
grep '^RIG_IDP_ISSUER=' "$artifacts/rig.log" | sed 's/^/   /'

# The app's "system browser" (opener honours $BROWSER): signs in at the rig's IdP and follows
# the redirect to Snowgate's loopback callback, as a person in a browser would. It signs in as
# alice, or as the user named in $scratch/browser-user (a test writes bob there to play the
# approver).
browser="$scratch/browser"
cat >"$browser" <<SCRIPT
#!/bin/sh
# The app pipes this script's stderr and never reads it, so everything goes to a log.
user=\$(cat "$scratch/browser-user" 2>/dev/null || echo alice)
exec "$rig" login --dir "$rig_dir" --user "\$user" --follow "\$1" \\
  >>"$artifacts/browser.log" 2>&1
SCRIPT
chmod +x "$browser"

# gnome-keyring keeps its files and control socket under these; the app finds it on D-Bus.
keyring_home="$scratch/keyring"
mkdir -p "$keyring_home/data" "$keyring_home/run"
chmod 700 "$keyring_home/run"

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
# a log, so the results on stdout end with the summary line. Inside the session, an unlocked
# gnome-keyring serves the Secret Service (the app keeps the refresh token there); it exits
# with the session's bus.
start_group dbus-run-session -- env \
  TAURI_DRIVER="$tauri_driver" \
  SNOWGATE_E2E_RIG="$rig" SNOWGATE_E2E_RIG_DIR="$rig_dir" \
  SNOWGATE_E2E_CLI="$root/target/debug/snowgate" SNOWGATE_E2E_BROWSER="$browser" \
  KEYRING_HOME="$keyring_home" \
  sh -c '
    printf pw | HOME="$KEYRING_HOME" XDG_DATA_HOME="$KEYRING_HOME/data" \
      XDG_RUNTIME_DIR="$KEYRING_HOME/run" \
      gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
    exec node tests/e2e/smoke.mjs "$@"' smoke "$app" "$artifacts" "$scratch" 2>"$artifacts/session.log"
wait "${groups[-1]}" || status=$?
exit "$status"
