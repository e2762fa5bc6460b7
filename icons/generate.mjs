// Draws Snowgate's icons as SVG: the app icon (a snowflake inside a gate on a blue tile) and the
// tray variants, one per broker state. Run `bash icons/render.sh` to regenerate the SVGs and
// the PNGs from them; the PNGs are committed so that building the app needs no image tools.

import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const r = (n) => Math.round(n * 100) / 100;

/** A six-armed snowflake centred at (cx, cy); `branch` adds the small V on each arm. */
function snowflake(cx, cy, arm, { branch = true } = {}) {
  const parts = [];
  for (let i = 0; i < 6; i++) {
    const a = (Math.PI / 3) * i - Math.PI / 2;
    const x = cx + arm * Math.cos(a);
    const y = cy + arm * Math.sin(a);
    parts.push(`M${r(cx)} ${r(cy)}L${r(x)} ${r(y)}`);
    if (branch) {
      const bx = cx + arm * 0.58 * Math.cos(a);
      const by = cy + arm * 0.58 * Math.sin(a);
      for (const side of [-1, 1]) {
        const b = a + side * (Math.PI / 3.6);
        const len = arm * 0.38;
        parts.push(`M${r(bx)} ${r(by)}L${r(bx + len * Math.cos(b))} ${r(by + len * Math.sin(b))}`);
      }
    }
  }
  return parts.join("");
}

/** The gate: two posts joined by a round arch, standing on a threshold. */
function gate(cx, top, halfWidth, bottom, sill) {
  const springLine = top + halfWidth;
  const arch = `M${r(cx - halfWidth)} ${r(bottom)}V${r(springLine)}A${r(halfWidth)} ${r(halfWidth)} 0 0 1 ${r(cx + halfWidth)} ${r(springLine)}V${r(bottom)}`;
  const threshold = sill ? `M${r(cx - sill)} ${r(bottom)}H${r(cx + sill)}` : "";
  return arch + threshold;
}

const appIcon = `<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024" viewBox="0 0 1024 1024">
  <defs>
    <linearGradient id="sky" x1="0" y1="0" x2="0.35" y2="1">
      <stop offset="0" stop-color="#38bdf8"/>
      <stop offset="1" stop-color="#1d4ed8"/>
    </linearGradient>
  </defs>
  <rect x="48" y="48" width="928" height="928" rx="208" fill="url(#sky)"/>
  <path d="${gate(512, 196, 250, 824, 318)}" fill="none" stroke="#fff" stroke-width="68" stroke-linecap="round" stroke-linejoin="round"/>
  <path d="${snowflake(512, 548, 168)}" fill="none" stroke="#fff" stroke-width="40" stroke-linecap="round"/>
</svg>
`;

/** Tray states: the glyph's colour and an optional badge in the lower right corner. */
const trayStates = {
  "signed-out": { glyph: "#9ca3af", badge: null },
  idle: { glyph: "#3b82f6", badge: null },
  active: { glyph: "#3b82f6", badge: "#22c55e" },
  attention: { glyph: "#3b82f6", badge: "#f59e0b" },
  error: { glyph: "#9ca3af", badge: "#ef4444" },
};

function trayIcon({ glyph, badge }) {
  // The badge is cut out of the glyph with a ring of clear space, so it reads at 16-22 px.
  const mask = badge
    ? `<mask id="cut"><rect width="64" height="64" fill="#fff"/><circle cx="50" cy="50" r="15" fill="#000"/></mask>`
    : "";
  const masked = badge ? ` mask="url(#cut)"` : "";
  const dot = badge ? `\n  <circle cx="50" cy="50" r="11" fill="${badge}"/>` : "";
  return `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
  <defs>${mask}</defs>
  <g${masked} fill="none" stroke="${glyph}" stroke-linecap="round" stroke-linejoin="round">
    <path d="${gate(32, 5, 23, 59, 0)}" stroke-width="7"/>
    <path d="${snowflake(32, 37, 13, { branch: false })}" stroke-width="6"/>
  </g>${dot}
</svg>
`;
}

writeFileSync(join(here, "snowgate.svg"), appIcon);
for (const [state, look] of Object.entries(trayStates)) {
  writeFileSync(join(here, "tray", `${state}.svg`), trayIcon(look));
}
console.log(`wrote snowgate.svg and ${Object.keys(trayStates).length} tray SVGs`);
