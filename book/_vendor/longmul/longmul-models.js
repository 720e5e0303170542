/* longmul-models.js: the book's models in the reader's browser, with attention knockouts.
 *
 * A classic script (not an ES module: Chromium loads no module from a file:// page). Load, in order:
 *   onnxruntime/ort.wasm.min.js, onnxruntime/ort-wasm-loader.js, onnxruntime/ort-wasm-binary.js,
 *   longmul/longmul-models.js
 * It sets globalThis.longmulModels (and module.exports under Node):
 *
 *   const model = await longmulModels.loadModel(onnxBytes, format);  // format: onnx/export.json's "format"
 *   const model = await longmulModels.loadShipped("aux");           // or from a script of longmul.browser_assets
 *   const answer = await model.multiply("2365", "4347");             // digits c0 … c7, probabilities, attention
 *   const effect = await model.knockoutEffect("2365", "4347", [{layer: 1, head: 2, query: 13, key: [3, 8]}]);
 *
 * The graph (written by `longmul export-onnx`) takes token ids, position ids and a boolean knockout
 * mask (layer, head, query, key) and returns logits, every layer's attention pattern and residual
 * stream before its MLP. Decoding is
 * greedy and re-runs the whole sequence each step, in the model's own format: a model still writing
 * chain of thought writes `format.cot_tokens` tokens before `####`, and the positions after `||` skip
 * `format.position_skip` (longmul.evaluate does the same in Python). A knockout removes one head's
 * attention from query position(s) to key position(s) of the decoded sequence, as
 * longmul.hooks.Knockout does: the edge's weight is zeroed and the row renormalised.
 *
 * onnxruntime runs single-threaded on its WebAssembly backend and fetches nothing: the WebAssembly
 * binary and its Emscripten loader come from the two classic scripts above (see
 * scripts/vendor_assets.py), the model's bytes from the caller. Bad input throws an Error whose
 * message names the problem (as the Python library's ValueErrors do).
 */
(function (root) {
  "use strict";

  let runtime = null;

  function base64Bytes(text) {
    if (typeof atob === "function") {
      const binary = atob(text);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      return bytes;
    }
    return new Uint8Array(Buffer.from(text, "base64"));
  }

  async function gunzip(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  /* onnxruntime, set up once: single-threaded, the WebAssembly binary given as bytes and its loader as
   * a blob: URL (options.loaderUrl overrides it: Node cannot import a blob: URL). */
  function initRuntime(options = {}) {
    if (runtime === null) {
      runtime = (async () => {
        const ort = options.ort || root.ort;
        const assets = options.assets || root.LONGMUL_ORT;
        if (!ort || !assets || !assets.loader || !assets.wasmGzipBase64) {
          throw new Error(
            "onnxruntime-web is not loaded: include onnxruntime/ort.wasm.min.js, ort-wasm-loader.js and " +
              "ort-wasm-binary.js before longmul-models.js"
          );
        }
        ort.env.wasm.numThreads = 1;
        ort.env.wasm.proxy = false;
        ort.env.wasm.wasmBinary = await gunzip(base64Bytes(assets.wasmGzipBase64));
        const loaderUrl =
          options.loaderUrl || URL.createObjectURL(new Blob([assets.loader], { type: "text/javascript" }));
        ort.env.wasm.wasmPaths = { mjs: loaderUrl };
        return ort;
      })();
      runtime.catch(() => {
        runtime = null; // let a later call try again
      });
    }
    return runtime;
  }

  function operands(a, b, format) {
    const n = format.n_a;
    const values = [];
    for (const [name, raw] of [
      ["a", a],
      ["b", b],
    ]) {
      const text = String(raw ?? "").trim();
      if (!text) throw new Error(`operand ${name} is empty`);
      if (text.startsWith("-")) throw new Error(`operand ${name}='${text}' is negative; only positive numbers are supported`);
      if (!/^[0-9]+$/.test(text)) throw new Error(`operand ${name}='${text}' contains characters other than the digits 0-9`);
      if (text.length !== n || text[0] === "0") {
        throw new Error(`operand ${name}='${text}' must be a ${n}-digit number without a leading zero`);
      }
      values.push(text);
    }
    if (format.n_b !== n) throw new Error(`the model multiplies ${format.n_a}x${format.n_b} digits; this page supports n x n`);
    return values;
  }

  /* Token ids of the prompt `a0 … a(n-1) * b0 … b(n-1) ||`, digits least-significant first. */
  function tokenize(a, b, format) {
    const [ta, tb] = operands(a, b, format);
    const id = (token) => {
      const i = format.vocab.indexOf(token);
      if (i < 0) throw new Error(`token ${token} is not in the model's vocabulary`);
      return i;
    };
    const digits = (text) => [...text].reverse().map(id);
    return [...digits(ta), id("*"), ...digits(tb), id("||")];
  }

  function asList(x) {
    return Array.isArray(x) ? x.map(Number) : [Number(x)];
  }

  /* The (L, H, T, T) boolean mask (Uint8Array) of `knockouts` in a sequence of `length` tokens. */
  function knockoutMask(knockouts, format, length) {
    const L = format.n_layers;
    const H = format.n_heads;
    const mask = new Uint8Array(L * H * length * length);
    if (!Array.isArray(knockouts)) throw new Error("knockouts must be a list of {layer, head, query, key}");
    for (const k of knockouts) {
      const show = JSON.stringify(k);
      if (k === null || typeof k !== "object") throw new Error(`knockout ${show} is not {layer, head, query, key}`);
      if (!(Number.isInteger(k.layer) && Number.isInteger(k.head) && k.layer >= 0 && k.layer < L && k.head >= 0 && k.head < H)) {
        throw new Error(`knockout ${show} names a layer/head the model does not have`);
      }
      for (const q of asList(k.query)) {
        for (const key of asList(k.key)) {
          if (!(Number.isInteger(q) && Number.isInteger(key) && q >= 0 && q < length && key >= 0 && key < length)) {
            throw new Error(`knockout ${show} names a position outside a sequence of ${length} tokens`);
          }
          mask[((k.layer * H + k.head) * length + q) * length + key] = 1;
        }
      }
    }
    for (let lh = 0; lh < L * H; lh++) {
      for (let q = 0; q < length; q++) {
        let open = false;
        for (let key = 0; key <= q && !open; key++) open = !mask[(lh * length + q) * length + key];
        if (!open) {
          throw new Error(
            `a knockout removes every key that position ${q} may attend to (layer ${Math.floor(lh / H)}, head ` +
              `${lh % H}): nothing is left to renormalise over`
          );
        }
      }
    }
    return mask;
  }

  function sliceMask(mask, format, from, to) {
    const LH = format.n_layers * format.n_heads;
    const out = new Uint8Array(LH * to * to);
    for (let lh = 0; lh < LH; lh++) {
      for (let q = 0; q < to; q++) {
        out.set(mask.subarray((lh * from + q) * from, (lh * from + q) * from + to), (lh * to + q) * to);
      }
    }
    return out;
  }

  function softmax(row) {
    const top = Math.max(...row);
    const e = row.map((x) => Math.exp(x - top));
    const total = e.reduce((s, x) => s + x, 0);
    return e.map((x) => x / total);
  }

  class Model {
    constructor(ort, session, format) {
      this.ort = ort;
      this.session = session;
      this.format = format;
      this.promptLength = 2 * format.n_a + 2;
      this.steps = format.cot_tokens + format.n_a + format.n_b + 2; // chain of thought, ####, answer, <eos>
    }

    positions(T) {
      const P = this.promptLength;
      return Array.from({ length: T }, (_, t) => (t < P ? t : t + this.format.position_skip));
    }

    /* One forward pass of a single sequence: logits (T, V), attention (L, H, T, T) and the residual
     * stream between each layer's attention and its MLP (L, T, d_model), flat. */
    async forward(ids, mask) {
      const T = ids.length;
      const big = (xs) => BigInt64Array.from(xs.map((x) => BigInt(x)));
      const feeds = {
        input_ids: new this.ort.Tensor("int64", big(ids), [1, T]),
        position_ids: new this.ort.Tensor("int64", big(this.positions(T)), [1, T]),
        knockout: new this.ort.Tensor("bool", sliceMask(mask, this.format, this.maxLength, T), [
          this.format.n_layers,
          this.format.n_heads,
          T,
          T,
        ]),
      };
      const out = await this.session.run(feeds);
      return { logits: out.logits.data, attention: out.attention.data, residMid: out.resid_mid.data, T };
    }

    get maxLength() {
      return this.promptLength + this.steps;
    }

    /* Greedy answer to a × b (written most-significant digit first) under `knockouts`. */
    async multiply(a, b, knockouts = []) {
      const { vocab } = this.format;
      const V = vocab.length;
      const mask = knockoutMask(knockouts, this.format, this.maxLength);
      const [ta, tb] = operands(a, b, this.format);
      const ids = tokenize(ta, tb, this.format);
      const eos = vocab.indexOf("<eos>");
      const chosen = []; // probability of each generated token
      for (let step = 0; step < this.steps; step++) {
        const { logits, T } = await this.forward(ids, mask);
        const row = Array.from(logits.subarray((T - 1) * V, T * V));
        let best = 0;
        for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        chosen.push(softmax(row)[best]);
        ids.push(best);
        if (best === eos) break;
      }
      const last = await this.forward(ids, mask);
      const generated = ids.slice(this.promptLength);
      const tokens = generated.map((i) => vocab[i]);
      const n_c = this.format.n_a + this.format.n_b;
      const digits = new Array(n_c).fill(-1);
      const probabilities = new Array(n_c).fill(null);
      const start = tokens.indexOf("####");
      if (start >= 0) {
        for (let k = 0; k < n_c && start + 1 + k < tokens.length; k++) {
          const d = Number(tokens[start + 1 + k]);
          if (/^[0-9]$/.test(tokens[start + 1 + k])) {
            digits[k] = d;
            probabilities[k] = chosen[start + 1 + k];
          }
        }
      }
      const product = (BigInt(ta) * BigInt(tb)).toString().padStart(n_c, "0");
      const truth = [...product].reverse().map(Number);
      return {
        a: ta,
        b: tb,
        digits, // c0 (units) … c(n-1); -1 where the model wrote no digit
        correct: digits.map((d, k) => d === truth[k]),
        probabilities, // the model's probability of each digit it wrote (null where none)
        tokens, // everything generated: chain of thought, ####, answer, <eos>
        sequence: ids.map((i) => vocab[i]), // prompt and generated: the positions of `attention`
        answerStart: start < 0 ? -1 : this.promptLength + start, // position of ####, which predicts c0
        logits: last.logits, // (T, V) flat, of the whole sequence
        attention: last.attention, // (L, H, T, T) flat: attention[((l * H + h) * T + q) * T + k]
        residMid: last.residMid, // (L, T, d_model) flat: blocks.{l}.hook_resid_mid, where the aux probe reads
        length: last.T,
      };
    }

    /* The answer to a × b with and without `knockouts`, and for each answer digit k the change of the
     * logit of the digit the intact model wrote, on the intact model's sequence. */
    async knockoutEffect(a, b, knockouts) {
      const intact = await this.multiply(a, b);
      const knocked = await this.multiply(a, b, knockouts);
      const V = this.format.vocab.length;
      const mask = knockoutMask(knockouts, this.format, this.maxLength);
      const ids = intact.sequence.map((t) => this.format.vocab.indexOf(t));
      const forced = await this.forward(ids, mask);
      const logitChange = intact.digits.map((d, k) => {
        if (d < 0 || intact.answerStart < 0) return null;
        const at = (intact.answerStart + k) * V + this.format.vocab.indexOf(String(d));
        return forced.logits[at] - intact.logits[at];
      });
      return { intact, knocked, changed: knocked.digits.map((d, k) => d !== intact.digits[k]), logitChange };
    }
  }

  async function loadModel(bytes, format, options = {}) {
    const ort = await initRuntime(options);
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    return new Model(ort, session, format);
  }

  /* A model whose data script (written by longmul.browser_assets) the page has loaded. */
  async function loadShipped(name, options = {}) {
    const data = (root.LONGMUL_MODEL_DATA || {})[name];
    if (!data) throw new Error(`model ${name} is not loaded: include its script from longmul.browser_assets`);
    return loadModel(base64Bytes(data.onnxBase64), data.format, options);
  }

  const api = { loadModel, loadShipped, initRuntime, tokenize, knockoutMask, Model };
  root.longmulModels = api;
  if (typeof module === "object" && module.exports) module.exports = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
