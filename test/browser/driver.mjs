// driver.mjs: the bridge between a Go integration test and a page in headless Chromium.
//
//   node driver.mjs --chromium /usr/bin/chromium --profile DIR --url http://127.0.0.1:PORT/page.html
//
// It starts Chromium (never a browser of its own: playwright-core only drives the given
// executable), opens the page, waits for window.harness, then reads one JSON request a line
// on stdin and answers one JSON line on stdout:
//   {"id": 1, "call": "login", "args": [{...}]}  ->  {"id": 1, "result": ...} or {"id": 1, "error": "..."}
// Everything else the page says comes as {"event": "console"|"pageerror"|"crash", "text": "..."}.
// Closing stdin closes the browser and ends the process.
import { chromium } from "playwright-core";
import readline from "node:readline";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
    options: {
        chromium: { type: "string", default: "/usr/bin/chromium" },
        profile: { type: "string" },
        url: { type: "string" },
        "extra-arg": { type: "string", multiple: true, default: [] },
    },
});
if (!opts.profile || !opts.url) {
    console.error("usage: node driver.mjs --chromium PATH --profile DIR --url URL");
    process.exit(2);
}

const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const context = await chromium.launchPersistentContext(opts.profile, {
    executablePath: opts.chromium,
    headless: true,
    args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--auto-select-desktop-capture-source=Entire screen",
        "--autoplay-policy=no-user-gesture-required",
        // The tests run in a network namespace with only lo: WebRTC must gather on loopback
        // (Chromium leaves loopback out of ICE unless told) and show plain addresses, not
        // mDNS names nothing here can resolve.
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        ...opts["extra-arg"],
    ],
    permissions: ["camera", "microphone"],
});
const page = context.pages()[0] ?? (await context.newPage());
page.on("console", (msg) => send({ event: "console", type: msg.type(), text: msg.text() }));
page.on("pageerror", (err) => send({ event: "pageerror", text: String(err?.stack ?? err) }));
page.on("crash", () => send({ event: "crash", text: "the page crashed" }));
page.on("requestfailed", (req) => send({ event: "requestfailed", text: `${req.method()} ${req.url()}: ${req.failure()?.errorText}` }));

try {
    await page.goto(opts.url);
    await page.waitForFunction(() => window.harness !== undefined, null, { timeout: 30000 });
} catch (err) {
    send({ event: "fatal", text: `page did not load: ${err}` });
    await context.close();
    process.exit(1);
}
send({ event: "ready", text: await context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent)) });

const lines = readline.createInterface({ input: process.stdin });
const pending = [];
for await (const line of lines) {
    if (!line.trim()) continue;
    let req;
    try {
        req = JSON.parse(line);
    } catch (err) {
        send({ event: "fatal", text: `bad request line: ${err}` });
        continue;
    }
    // Requests run concurrently: a long wait must not block a status query.
    pending.push(
        (async () => {
            try {
                let result;
                if (req.call) {
                    result = await page.evaluate(
                        async ([fn, args]) => {
                            const f = window.harness[fn];
                            if (typeof f !== "function") throw new Error(`no harness function ${fn}`);
                            return await f(...args);
                        },
                        [req.call, req.args ?? []],
                    );
                } else if (req.screenshot) {
                    await page.screenshot({ path: req.screenshot });
                } else {
                    throw new Error("request has neither call nor screenshot");
                }
                send({ id: req.id, result: result ?? null });
            } catch (err) {
                send({ id: req.id, error: String(err?.message ?? err) });
            }
        })(),
    );
}
await Promise.allSettled(pending);
await context.close();
