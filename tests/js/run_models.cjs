// Runs book/_vendor/longmul/longmul-models.js under Node for tests/test_browser_models.py: reads
// {"models": {name: dir}, "requests": [{model, a, b, knockouts}]} as JSON on stdin and prints, for each
// request, the answer (digits, probabilities, tokens) or the error message, as JSON.
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { pathToFileURL } = require("node:url");

const vendor = path.resolve(__dirname, "..", "..", "book", "_vendor");
globalThis.ort = require(path.join(vendor, "onnxruntime", "ort.wasm.min.js"));
require(path.join(vendor, "onnxruntime", "ort-wasm-loader.js"));
require(path.join(vendor, "onnxruntime", "ort-wasm-binary.js"));
const longmul = require(path.join(vendor, "longmul", "longmul-models.js"));

async function main() {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  // Node cannot import() the blob: URL a browser gets: hand onnxruntime the loader as a file instead
  const loader = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "longmul-ort-")), "loader.mjs");
  fs.writeFileSync(loader, globalThis.LONGMUL_ORT.loader);
  const options = { loaderUrl: pathToFileURL(loader).href };
  const models = {};
  for (const [name, dir] of Object.entries(input.models)) {
    const format = JSON.parse(fs.readFileSync(path.join(dir, "onnx", "export.json"), "utf8")).format;
    models[name] = await longmul.loadModel(fs.readFileSync(path.join(dir, "onnx", "model.onnx")), format, options);
  }
  const out = [];
  for (const r of input.requests) {
    try {
      const model = models[r.model];
      if (r.effect) {
        const e = await model.knockoutEffect(r.a, r.b, r.knockouts);
        out.push({ intact: e.intact.digits, knocked: e.knocked.digits, tokens: e.knocked.tokens, logitChange: e.logitChange });
      } else {
        const answer = await model.multiply(r.a, r.b, r.knockouts || []);
        out.push({
          digits: answer.digits,
          probabilities: answer.probabilities,
          tokens: answer.tokens,
          length: answer.length,
          attentionSize: answer.attention.length,
          residMidSize: answer.residMid.length,
        });
      }
    } catch (err) {
      out.push({ error: err.message });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`run_models.cjs: ${err.stack || err}\n`);
  process.exit(1);
});
