#!/usr/bin/env bash
# Regenerates every icon from icons/generate.mjs: the app icon in the bundle sizes (through
# `tauri icon`, which renders SVG itself) and the tray variants at 32x32 and 64x64.
set -euo pipefail
cd "$(dirname "$0")/.."

node icons/generate.mjs
npx tauri icon icons/snowgate.svg -o icons
# `tauri icon` also writes Android, iOS and Windows Store sizes; the desktop bundles need only these.
rm -rf icons/android icons/ios icons/Square*Logo.png icons/StoreLogo.png icons/64x64.png

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for svg in icons/tray/*.svg; do
  state=$(basename "$svg" .svg)
  npx tauri icon "$svg" -o "$scratch/$state" -p 32 -p 64 >/dev/null
  cp "$scratch/$state/32x32.png" "icons/tray/$state-32.png"
  cp "$scratch/$state/64x64.png" "icons/tray/$state-64.png"
done
ls icons icons/tray
