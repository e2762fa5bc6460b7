// End-to-end smoke test of the real tray app, driven over the W3C WebDriver protocol.
//
// run.sh builds the app, the CLI and the rig, starts the rig (IdP and Snowflake front), Xvfb
// (and a tray host), and runs this file inside a private D-Bus session that has an unlocked
// gnome-keyring. For each case this file writes a config (or uses the rig's), starts
// tauri-driver with SNOWGATE_CONFIG, a private XDG_RUNTIME_DIR (where the app's broker puts its
// control socket) and a private data dir (tauri-driver hands its environment to
// WebKitWebDriver, which hands it to the app), opens a session on the debug binary, and checks
// what the window shows (webdriver.mjs), what the tray shows (tray.mjs) and what the snowgate
// CLI hears from the app's broker. Screenshots go to the artifacts directory, never into the
// source tree.
//
// The team-mode case runs two apps at once, one per person, against the rig's team server: the
// first in this file's D-Bus session, the second with a D-Bus session (and an unlocked
// gnome-keyring) of its own, each with its own runtime dir, data dir and config.
//
// Usage: node smoke.mjs <app binary> <artifacts dir> <scratch dir>
// Environment (set by run.sh): TAURI_DRIVER, SNOWGATE_E2E_CLI (the snowgate binary),
// SNOWGATE_E2E_RIG_DIR (the running rig's directory, started with --team), SNOWGATE_E2E_BROWSER
// (the $BROWSER script that signs in at the rig's IdP, as $SNOWGATE_E2E_USER when the app's
// environment has it). SNOWGATE_E2E_ONLY=<text> (passed through run.sh) runs only the cases
// whose name contains the text.

import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  SIGNED_OUT_MENU,
  clickMenuItem,
  findTray,
  menuLabels,
  pidOf,
  signedInMenu,
  trayHas,
  trayShows,
} from "./tray.mjs";
import { driverReady, newSession, textOf, waitFor } from "./webdriver.mjs";

const [app, artifacts, scratch] = process.argv.slice(2);
if (!app || !artifacts || !scratch) {
  console.error("usage: node smoke.mjs <app binary> <artifacts dir> <scratch dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const TAURI_DRIVER = process.env.TAURI_DRIVER ?? "tauri-driver";
const CLI = process.env.SNOWGATE_E2E_CLI;
const RIG_DIR = process.env.SNOWGATE_E2E_RIG_DIR;
const BROWSER = process.env.SNOWGATE_E2E_BROWSER;

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

// Starts an unlocked gnome-keyring on the session bus this shell runs on (its files under
// $KEYRING_HOME), as run.sh does for the test's own session, then runs its arguments.
const KEYRING_THEN_EXEC = `
printf pw | HOME="$KEYRING_HOME" XDG_DATA_HOME="$KEYRING_HOME/data" XDG_RUNTIME_DIR="$KEYRING_HOME/run" \\
  gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
exec "$@"`;

/**
 * The command that runs tauri-driver with `args`: as it is, or with `ownBus`, in a D-Bus session
 * of its own (dbus-run-session) that has an unlocked gnome-keyring with its files below `home`,
 * so the app it starts shares no bus, keyring or tray with the other apps.
 */
function driverCommand(args, { ownBus, home }) {
  if (!ownBus) return [TAURI_DRIVER, args];
  const keyring = join(home, "keyring");
  mkdirSync(join(keyring, "data"), { recursive: true });
  mkdirSync(join(keyring, "run"), { recursive: true, mode: 0o700 });
  return [
    "dbus-run-session",
    ["--", "env", `KEYRING_HOME=${keyring}`, "sh", "-c", KEYRING_THEN_EXEC, "driver", TAURI_DRIVER, ...args],
  ];
}

/**
 * Runs `body(session, { configPath, home, env })` against a fresh app and stops the app and its
 * driver afterwards. The app reads `config` (text written to a file of its own) or the file
 * at `configPath`, and runs with a private XDG_RUNTIME_DIR and data dir; `env` adds to or
 * overrides its environment. `before(env)` runs before the app starts, with the same
 * environment, and may return a function that `withApp` calls at the end. With `ownBus` the app
 * gets a D-Bus session and an unlocked gnome-keyring of its own (see `driverCommand`).
 */
async function withApp(name, { config = GOOD_CONFIG, configPath, env: extraEnv = {}, before, ownBus = false } = {}, body) {
  const home = join(scratch, name);
  mkdirSync(home, { recursive: true });
  if (!configPath) {
    configPath = join(home, "config.toml");
    writeFileSync(configPath, config);
  }
  const runtimeDir = join(home, "run");
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  const env = {
    ...process.env,
    SNOWGATE_CONFIG: configPath,
    SNOWGATE_DATA_DIR: join(home, "data"),
    XDG_RUNTIME_DIR: runtimeDir, // the broker's control socket goes below it
    XDG_CONFIG_HOME: join(home, "xdg-config"),
    XDG_DATA_HOME: join(home, "xdg-data"),
    XDG_CACHE_HOME: join(home, "xdg-cache"), // the tray icon's PNG is written below it
    RUST_LOG: "info",
    ...extraEnv,
  };

  const [port, nativePort] = [await freePort(), await freePort()];
  const log = createWriteStream(join(artifacts, `${name}.driver.log`));
  let driver;
  let s;
  let after;
  try {
    after = await before?.(env);
    const [command, args] = driverCommand(["--port", String(port), "--native-port", String(nativePort)], { ownBus, home });
    driver = spawn(command, args, {
      env,
      detached: true, // its own process group, so the app it starts goes down with it
      stdio: ["ignore", "pipe", "pipe"],
    });
    driver.stdout.pipe(log);
    driver.stderr.pipe(log);
    const base = `http://127.0.0.1:${port}`;
    await waitFor("tauri-driver to listen", () => driverReady(base), 15_000);
    s = await newSession(base, app);
    // The first window of a fresh machine can take a while (WebKit's and fontconfig's caches
    // are cold, the broker opens its ledger and keyring), so the window gets a longer budget
    // to show the broker's first status; each step of the case then has the usual one.
    await waitFor(
      "the window to show the broker's first status",
      async () => {
        await s.find(".shell");
        const loading = await s.script('return document.querySelector(".loading") !== null;');
        return !loading;
      },
      60_000,
    );
    await body(s, { configPath, home, env });
  } finally {
    if (s) await s.close().catch(() => {});
    if (driver) stopGroup(driver);
    await after?.();
  }
}

/** Stops a child started with `detached: true`, and everything in its process group. */
function stopGroup(child) {
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    // already gone
  }
}

/** The control socket of the broker that runs with `env`. */
function controlSocket(env) {
  return join(env.XDG_RUNTIME_DIR, "snowgate", "control.sock");
}

/** Runs the snowgate CLI with `env`; returns its stdout, or throws with its stderr. */
function snowgate(env, ...args) {
  const r = spawnSync(CLI, args, { env, encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) {
    throw new Error(`snowgate ${args.join(" ")} exited with ${r.status}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** `snowgate status --json`, as the CLI hears it from the broker. */
function cliStatus(env) {
  return JSON.parse(snowgate(env, "status", "--json"));
}

/**
 * Starts the real Python connector (tests/clients/python_client.py, scenario `hold`) against the
 * gateway at `gateway` as `user` with `role`, querying every 0.3 s; the child process, with its
 * stdout lines collected in `lines`. Its stderr goes to <name>.python.log.
 */
function pythonClient(name, gateway, user, role) {
  const client = spawn(
    join(process.cwd(), ".rig/venv-client/bin/python"),
    ["tests/clients/python_client.py", "--url", `http://${gateway}`, "--account", "snowgate-dev",
      "--user", user, "--role", role, "--scenario", "hold", "--interval", "0.3", "--duration", "90"],
    { env: { ...process.env, RIG_SF_PASSWORD: "any-password", PYTHONUNBUFFERED: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  client.lines = [];
  client.stdout.on("data", (d) => client.lines.push(...d.toString().split("\n").filter(Boolean)));
  client.stderr.pipe(createWriteStream(join(artifacts, `${name}.python.log`)));
  return client;
}

/**
 * Starts the snowgate CLI with `env` without waiting for it; resolves with its exit code,
 * stdout and stderr once it exits.
 */
function snowgateLater(env, ...args) {
  const child = spawn(CLI, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { pid: child.pid, done };
}

/** Sets the value of the input, textarea or select with `data-testid=testid` as typing would. */
async function fill(s, testid, value) {
  const done = await s.script(`
    const el = document.querySelector('[data-testid="${testid}"]');
    if (!el) return false;
    const proto = Object.getPrototypeOf(el);
    Object.getOwnPropertyDescriptor(proto, "value").set.call(el, ${JSON.stringify(value)});
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
    return true;`);
  if (!done) throw new Error(`no element with data-testid=${testid}`);
}

/** Clicks the element matching `css` once it is there. */
async function clickOn(s, css) {
  const el = await waitFor(css, () => s.find(css));
  await s.click(el);
}

/** Opens a screen from the sidebar ("sign-in" or "status") and waits until it is current. */
async function openScreen(s, id, label) {
  await clickOn(s, `nav [data-screen=${id}]`);
  await textOf(s, "nav [aria-current=page]", label);
}

function expect(what, actual, expected) {
  if (actual !== expected) {
    throw new Error(`${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}

/**
 * Starts a D-Bus session bus with no services to activate, so no Secret Service can appear on
 * it; returns its address and a function that stops it.
 */
async function busWithoutKeyring(dir) {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, "bus.conf");
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${join(dir, "bus")}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
  );
  const bus = spawn("dbus-daemon", [`--config-file=${config}`, "--nofork", "--print-address=1"], {
    detached: true,
    stdio: ["ignore", "pipe", "ignore"],
  });
  let out = "";
  bus.stdout.on("data", (chunk) => (out += chunk));
  const address = await waitFor("the private D-Bus to start", () => out.includes("\n") && out.trim(), 10_000);
  return { address, stop: () => stopGroup(bus) };
}

// ---------------------------------------------------------------------------------------------
// The cases.


/** The app's WebKit web processes (children of `pid`), from /proc. */
function webProcesses(pid) {
  return webkitChildren(pid, "WebKitWebProcess");
}

/** PSS in KiB of the process's mappings of WebKit's and JavaScriptCore's libraries. */
function webkitLibraryPssKb(pid) {
  let kb = 0;
  let counting = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) counting = /lib(webkit2gtk|javascriptcoregtk)-/.test(line);
    const pss = /^Pss:\s+(\d+) kB/.exec(line);
    if (counting && pss) kb += Number(pss[1]);
  }
  return kb;
}

/** The value of `name` in process `pid`'s environment, or undefined. */
function environOf(pid, name) {
  const entry = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((e) => e.startsWith(`${name}=`));
  return entry?.slice(name.length + 1);
}

/** The app's children (from /proc) whose program is named `name`: WebKit's helper processes. */
function webkitChildren(pid, name) {
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const argv0 = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0")[0];
      if (ppid === pid && argv0.split("/").at(-1) === name) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

/** Closes the app's window as a window manager does (tests/e2e/close_window.py). */
function closeWindow() {
  const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
  const r = spawnSync(join(root, ".rig/venv-e2e/bin/python"), [join(root, "tests/e2e/close_window.py")], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`close_window.py exited ${r.status}: ${r.stderr}`);
}

/** How many first frames the app has logged so far (the window's UI, each time it is created). */
function paintsLogged(name) {
  return (readFileSync(join(artifacts, `${name}.driver.log`), "utf8").match(/painted its first frame/g) ?? []).length;
}

const cases = [
  [
    "the Status screen shows the configured account, IdP, gateway and role",
    () =>
      withApp("status", {}, async (s) => {
        // Signed out, the window opens on the Sign in screen; Status is one click away.
        await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
        await openScreen(s, "status", "Status");
        await textOf(s, "[data-testid=account]", "rigacct");
        await textOf(s, "[data-testid=roles]", "ANALYST");
        await textOf(s, "[data-testid=issuer]", "https://127.0.0.1:1");
        await textOf(s, "[data-testid=gateway]", "127.0.0.1:8765");
        await textOf(s, "[data-testid=sign-in]", "Signed out");
        const title = await s.title();
        if (title !== "Snowgate") throw new Error(`window title is ${JSON.stringify(title)}`);
        await s.screenshot(join(artifacts, "status.png"));
        desktopShot("desktop.png");
        const tray = await trayShows("Signed out", "signed-out");
        expect("the tray menu", menuLabels(tray), SIGNED_OUT_MENU);
      }),
  ],
  [
    "a broken config shows the error with its file, line and key",
    () =>
      withApp("broken", { config: BROKEN_CONFIG }, async (s, { configPath }) => {
        const text = await textOf(s, "[data-testid=problem-message]", configPath);
        for (const part of ["line 10", "key `snowflake.colour`", "unknown key `colour`"]) {
          if (!text.includes(part)) throw new Error(`error text lacks ${JSON.stringify(part)}: ${text}`);
        }
        await textOf(s, "[data-testid=problem]", "Try again");
        await s.screenshot(join(artifacts, "config-error.png"));
        desktopShot("desktop-config-error.png");
        const tray = await trayShows("Config error: open Snowgate for details", "error");
        const sign = tray.menu.find((item) => item.label === "Sign in");
        if (!sign || sign.enabled) throw new Error(`"Sign in" should be greyed out: ${JSON.stringify(tray.menu)}`);
      }),
  ],
  [
    "the Sign in and Status screens follow a dark desktop theme",
    () =>
      withApp("dark", { env: { GTK_THEME: "Adwaita:dark" } }, async (s) => {
        await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
        const background = await s.script("return getComputedStyle(document.body).backgroundColor");
        // --bg is #0f141c in the dark palette.
        if (background !== "rgb(15, 20, 28)") throw new Error(`body background is ${background}`);
        await s.screenshot(join(artifacts, "sign-in-dark.png"));
        await openScreen(s, "status", "Status");
        await textOf(s, "[data-testid=account]", "rigacct");
        await s.screenshot(join(artifacts, "status-dark.png"));
      }),
  ],
  [
    "after the config is fixed, Try again starts the broker without a restart",
    () =>
      withApp("fixed", { config: BROKEN_CONFIG }, async (s, { configPath, env }) => {
        await textOf(s, "[data-testid=problem-message]", "line 10");
        if (existsSync(controlSocket(env))) throw new Error("a broker that did not start serves the control socket");
        writeFileSync(configPath, GOOD_CONFIG);
        await clickOn(s, "[data-testid=problem] button");
        await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
        await openScreen(s, "status", "Status");
        await textOf(s, "[data-testid=account]", "rigacct");
        await trayShows("Signed out", "signed-out");
        expect("the account the CLI hears", cliStatus(env).account, "rigacct");
      }),
  ],
  [
    "with tool secrets required, the window asks before a tool secret is handed out: Allow gives it, Deny refuses",
    () =>
      withApp(
        "confirm",
        { config: `${GOOD_CONFIG}\n[gateway]\nlisten = "127.0.0.1:8765"\nrequire_tool_secrets = true\n` },
        async (s, { env }) => {
          await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
          // A program of this user asks the broker for a tool's secret over the control socket.
          const allowed = snowgateLater(env, "tool-secret", "create", "dbt");
          const ask = await textOf(s, "[data-testid=confirm-ask]", 'a connection secret for tool "dbt"');
          // The question names the asking process: the snowgate CLI, by its path and pid.
          for (const part of [CLI, `(process ${allowed.pid})`, "Allow this request?"]) {
            if (!ask.includes(part)) throw new Error(`the question lacks ${JSON.stringify(part)}: ${ask}`);
          }
          await s.screenshot(join(artifacts, "confirm.png"));
          await clickOn(s, "[data-testid=confirm-allow]");
          const a = await allowed.done;
          expect("the allowed request's exit code", a.code, 0);
          if (!/^\S{20,}\n$/.test(a.stdout)) throw new Error(`no secret on stdout: ${JSON.stringify(a.stdout)}`);
          await waitFor("the question to go", async () => {
            const left = await s.script('return document.querySelectorAll("[data-testid=confirm-ask]").length;');
            if (left !== 0) throw new Error(`${left} question(s) still shown`);
            return true;
          });
          const listed = snowgate(env, "tool-secret", "list");
          if (!listed.includes("dbt")) throw new Error(`the allowed secret is not listed: ${listed}`);

          const denied = snowgateLater(env, "tool-secret", "create", "notebook");
          await textOf(s, "[data-testid=confirm-ask]", 'a connection secret for tool "notebook"');
          await clickOn(s, "[data-testid=confirm-deny]");
          const d = await denied.done;
          if (d.code === 0) throw new Error(`the denied request succeeded: ${d.stdout}`);
          expect("the denied request's stdout", d.stdout, "");
          const sentence = 'a connection secret for tool "notebook" was denied in the Snowgate tray; ask again and choose Allow if you started this';
          if (!d.stderr.includes(sentence)) throw new Error(`the refusal says ${JSON.stringify(d.stderr)}`);
          if (snowgate(env, "tool-secret", "list").includes("notebook")) throw new Error("the denied secret was created");
        },
      ),
  ],
  [
    "with `snowgate up` running the app says so, and Try again takes over once it stops",
    () => {
      let up;
      return withApp(
        "already-running",
        {
          before: async (env) => {
            const log = createWriteStream(join(artifacts, "already-running.up.log"));
            up = spawn(CLI, ["up"], { env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
            up.stdout.pipe(log);
            up.stderr.pipe(log);
            await waitFor("snowgate up to serve its control socket", () => existsSync(controlSocket(env)));
            return () => stopGroup(up);
          },
        },
        async (s, { env }) => {
          const text = await textOf(s, "[data-testid=problem-message]", "already running for this user");
          for (const part of ["(snowgate up?)", "stop it, then choose Try again", controlSocket(env)]) {
            if (!text.includes(part)) throw new Error(`error text lacks ${JSON.stringify(part)}: ${text}`);
          }
          await textOf(s, "[data-testid=problem]", "Another Snowgate broker is running");
          await s.screenshot(join(artifacts, "already-running.png"));
          await trayShows("Another Snowgate broker is running (snowgate up?)", "error");

          stopGroup(up);
          await waitFor("snowgate up to stop", () => up.exitCode !== null || up.signalCode !== null);
          await clickOn(s, "[data-testid=problem] button");
          await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
          await trayShows("Signed out", "signed-out");
          // The CLI now reaches the app's broker through the same socket.
          expect("the sign-in state the CLI hears", cliStatus(env).sign_in.state, "signed_out");
        },
      );
    },
  ],
  [
    "sign in as alice through the browser and the real IdP; the CLI talks to the app; sign out",
    () =>
      withApp(
        "sign-in",
        { configPath: join(RIG_DIR, "config.toml"), env: { BROWSER } },
        async (s, { env }) => {
          const issuer = readFileSync(join(RIG_DIR, "issuer"), "utf8").trim();
          await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
          await s.screenshot(join(artifacts, "sign-in.png"));
          let tray = await trayShows("Signed out", "signed-out");
          expect("the tray menu", menuLabels(tray), SIGNED_OUT_MENU);
          let status = cliStatus(env);
          expect("the issuer the CLI hears", status.issuer.replace(/\/$/, ""), issuer.replace(/\/$/, ""));
          expect("the sign-in state the CLI hears", status.sign_in.state, "signed_out");

          // A device code: shown large with where to enter it and a countdown; then cancelled.
          await clickOn(s, "[data-testid=sign-in-device]");
          const code = await textOf(s, "[data-testid=user-code]", "");
          if (!/^[A-Z0-9-]{6,}$/.test(code.trim())) throw new Error(`the device code is ${JSON.stringify(code)}`);
          await textOf(s, "[data-testid=verification-uri]", issuer);
          await textOf(s, "[data-testid=countdown]", "Code expires in");
          await s.screenshot(join(artifacts, "sign-in-device.png"));
          await clickOn(s, "[data-testid=sign-in-cancel]");
          await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");

          // The browser: $BROWSER signs in at the IdP as alice and follows the redirect.
          await clickOn(s, "[data-testid=sign-in-browser]");
          await textOf(s, "[data-testid=who]", "Signed in as alice");
          await textOf(s, "[data-testid=groups]", "analysts");
          await textOf(s, "[data-testid=who-name]", "Alice Analyst");
          await textOf(s, "[data-testid=vault]", "OS keyring");
          await textOf(s, "nav [aria-current=page]", "Status");
          await s.screenshot(join(artifacts, "status-signed-in.png"));
          tray = await trayShows("Signed in as alice", "idle");
          expect("the tray menu", menuLabels(tray), signedInMenu("alice"));

          status = cliStatus(env);
          expect("the sign-in state the CLI hears", status.sign_in.state, "signed_in");
          expect("the subject the CLI hears", status.sign_in.subject, "alice");
          const who = snowgate(env, "whoami");
          for (const part of ["alice", "analysts"]) {
            if (!who.includes(part)) throw new Error(`snowgate whoami lacks ${part}: ${who}`);
          }
          expect("the vault", JSON.parse(snowgate(env, "whoami", "--json")).vault, "os_keyring");

          // Sign out in the window.
          await clickOn(s, "[data-testid=sign-out]");
          await textOf(s, "[data-testid=sign-in-notice]", "Signed out");
          await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
          await trayShows("Signed out", "signed-out");
          expect("the sign-in state the CLI hears", cliStatus(env).sign_in.state, "signed_out");

          // The tray's "Sign in" opens the window on the browser sign-in; "Sign out" ends it.
          clickMenuItem(findTray(), "Sign in");
          await textOf(s, "[data-testid=who]", "Signed in as alice");
          await trayShows("Signed in as alice", "idle");
          clickMenuItem(findTray(), "Sign out");
          await trayShows("Signed out", "signed-out");
          await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
          expect("the sign-in state the CLI hears", cliStatus(env).sign_in.state, "signed_out");
        },
      ),
  ],
  [
    "without a keyring, sign-in says why and works with tokens in memory only",
    () =>
      withApp(
        "no-keyring",
        {
          configPath: join(RIG_DIR, "config.toml"),
          env: { BROWSER },
          before: async (env) => {
            // The app gets a session bus of its own with no Secret Service (and no tray host).
            const bus = await busWithoutKeyring(join(scratch, "no-keyring", "bus"));
            env.DBUS_SESSION_BUS_ADDRESS = bus.address;
            return bus.stop;
          },
        },
        async (s, { env }) => {
          await clickOn(s, "[data-testid=sign-in-browser]");
          await textOf(s, "[data-testid=sign-in-error-message]", "can't reach the OS keyring");
          await textOf(s, "[data-testid=session-only]", "Keep tokens in memory only");
          await s.screenshot(join(artifacts, "sign-in-no-keyring.png"));

          // Memory-only is ticked once offered; the same button now signs in without the keyring.
          await clickOn(s, "[data-testid=sign-in-browser]");
          await textOf(s, "[data-testid=who]", "Signed in as alice");
          await textOf(s, "[data-testid=vault]", "in memory only");
          expect("the vault", JSON.parse(snowgate(env, "whoami", "--json")).vault, "session_only");
          await clickOn(s, "[data-testid=sign-out]");
          await textOf(s, "[data-testid=sign-in-notice]", "Signed out");
        },
      ),
  ],
  [
    "the tray counts down the user's grants, shows pending requests, and asks an approver for attention",
    () =>
      withApp(
        "tray-grants",
        { configPath: join(RIG_DIR, "config.toml"), env: { BROWSER } },
        async (s, { env }) => {
          const browserUser = join(scratch, "browser-user");
          try {
            // The window listens for the tray's sign-in once it shows its sign-in choices.
            await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
            await trayShows("Signed out", "signed-out");
            clickMenuItem(findTray(), "Sign in");
            let tray = await trayShows("Signed in as alice", "idle");
            expect("the tray menu", menuLabels(tray), signedInMenu("alice"));

            // An auto-approved grant: the icon turns active and the menu counts down.
            snowgate(env, "request", "ANALYST", "--duration", "30m", "--reason", "tray e2e");
            await trayHas("active", /^ANALYST — (29|30) min left$/);
            // A request that waits for a manager is listed as waiting.
            snowgate(env, "request", "ENGINEER", "--duration", "2h", "--reason", "pipeline fix");
            tray = await trayHas("active", /^ANALYST — (29|30) min left$/, "ENGINEER — waiting for approval");
            desktopShot("desktop-tray-active.png");
            for (const label of ["Request access…", "Approvals (0)", "Copy connection settings"]) {
              const item = tray.menu.find((i) => i.label === label);
              if (!item?.enabled) throw new Error(`${label} should be enabled: ${JSON.stringify(tray.menu)}`);
            }
            // The informational lines are not buttons.
            const line = tray.menu.find((i) => i.label?.startsWith("ANALYST"));
            if (line.enabled) throw new Error(`the grant line should be greyed out: ${JSON.stringify(line)}`);

            // "Request access…" and "Copy connection settings" do their thing without upsetting
            // the broker.
            clickMenuItem(findTray(), "Request access…");
            clickMenuItem(findTray(), "Copy connection settings");
            expect("the sign-in state the CLI hears", cliStatus(env).sign_in.state, "signed_in");

            // Bob, a manager, signs in on this machine: alice's ENGINEER request waits for him.
            clickMenuItem(findTray(), "Sign out");
            await trayShows("Signed out", "signed-out");
            writeFileSync(browserUser, "bob");
            // "Request access…" above put the window on that screen, and which of that navigation
            // and the sign-out's status reaches the window last is not fixed: open Sign in from
            // the sidebar, as a person would, so the wait is for a state, not for an ordering.
            await openScreen(s, "sign-in", "Sign in");
            await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
            clickMenuItem(findTray(), "Sign in");
            tray = await trayHas("attention", "Signed in as bob", "Approvals (1)");
            if (tray.menu.some((i) => i.label?.startsWith("ANALYST"))) {
              throw new Error(`alice's grants show in bob's tray: ${JSON.stringify(tray.menu)}`);
            }
            desktopShot("desktop-tray-attention.png");
            clickMenuItem(findTray(), "Approvals (1)");
            clickMenuItem(findTray(), "Sign out");
            await trayShows("Signed out", "signed-out");
          } finally {
            rmSync(browserUser, { force: true });
          }
        },
      ),
  ],
  [
    "alice requests a role in the window, bob approves it, a Python session shows and giving up ends it",
    () =>
      withApp(
        "access-flow",
        { configPath: join(RIG_DIR, "config.toml"), env: { BROWSER } },
        async (s, { env }) => {
          const browserUser = join(scratch, "browser-user");
          let client;
          try {
            rmSync(browserUser, { force: true });
            await clickOn(s, "[data-testid=sign-in-browser]");
            await textOf(s, "[data-testid=who]", "Signed in as alice");

            // 1. Request ENGINEER (it needs a manager) with a reason, in the window.
            await clickOn(s, "[data-testid=nav-request]");
            await waitFor("the role picker to list ENGINEER", async () =>
              (await s.text(await s.find("[data-testid=request-role]"))).includes("ENGINEER"),
            );
            await fill(s, "request-role", "ENGINEER");
            await fill(s, "request-duration", "5h");
            await clickOn(s, "[data-testid=request-submit]");
            // Over the role's 4h maximum and without a reason: refused inline, nothing sent.
            await textOf(s, "[data-testid=request-duration-error]", "4h");
            await textOf(s, "[data-testid=request-reason-error]", "reason is required");
            expect("grants after a refused form", JSON.parse(snowgate(env, "grants", "--json")).length, 0);
            await fill(s, "request-duration", "1h");
            await fill(s, "request-reason", "Fix the nightly pipeline");
            await s.screenshot(join(artifacts, "request-access.png"));
            await clickOn(s, "[data-testid=request-submit]");
            await textOf(s, "[data-testid=request-result]", "waits for an approver");
            const id = (await textOf(s, "[data-testid=request-result-id]", "")).trim();
            expect("the state the CLI hears", JSON.parse(snowgate(env, "grants", "--json"))[0].state, "pending");

            // 2. Bob approves in the window, through a fresh approver sign-in in the browser.
            writeFileSync(browserUser, "bob");
            await clickOn(s, "[data-testid=nav-approvals]");
            await textOf(s, `[data-testid=approval-${id}]`, "Fix the nightly pipeline");
            await s.screenshot(join(artifacts, "approvals.png"));
            await fill(s, `approval-comment-${id}`, "ok for today");
            await clickOn(s, `[data-testid=approve-${id}]`);
            await textOf(s, "[data-testid=approvals-notice]", "pprove");
            rmSync(browserUser, { force: true });
            const approved = JSON.parse(snowgate(env, "grants", "--json")).find((g) => g.id === id);
            expect("the grant's state after bob's approval", approved.state, "active");
            if (!JSON.stringify(approved.approvals).includes("bob")) {
              throw new Error(`the approval is not bob's: ${JSON.stringify(approved.approvals)}`);
            }

            // 3. The countdown runs in My access.
            await clickOn(s, "[data-testid=nav-access]");
            const first = await textOf(s, `[data-testid=countdown-${id}]`, "left");
            await waitFor("the countdown to tick", async () => (await s.text(await s.find(`[data-testid=countdown-${id}]`))) !== first, 5_000);
            await s.screenshot(join(artifacts, "my-access.png"));

            // 4. A real Python connector connects through the gateway and shows in Sessions.
            const gateway = cliStatus(env).gateway.listen[0];
            client = pythonClient("access-flow", gateway, "alice", "ENGINEER");
            const { lines } = client;
            await waitFor("the Python client to run a query", () => lines.some((l) => l.includes('"ok": true')), 30_000);
            await clickOn(s, "[data-testid=nav-sessions]");
            const row = await waitFor("the session in the Sessions screen", async () => {
              const rows = JSON.parse(snowgate(env, "sessions", "--json"));
              if (rows.length !== 1) return null;
              await textOf(s, `[data-testid=session-${rows[0].id}]`, "ENGINEER");
              return rows[0];
            });
            await s.screenshot(join(artifacts, "sessions.png"));

            // 5. Alice gives the role up: the session disappears and the tool is told why.
            await clickOn(s, "[data-testid=nav-access]");
            await clickOn(s, `[data-testid=giveup-${id}]`);
            await textOf(s, "[data-testid=access-notice]", "gave up");
            await clickOn(s, "[data-testid=nav-sessions]");
            await textOf(s, "[data-testid=sessions-empty]", "");
            expect("sessions the CLI hears", JSON.parse(snowgate(env, "sessions", "--json")).length, 0);
            await waitFor(`the tool to be refused after session ${row.id} ended`, () =>
              lines.some((l) => l.includes('"ok": false')), 15_000);
            expect("the grant's state", JSON.parse(snowgate(env, "grants", "--json"))[0].state, "revoked");

            // The audit screen verifies the chain the flow wrote.
            await clickOn(s, "[data-testid=nav-audit]");
            await clickOn(s, "[data-testid=audit-verify]");
            await textOf(s, "[data-testid=audit-verify-result]", "");
            await s.screenshot(join(artifacts, "audit.png"));
            await clickOn(s, "[data-testid=nav-connect]");
            await textOf(s, "[data-testid=snippet-python]", gateway.split(":").pop());
            await s.screenshot(join(artifacts, "connect.png"));
          } finally {
            rmSync(browserUser, { force: true });
            client?.kill("SIGKILL");
          }
        },
      ),
  ],
  [
    "team mode: alice requests in her app, bob approves in his as it arrives over SSE, and his revocation ends her session",
    () =>
      withApp(
        "team-alice",
        { configPath: join(RIG_DIR, "config-team-alice.toml"), env: { BROWSER, SNOWGATE_E2E_USER: "alice" } },
        async (a, { env: aliceEnv, configPath }) =>
          withApp(
            "team-bob",
            { configPath: join(RIG_DIR, "config-team-bob.toml"), env: { BROWSER, SNOWGATE_E2E_USER: "bob" }, ownBus: true },
            async (b, { env: bobEnv }) => {
              const server = /^server = "([^"]+)"$/m.exec(readFileSync(configPath, "utf8"))[1];
              let client;
              try {
                // 1. Each signs in in their own app; each broker follows the team server's events.
                const signIn = async (s, env, who) => {
                  await clickOn(s, "[data-testid=sign-in-browser]");
                  await textOf(s, "[data-testid=who]", `Signed in as ${who}`);
                  await textOf(s, "[data-testid=team-server]", server);
                  const status = await waitFor(`${who}'s broker to follow the team server's events`, () => {
                    const status = cliStatus(env);
                    return status.team?.events === "connected" && status;
                  });
                  // The window follows the stream's state too (it reads the status again).
                  await textOf(s, "[data-testid=team-state]", "Reachable; live updates on");
                  expect(`${who}'s mode`, status.mode, "team");
                  expect(`${who}'s subject`, status.sign_in.subject, who);
                  // The roles and their policy are the server's, read once the stream is open.
                  await waitFor(`${who}'s broker to know the server's roles`, () =>
                    JSON.parse(snowgate(env, "roles", "--json")).some((r) => r.name === "ENGINEER"),
                  );
                };
                await Promise.all([signIn(a, aliceEnv, "alice"), signIn(b, bobEnv, "bob")]);
                await a.screenshot(join(artifacts, "status-team.png"));
                await openScreen(b, "approvals", "Approvals");
                await textOf(b, "[data-testid=approvals-empty]", "Nothing waits for a decision");

                // 2. Alice requests ENGINEER (the server's role; it needs a manager) in her window.
                await clickOn(a, "[data-testid=nav-request]");
                await waitFor("the role picker to list ENGINEER", async () =>
                  (await a.text(await a.find("[data-testid=request-role]"))).includes("ENGINEER"),
                );
                await fill(a, "request-role", "ENGINEER");
                await fill(a, "request-duration", "1h");
                await fill(a, "request-reason", "Fix the nightly pipeline");
                await clickOn(a, "[data-testid=request-submit]");
                await textOf(a, "[data-testid=request-result]", "waits for an approver");
                const id = (await textOf(a, "[data-testid=request-result-id]", "")).trim();
                await clickOn(a, "[data-testid=nav-access]");
                await textOf(a, `[data-testid=pending-${id}]`, "ENGINEER");

                // 3. The request shows in bob's open Approvals screen by itself (the team server's
                // event stream), and he approves it as himself: no approver sign-in.
                await textOf(b, `[data-testid=approval-${id}]`, "Fix the nightly pipeline");
                await textOf(b, `[data-testid=approval-requester-${id}]`, "alice");
                await b.screenshot(join(artifacts, "approvals-team.png"));
                await fill(b, `approval-comment-${id}`, "ok for today");
                await clickOn(b, `[data-testid=approve-${id}]`);
                await textOf(b, "[data-testid=approvals-notice]", "Approved ENGINEER");
                if (await b.script(`return document.querySelector('[data-testid="approver-url"]') !== null`)) {
                  throw new Error("an approver sign-in was started in team mode");
                }
                const approved = JSON.parse(snowgate(aliceEnv, "grants", "--json")).find((g) => g.id === id);
                expect("the grant's state after bob's approval", approved?.state, "active");
                if (!JSON.stringify(approved.approvals).includes("bob")) {
                  throw new Error(`the approval is not bob's: ${JSON.stringify(approved.approvals)}`);
                }

                // 4. Alice's open My access screen shows the grant active, counting down.
                const first = await textOf(a, `[data-testid=countdown-${id}]`, "left");
                await waitFor(
                  "the countdown to tick",
                  async () => (await a.text(await a.find(`[data-testid=countdown-${id}]`))) !== first,
                  5_000,
                );
                await a.screenshot(join(artifacts, "my-access-team.png"));

                // 5. Alice's Python connector logs in through her gateway with a token the server
                // minted, and its session shows in her Sessions screen.
                client = pythonClient("team", cliStatus(aliceEnv).gateway.listen[0], "alice", "ENGINEER");
                const { lines } = client;
                await waitFor("the Python client to run a query", () => lines.some((l) => l.includes('"ok": true')), 30_000);
                await clickOn(a, "[data-testid=nav-sessions]");
                const row = await waitFor("the session in alice's Sessions screen", async () => {
                  const rows = JSON.parse(snowgate(aliceEnv, "sessions", "--json"));
                  if (rows.length !== 1) return null;
                  await textOf(a, `[data-testid=session-${rows[0].id}]`, "ENGINEER");
                  return rows[0];
                });

                // 6. Bob revokes it among the active grants of other people; alice's session goes
                // from her open Sessions screen and her tool is refused.
                await textOf(b, `[data-testid=active-${id}]`, "ENGINEER");
                await fill(b, `approval-comment-${id}`, "pipeline fixed");
                await clickOn(b, `[data-testid=revoke-${id}]`);
                await textOf(b, "[data-testid=approvals-notice]", "Revoked ENGINEER");
                await textOf(a, "[data-testid=sessions-empty]", "");
                expect("sessions alice's CLI hears", JSON.parse(snowgate(aliceEnv, "sessions", "--json")).length, 0);
                await waitFor(`the tool to be refused after session ${row.id} ended`, () =>
                  lines.some((l) => l.includes('"ok": false')), 15_000);
                await waitFor("alice's grant to be revoked", () =>
                  JSON.parse(snowgate(aliceEnv, "grants", "--json")).find((g) => g.id === id)?.state === "revoked", 10_000);
              } finally {
                client?.kill("SIGKILL");
              }
            },
          ),
      ),
  ],
  [
    "closing the window ends its web view and WebKit's processes while the app stays in the tray; the tray opens it again",
    () =>
      withApp("reopen", {}, async (s, { env }) => {
        await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
        const dest = findTray();
        const pid = pidOf(dest);
        await waitFor("the window's WebKit web process", () => webProcesses(pid).length > 0);
        await waitFor("the first frame to be logged", () => paintsLogged("reopen") >= 1);
        const paints = paintsLogged("reopen");
        // The UI draws without GPU compositing (src-tauri/src/window.rs), which WebKit's web
        // process reads from its environment as it starts.
        for (const web of webProcesses(pid)) {
          expect(`WEBKIT_DISABLE_COMPOSITING_MODE in web process ${web}`, environOf(web, "WEBKIT_DISABLE_COMPOSITING_MODE"), "1");
        }
        if (webkitChildren(pid, "WebKitNetworkProcess").length === 0) throw new Error("no WebKit network process while the window was open");
        const openKb = webkitLibraryPssKb(pid);
        closeWindow();
        await waitFor("the web process to end once the window closed", () => webProcesses(pid).length === 0);
        // WebKit keeps its network process after the last web view; the app ends it.
        await waitFor("WebKit's network process to end once the window closed", () =>
          webkitChildren(pid, "WebKitNetworkProcess").length === 0, 10_000);
        // The pages of WebKit's code the window ran are handed back from the app's own process.
        await waitFor(`WebKit's library pages in the app (${openKb} KiB while open) to be released`, () =>
          webkitLibraryPssKb(pid) < openKb / 2, 15_000);
        process.kill(pid, 0); // still running
        if (!existsSync(controlSocket(env))) throw new Error("the broker stopped with the window");
        expect("the broker's sign-in after the window closed", cliStatus(env).sign_in?.state, "signed_out");
        clickMenuItem(dest, "Open Snowgate");
        await waitFor("a web process for the window opened again", () => webProcesses(pid).length > 0);
        await waitFor("the reopened window's UI to paint", () => paintsLogged("reopen") > paints);
        // The reopened window's UI ran its script and reported its first frame, with a fresh
        // network process.
        if (webkitChildren(pid, "WebKitNetworkProcess").length === 0) throw new Error("the reopened window has no network process");
      }),
  ],
  [
    "Quit in the tray menu ends the app and removes the control socket",
    () =>
      withApp("quit", {}, async (s, { env }) => {
        await textOf(s, "[data-testid=sign-in-choices]", "Sign in with your browser");
        if (!existsSync(controlSocket(env))) throw new Error("the app's broker serves no control socket");
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
        if (existsSync(controlSocket(env))) throw new Error("the control socket outlived the app");
      }),
  ],
];

let passed = 0;
let failed = 0;
// SNOWGATE_E2E_ONLY=<text> runs only the cases whose name contains it (for local iteration).
const only = process.env.SNOWGATE_E2E_ONLY;
for (const [name, run] of cases) {
  if (only && !name.includes(only)) continue;
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
