#!/usr/bin/env bash
# Renders the committed PNG icons from their SVG sources (run after changing an SVG,
# commit the result): the app icon in the hicolor sizes a desktop looks for, and the
# tray icons as pixmaps (postern-gui embeds them for trays that cannot read the icon
# theme path). Needs rsvg-convert (Debian: librsvg2-bin).
#
#   scripts/render-icons.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rsvg-convert >/dev/null || { echo "render-icons.sh: needs rsvg-convert (apt-get install librsvg2-bin)" >&2; exit 1; }
for size in 16 22 24 32 48 64 128 256; do
  dir="assets/hicolor/${size}x${size}/apps"
  mkdir -p "$dir"
  rsvg-convert -w "$size" -h "$size" assets/org.postern.Postern.svg -o "$dir/org.postern.Postern.png"
done
mkdir -p assets/hicolor/scalable/apps
cp assets/org.postern.Postern.svg assets/hicolor/scalable/apps/org.postern.Postern.svg
for state in disconnected connecting connected error; do
  for size in 22 44; do
    rsvg-convert -w "$size" -h "$size" "assets/tray/postern-$state.svg" -o "assets/tray/postern-$state-$size.png"
  done
done
echo "rendered: assets/hicolor/*/apps/org.postern.Postern.png, assets/tray/postern-*-{22,44}.png"
