// A minimal W3C WebDriver client over fetch: just the calls the smoke test needs, so the E2E
// rig has no npm dependencies of its own. Errors carry the driver's error code and message.

import { spawnSync } from "node:child_process";

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export class WebDriverError extends Error {}

async function wd(base, method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(60_000),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    const v = json.value ?? {};
    throw new WebDriverError(`${method} ${path}: ${v.error ?? response.status}: ${v.message ?? ""}`);
  }
  return json.value;
}

/** Whether the driver at `base` answers. */
export async function driverReady(base) {
  const response = await fetch(`${base}/status`, { signal: AbortSignal.timeout(2_000) });
  return response.ok;
}

/** Starts a session on the Tauri app at `application` (an absolute path to its binary). */
export async function newSession(base, application) {
  const created = await wd(base, "POST", "/session", {
    capabilities: { alwaysMatch: { "tauri:options": { application } } },
  });
  const id = created.sessionId;
  const s = (method, path, body) => wd(base, method, `/session/${id}${path}`, body);
  return {
    title: () => s("GET", "/title"),
    script: (script) => s("POST", "/execute/sync", { script, args: [] }),
    find: async (css) => (await s("POST", "/element", { using: "css selector", value: css }))[ELEMENT],
    text: (el) => s("GET", `/element/${el}/text`),
    click: (el) => s("POST", `/element/${el}/click`, {}),
    screenshot: async (file) => {
      // Let WebKit paint what the DOM already holds, or the shot can show the previous frame.
      await s("POST", "/execute/async", {
        script:
          "const done = arguments[arguments.length - 1];" +
          "requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
        args: [],
      });
      // The shot is cut from the X display at the window's rectangle, as a person's screenshot
      // tool takes it, not with WebDriver's Take Screenshot: WebKitGTK 2.50 never answers that
      // for a page drawn without accelerated compositing (the app's mode, src-tauri/src/window.rs)
      // that has nothing left to draw. Shots are for people reading the artifacts; no test
      // reads them.
      const { x, y, width, height } = await s("GET", "/window/rect");
      const crop = `${width}x${height}+${Math.max(0, x)}+${Math.max(0, y)}`;
      const shot = spawnSync("import", ["-window", "root", "-crop", crop, "+repage", file], {
        stdio: ["ignore", "ignore", "pipe"],
        timeout: 30_000,
      });
      if (shot.status !== 0) throw new Error(`import could not capture the display: ${shot.error ?? shot.stderr}`);
    },
    close: () => wd(base, "DELETE", `/session/${id}`),
  };
}

/** Polls `probe` until it returns a truthy value or `ms` pass; the last error explains a timeout. */
export async function waitFor(what, probe, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
}

/** Waits until the element matching `css` shows `expected` in its text, and returns the text. */
export async function textOf(session, css, expected) {
  return waitFor(`${css} to show ${JSON.stringify(expected)}`, async () => {
    const text = await session.text(await session.find(css));
    if (!text.includes(expected)) throw new Error(`${css} shows ${JSON.stringify(text)}`);
    return text;
  });
}
