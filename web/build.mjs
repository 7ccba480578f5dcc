// Builds the browser page's script into plugin/voice_channel/static/ (run by `make web`; never edit the output).
//
//   app.js                   our page code (src/) with @elevenlabs/client bundled in, minified IIFE
//   libsamplerate.worklet.js the resampler worklet @elevenlabs/client loads when the browser cannot capture or
//                            play at the rate it asks for; served by us instead of the jsDelivr CDN
//   THIRD_PARTY_LICENSES.txt the licences of every package that ends up in app.js
//
// The output is reproducible: the same lockfile gives byte-identical files.
import * as esbuild from "esbuild";
import { copyFile, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "plugin", "voice_channel", "static");
const modules = join(here, "node_modules");

// @elevenlabs/client hard-codes a jsDelivr URL for the libsamplerate worklet. Its `libsampleratePath` option
// reaches the microphone path only (the playback path ignores it), so the URL is rewritten at build time to a
// path relative to the page: no third-party request, and it works offline and under a mount prefix.
const LOCAL_WORKLET = "static/libsamplerate.worklet.js";
const noCdn = {
  name: "no-cdn",
  setup(build) {
    build.onLoad({ filter: /@elevenlabs[\\/]client[\\/].*addLibsamplerateModule\.js$/ }, async (args) => {
      const source = await readFile(args.path, "utf8");
      const patched = source.replace(/https:\/\/cdn\.jsdelivr\.net\/[^"']+/, LOCAL_WORKLET);
      if (patched === source) {
        throw new Error("the libsamplerate CDN URL was not found in @elevenlabs/client: check the new version");
      }
      return { contents: patched, loader: "js" };
    });
  },
};

const result = await esbuild.build({
  entryPoints: [join(here, "src", "main.js")],
  outfile: join(outDir, "app.js"),
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  minify: true,
  legalComments: "none", // collected into THIRD_PARTY_LICENSES.txt below instead
  define: { "process.env.NODE_ENV": '"production"' },
  plugins: [noCdn],
  metafile: true,
  logLevel: "warning",
});
if (result.warnings.length) {
  throw new Error(`esbuild warnings: ${result.warnings.length}`);
}

await mkdir(outDir, { recursive: true });
await copyFile(
  join(modules, "@alexanderolsen", "libsamplerate-js", "dist", "libsamplerate.worklet.js"),
  join(outDir, "libsamplerate.worklet.js"),
);

// Packages that ended up in the bundle, from esbuild's own record of its inputs, plus the worklet, plus their
// dependencies: livekit-client ships pre-bundled, with its own dependencies inside one file.
const packages = new Set();
const addPackage = async (name) => {
  if (packages.has(name)) return;
  packages.add(name);
  const meta = JSON.parse(await readFile(join(modules, name, "package.json"), "utf8"));
  for (const dependency of Object.keys(meta.dependencies || {})) await addPackage(dependency);
};
await addPackage("@alexanderolsen/libsamplerate-js");
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (match) await addPackage(match[1]);
}
const sections = [];
for (const name of [...packages].sort()) {
  const dir = join(modules, name);
  const meta = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
  const files = (await readdir(dir)).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort();
  const texts = await Promise.all(files.map((f) => readFile(join(dir, f), "utf8")));
  const body = texts.length ? texts.join("\n") : `License: ${meta.license} (no licence file in the package)`;
  sections.push(`${"=".repeat(78)}\n${name} ${meta.version} (${meta.license})\n${"=".repeat(78)}\n${body.trim()}\n`);
}
await writeFile(
  join(outDir, "THIRD_PARTY_LICENSES.txt"),
  "Third-party software bundled in app.js and libsamplerate.worklet.js\n\n" + sections.join("\n"),
);

const bytes = Object.values(result.metafile.outputs).find((o) => o.entryPoint).bytes;
console.log(`built static/app.js (${bytes} bytes, ${packages.size} packages)`);
