#!/usr/bin/env bash
# End-to-end smoke test of the Snowgate tray app: builds the UI, the debug app, the CLI and the
# test rig, starts the rig (a real OpenID provider and Snowflake front on loopback, and for team
# mode PostgreSQL, the team server and a Snowflake front that trusts it), a private X server
# (Xvfb) with a tray host (trayer), and a private D-Bus session with an unlocked gnome-keyring
# as the Secret Service, and runs tests/e2e/smoke.mjs against the real binary through
# tauri-driver and WebKitWebDriver. The app's "system browser" is a script that signs in at the
# rig's IdP headlessly (`snowgate-rig login --follow`). Artifacts (screenshots,
# driver and rig logs) land in target/e2e-artifacts/. Every process it starts is stopped on
# exit. The last line is "N passed, M failed"; the exit code is non-zero if anything failed.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tests/e2e/lib.sh
. "$root/tests/e2e/lib.sh"
artifacts="$root/target/e2e-artifacts"
e2e_begin e2e

require_tools Xvfb WebKitWebDriver dbus-run-session gdbus compare import gnome-keyring-daemon

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

echo "== starting the rig (IdP, Snowflake fronts, PostgreSQL and the team server)"
rig_dir="$scratch/rig"
start_rig "$rig" "$rig_dir" "$artifacts/rig.log" --team --snowgate "$root/target/debug/snowgate"
grep -E '^RIG_(IDP_ISSUER|TEAM_SERVER)=' "$artifacts/rig.log" | sed 's/^/   /'

# The app's "system browser" (opener honours $BROWSER): signs in at the rig's IdP and follows
# the redirect to Snowgate's loopback callback, as a person in a browser would. It signs in as
# $SNOWGATE_E2E_USER (the team case starts each app with its user there), else as the user
# named in $scratch/browser-user (a test writes bob there to play the approver), else as alice.
browser="$scratch/browser"
cat >"$browser" <<SCRIPT
#!/bin/sh
# The app pipes this script's stderr and never reads it, so everything goes to a log.
user=\${SNOWGATE_E2E_USER:-\$(cat "$scratch/browser-user" 2>/dev/null || echo alice)}
exec "$rig" login --dir "$rig_dir" --user "\$user" --follow "\$1" \\
  >>"$artifacts/browser.log" 2>&1
SCRIPT
chmod +x "$browser"

echo "== starting Xvfb"
start_desktop "$artifacts"

echo "== running the smoke test (screenshots and logs go to $artifacts)"
status=0
# The session's stderr (D-Bus activation, GTK and WebKit chatter, X errors at teardown) goes to
# a log, so the results on stdout end with the summary line. Inside the session, an unlocked
# gnome-keyring serves the Secret Service (the app keeps the refresh token there).
start_session env \
  TAURI_DRIVER="$tauri_driver" \
  SNOWGATE_E2E_RIG="$rig" SNOWGATE_E2E_RIG_DIR="$rig_dir" \
  SNOWGATE_E2E_CLI="$root/target/debug/snowgate" SNOWGATE_E2E_BROWSER="$browser" \
  node tests/e2e/smoke.mjs "$app" "$artifacts" "$scratch" 2>"$artifacts/session.log"
wait "${groups[-1]}" || status=$?
cp "$rig_dir/team/server.log" "$artifacts/team-server.log" 2>/dev/null || true
exit "$status"
