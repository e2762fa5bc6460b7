// End-to-end smoke test of the real tray app, driven over the W3C WebDriver protocol.
//
// run.sh builds the app, starts Xvfb (and a tray host) and runs this file inside a private
// D-Bus session. For each case this file writes a config, starts tauri-driver with
// SNOWGATE_CONFIG pointing at it (tauri-driver hands its environment to WebKitWebDriver, which
// hands it to the app), opens a session on the debug binary, and checks what the window shows
// (webdriver.mjs) and what the tray shows (tray.mjs). Screenshots go to the artifacts
// directory, never into the source tree.
//
// Usage: node smoke.mjs <app binary> <artifacts dir> <scratch dir>

import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

import { clickMenuItem, findTray, pidOf, trayShows } from "./tray.mjs";
import { driverReady, newSession, textOf, waitFor } from "./webdriver.mjs";

const [app, artifacts, scratch] = process.argv.slice(2);
if (!app || !artifacts || !scratch) {
  console.error("usage: node smoke.mjs <app binary> <artifacts dir> <scratch dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const TAURI_DRIVER = process.env.TAURI_DRIVER ?? "tauri-driver";

const GOOD_CONFIG = `# Written by tests/e2e/smoke.mjs
[identity]
issuer = "https://127.0.0.1:1/"
client_id = "snowgate-desktop"
snowflake_audience = "https://rigacct.snowflakecomputing.com"

[snowflake]
account = "rigacct"
url = "http://127.0.0.1:2"

[[roles]]
name = "ANALYST"
description = "Read the marts"
max_duration = "8h"
approvers = ["managers"]
`;

// An unknown key on line 10, inside [snowflake].
const BROKEN_CONFIG = GOOD_CONFIG.replace(
  'url = "http://127.0.0.1:2"',
  'url = "http://127.0.0.1:2"\ncolour = "blue"',
);

/** The whole screen, with the tray host, to look at the tray icon; skipped without `import`. */
function desktopShot(name) {
  spawnSync("import", ["-window", "root", join(artifacts, name)], { stdio: "ignore" });
}

// ---------------------------------------------------------------------------------------------
// tauri-driver, one per case, so each case gets its own environment.

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs `body(session, { configPath, home })` against a fresh app started with `configText` as
 * its config, and stops the app and its driver afterwards.
 */
async function withApp(name, configText, body, extraEnv = {}) {
  const home = join(scratch, name);
  mkdirSync(home, { recursive: true });
  const configPath = join(home, "config.toml");
  writeFileSync(configPath, configText);

  const [port, nativePort] = [await freePort(), await freePort()];
  const log = createWriteStream(join(artifacts, `${name}.driver.log`));
  const driver = spawn(TAURI_DRIVER, ["--port", String(port), "--native-port", String(nativePort)], {
    env: {
      ...process.env,
      SNOWGATE_CONFIG: configPath,
      SNOWGATE_DATA_DIR: join(home, "data"),
      XDG_CONFIG_HOME: join(home, "xdg-config"),
      XDG_DATA_HOME: join(home, "xdg-data"),
      XDG_CACHE_HOME: join(home, "xdg-cache"), // the tray icon's PNG is written below it
      RUST_LOG: "info",
      ...extraEnv,
    },
    detached: true, // its own process group, so the app it starts goes down with it
    stdio: ["ignore", "pipe", "pipe"],
  });
  driver.stdout.pipe(log);
  driver.stderr.pipe(log);
  const base = `http://127.0.0.1:${port}`;
  let s;
  try {
    await waitFor("tauri-driver to listen", () => driverReady(base), 15_000);
    s = await newSession(base, app);
    await body(s, { configPath, home });
  } finally {
    if (s) await s.close().catch(() => {});
    try {
      process.kill(-driver.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The cases.

const cases = [
  [
    "the Status screen shows the configured account, IdP, gateway and role",
    () =>
      withApp("status", GOOD_CONFIG, async (s) => {
        await textOf(s, "[data-testid=account]", "rigacct");
        await textOf(s, "[data-testid=roles]", "ANALYST");
        await textOf(s, "[data-testid=issuer]", "https://127.0.0.1:1/");
        await textOf(s, "[data-testid=gateway]", "127.0.0.1:8765");
        await textOf(s, "[data-testid=sign-in]", "Signed out");
        const title = await s.title();
        if (title !== "Snowgate") throw new Error(`window title is ${JSON.stringify(title)}`);
        await s.screenshot(join(artifacts, "status.png"));
        desktopShot("desktop.png");
        const tray = await trayShows("Signed out", "signed-out");
        const labels = tray.menu.map((item) => item.label).filter(Boolean);
        if (labels.join("|") !== "Signed out|Open Snowgate|Quit") {
          throw new Error(`the tray menu is ${JSON.stringify(labels)}`);
        }
      }),
  ],
  [
    "a broken config shows the error with its file, line and key",
    () =>
      withApp("broken", BROKEN_CONFIG, async (s, { configPath }) => {
        const text = await textOf(s, "[data-testid=problem-message]", configPath);
        for (const part of ["line 10", "key `snowflake.colour`", "unknown key `colour`"]) {
          if (!text.includes(part)) throw new Error(`error text lacks ${JSON.stringify(part)}: ${text}`);
        }
        await textOf(s, "[data-testid=problem]", "Try again");
        await s.screenshot(join(artifacts, "config-error.png"));
        desktopShot("desktop-config-error.png");
        await trayShows("Config error: open Snowgate for details", "error");
      }),
  ],
  [
    "the Status screen follows a dark desktop theme",
    () =>
      withApp(
        "dark",
        GOOD_CONFIG,
        async (s) => {
          await textOf(s, "[data-testid=account]", "rigacct");
          const background = await s.script("return getComputedStyle(document.body).backgroundColor");
          // --bg is #0f141c in the dark palette.
          if (background !== "rgb(15, 20, 28)") throw new Error(`body background is ${background}`);
          await s.screenshot(join(artifacts, "status-dark.png"));
        },
        { GTK_THEME: "Adwaita:dark" },
      ),
  ],
  [
    "after the config is fixed, Try again shows the status without a restart",
    () =>
      withApp("fixed", BROKEN_CONFIG, async (s, { configPath }) => {
        await textOf(s, "[data-testid=problem-message]", "line 10");
        writeFileSync(configPath, GOOD_CONFIG);
        const button = await waitFor("the Try again button", () => s.find("[data-testid=problem] button"));
        await s.click(button);
        await textOf(s, "[data-testid=account]", "rigacct");
        await trayShows("Signed out", "signed-out");
      }),
  ],
  [
    "Quit in the tray menu ends the app",
    () =>
      withApp("quit", GOOD_CONFIG, async (s) => {
        await textOf(s, "[data-testid=account]", "rigacct");
        const dest = findTray();
        const pid = pidOf(dest);
        clickMenuItem(dest, "Quit");
        await waitFor(`the app (pid ${pid}) to exit`, () => {
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        });
      }),
  ],
];

let passed = 0;
let failed = 0;
for (const [name, run] of cases) {
  const started = Date.now();
  try {
    await run();
    passed++;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(e.stack ?? e).replaceAll("\n", "\n  ")}`);
  }
}
if (failed > 0) console.log(`\nlogs and screenshots: ${artifacts} (session.log, <case>.driver.log)`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
