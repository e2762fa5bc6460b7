// The app's tray, read over D-Bus the way a panel reads it.
//
// libayatana-appindicator exports the icon as a StatusNotifierItem and its menu through
// com.canonical.dbusmenu on the app's own session-bus connection, with or without a tray
// host, so a test can read the menu, tell which icon is shown, and click items. Needs `gdbus`
// (libglib2.0-bin) and ImageMagick's `compare`.

import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { waitFor } from "./webdriver.mjs";

// The tray id "snowgate" (src-tauri/src/tray.rs) as the tray-icon crate names its object.
const ITEM_PATH = "/org/ayatana/NotificationItem/tray_icon_tray_app_snowgate";
const MENU_PATH = `${ITEM_PATH}/Menu`;
const ICONS = join(dirname(fileURLToPath(import.meta.url)), "../../icons/tray");
const STATES = ["signed-out", "idle", "active", "attention", "error"];

function call(dest, path, method, ...args) {
  return execFileSync(
    "gdbus",
    ["call", "--session", "--timeout", "2", "--dest", dest, "--object-path", path, "--method", method, "--", ...args],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
}

// The connection that served the tray last time. Asking every connection on the bus costs up
// to the call timeout for each one that never answers, so the last one is tried first.
let lastTray = null;

/** The bus name that serves the tray item: the first connection that answers for its menu. */
export function findTray() {
  if (lastTray && servesTray(lastTray)) return lastTray;
  const names = call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames");
  // Newest connections first: the app under test joined the bus last.
  const serial = (name) => Number(name.split(".").pop());
  const unique = [...names.matchAll(/'(:[\d.]+)'/g)].map(([, name]) => name).sort((a, b) => serial(b) - serial(a));
  for (const name of unique) {
    if (servesTray(name)) {
      lastTray = name;
      return name;
    }
  }
  throw new Error("no connection on the session bus serves the tray item");
}

function servesTray(name) {
  try {
    call(name, MENU_PATH, "com.canonical.dbusmenu.GetLayout", "0", "-1", "[]");
    return true;
  } catch {
    return false; // not this connection, or it is gone
  }
}

/** The process behind a bus name. */
export function pidOf(dest) {
  const out = call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.GetConnectionUnixProcessID", dest);
  return Number(/uint32 (\d+)/.exec(out)?.[1]);
}

/** The menu's items in order, and which of icons/tray/<state>-64.png the icon is. */
export function readTray(dest) {
  const layout = call(dest, MENU_PATH, "com.canonical.dbusmenu.GetLayout", "0", "-1", "[]");
  const menu = [...layout.matchAll(/<\((\d+), \{([^}]*)\}/g)].map(([, id, props]) => ({
    id: Number(id),
    label: /'label': <'([^']*)'>/.exec(props)?.[1] ?? null,
    enabled: !/'enabled': <false>/.test(props),
  }));
  const name = call(dest, ITEM_PATH, "org.freedesktop.DBus.Properties.Get", "org.kde.StatusNotifierItem", "IconName");
  const iconFile = /'([^']+)'/.exec(name)?.[1];
  const icon = STATES.find((state) => {
    // The app re-encodes the PNG, so compare pixels: `compare` prints how many differ.
    const r = spawnSync("compare", ["-metric", "AE", iconFile, join(ICONS, `${state}-64.png`), "null:"], {
      encoding: "utf8",
    });
    return r.status === 0 && r.stderr.trim() === "0";
  });
  return { menu, icon: icon ?? `unknown (${iconFile})` };
}

/** Clicks the menu item labelled `label`. */
export function clickMenuItem(dest, label) {
  const item = readTray(dest).menu.find((i) => i.label === label);
  if (!item) throw new Error(`the tray menu has no ${JSON.stringify(label)}`);
  call(dest, MENU_PATH, "com.canonical.dbusmenu.Event", String(item.id), "clicked", "<int32 0>", "uint32 0");
}

/** Waits until the menu's first (status) line and the icon are as expected; returns the tray. */
export function trayShows(statusLine, icon) {
  return waitFor(`the tray to show ${JSON.stringify(statusLine)} with the ${icon} icon`, () => {
    const tray = readTray(findTray());
    const first = tray.menu[0];
    if (first?.label !== statusLine || first.enabled || tray.icon !== icon) {
      throw new Error(`the tray shows ${JSON.stringify(tray)}`);
    }
    return tray;
  });
}

/** The menu's labels in order, without separators, joined with `|`. */
export function menuLabels(tray) {
  return tray.menu.map((item) => item.label).filter(Boolean).join("|");
}

/**
 * Waits until the tray's icon is `icon` and its menu has an item whose label matches each of
 * `patterns` (strings match exactly, RegExps by test); returns the tray.
 */
export function trayHas(icon, ...patterns) {
  return waitFor(`the tray to show the ${icon} icon and ${patterns.join(", ")}`, () => {
    const tray = readTray(findTray());
    const has = (p) => tray.menu.some((item) => (p instanceof RegExp ? p.test(item.label ?? "") : item.label === p));
    if (tray.icon !== icon || !patterns.every(has)) {
      throw new Error(`the tray shows ${JSON.stringify(tray)}`);
    }
    return tray;
  });
}

/** The menu as it is signed out, and signed in as `who` with no grants and nothing to decide. */
export const SIGNED_OUT_MENU =
  "Signed out|Request access…|Approvals (0)|Open Snowgate|Copy connection settings|Sign in|Quit";
export const signedInMenu = (who) =>
  `Signed in as ${who}|Request access…|Approvals (0)|Open Snowgate|Copy connection settings|Sign out|Quit`;
