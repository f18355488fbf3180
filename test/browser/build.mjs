// build.mjs: bundles the test pages into dist/ with esbuild (scripts/test.sh runs it before
// the network namespace stage; the Go tests serve dist/ on 127.0.0.1).
import * as esbuild from "esbuild";
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "pkg"), { recursive: true });

const pages = ["matrixcall", "livekit", "rtcsession"];
await esbuild.build({
    entryPoints: [...pages, "e2ee-worker"].map((p) => join(here, "src", `${p}.js`)),
    outdir: dist,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    logLevel: "warning",
    define: { global: "globalThis" },
});
for (const p of pages) {
    await writeFile(
        join(dist, `${p}.html`),
        `<!doctype html><html><head><meta charset="utf-8"><title>${p}</title></head>` +
            `<body><button id="activate">activate</button><script type="module" src="${p}.js"></script></body></html>\n`,
    );
}
// The rust crypto loads its WebAssembly relative to the bundle (new URL(..., import.meta.url)).
await copyFile(
    join(here, "node_modules/@matrix-org/matrix-sdk-crypto-wasm/pkg/matrix_sdk_crypto_wasm_bg.wasm"),
    join(dist, "pkg/matrix_sdk_crypto_wasm_bg.wasm"),
);
console.log(`bundled ${pages.join(", ")} into ${dist}`);
