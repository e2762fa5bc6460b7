#!/usr/bin/env bash
# Copies the screenshots of the last E2E run (target/e2e-artifacts/) into docs/screenshots/,
# which is the only way screenshots get into the source tree. Run tests/e2e/run.sh first.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
from="$root/target/e2e-artifacts"
to="$root/docs/screenshots"

shots=(
  sign-in.png sign-in-dark.png sign-in-device.png sign-in-no-keyring.png
  status-signed-in.png status.png status-dark.png
  config-error.png already-running.png
  request-access.png approvals.png my-access.png sessions.png connect.png audit.png
  status-team.png approvals-team.png
)
for shot in "${shots[@]}"; do
  [ -s "$from/$shot" ] || { echo "no $from/$shot; run tests/e2e/run.sh first" >&2; exit 1; }
done
mkdir -p "$to"
for shot in "${shots[@]}"; do
  cp "$from/$shot" "$to/$shot"
  echo "updated docs/screenshots/$shot"
done
