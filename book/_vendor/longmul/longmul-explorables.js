/* longmul-explorables.js: the book's explorables, with the models running in the reader's browser.
 *
 * A classic script listed on every page (small; it does nothing on a page without an explorable). A
 * chapter places an explorable as a <div class="longmul-explorable" data-kind="…" data-settings="…">
 * written by longmul.explorables.explorable(); this script turns each into a widget:
 *
 *   multiply  two 4-digit numbers in, every shipped model's answer out, digit by digit, green or red
 *             against the true product, with the model's probability of each digit.
 *   knockout  one model, problem, output digit and head: the head's attention row, drawn as bars; a
 *             click on a bar knocks that edge out (longmul.hooks.Knockout: weight zeroed, row
 *             renormalised) and shows the new answer and the change of the digit's logit.
 *
 * When an explorable comes near the viewport, the script loads onnxruntime-web, longmul-models.js and
 * the models (written by longmul.browser_assets.write_site_models into _static/longmul-models/) by adding
 * classic <script> tags, which work from file:// as from a web server; nothing is fetched from
 * anywhere but the site. Each widget reports its state in data-state ("loading", "busy", "ready",
 * "error") and, once it has answered, the time of its first answer since the page started loading in
 * data-first-answer-ms and the duration of its last in data-last-ms (the browser tests and
 * benchmarks/browser.py read them). Bad input and failures are shown in the widget, never thrown.
 */
(function () {
  "use strict";

  const DIGITS = 4; // the shipped models multiply 4-digit numbers; longmul-models.js checks the format
  const N_C = 2 * DIGITS;
  const SCRIPT = document.currentScript ? document.currentScript.src : "";
  const RUNTIME = ["onnxruntime/ort.wasm.min.js", "onnxruntime/ort-wasm-loader.js", "onnxruntime/ort-wasm-binary.js", "longmul/longmul-models.js"];

  /* ------------------------------------------------------------------ loading, once per page */

  const scripts = new Map();
  function loadScript(path) {
    if (!scripts.has(path)) {
      const done = new Promise((resolve, reject) => {
        const tag = document.createElement("script");
        tag.src = new URL("../" + path, SCRIPT).href; // this script lives in _static/longmul/
        tag.onload = () => resolve();
        tag.onerror = () => reject(new Error(`this site has no ${path}: the page cannot run the models`));
        document.head.appendChild(tag);
      });
      done.catch(() => scripts.delete(path));
      scripts.set(path, done);
    }
    return scripts.get(path);
  }

  let index = null;
  /* The runtime and the site's model index: [{name, label, file, bytes, steps, snapshot, cotTokens}]. */
  function loadIndex() {
    if (index === null) {
      index = (async () => {
        for (const path of RUNTIME) await loadScript(path);
        await loadScript("longmul-models/index.js");
        const entries = globalThis.LONGMUL_MODEL_INDEX || [];
        if (!entries.length) throw new Error("this site ships no models (see longmul.browser_assets.write_site_models)");
        return entries;
      })();
      index.catch(() => (index = null));
    }
    return index;
  }

  const models = new Map();
  function loadModel(name) {
    if (!models.has(name)) {
      const model = (async () => {
        const entries = await loadIndex();
        const entry = entries.find((e) => e.name === name);
        if (!entry) throw new Error(`this site has no model named ${name}`);
        await loadScript("longmul-models/" + entry.file);
        return globalThis.longmulModels.loadShipped(name);
      })();
      model.catch(() => models.delete(name));
      models.set(name, model);
    }
    return models.get(name);
  }

  /* ------------------------------------------------------------------ small helpers */

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function megabytes(bytes) {
    return (bytes / 1e6).toFixed(1) + " MB";
  }

  /* Why `text` is not an operand the models can take, in words for a reader; null when it is one. */
  function operandProblem(text) {
    const t = text.trim();
    if (!t) return "Type a number in both boxes.";
    if (/^-\s*[0-9]/.test(t)) return `${t} is negative: the models multiply positive numbers.`;
    if (!/^[0-9]+$/.test(t)) return `“${t}” is not a whole number: use the digits 0–9 only.`;
    if (t[0] === "0") return `${t} starts with 0: type a ${DIGITS}-digit number from 1000 to 9999.`;
    if (t.length !== DIGITS) {
      return `${t} has ${t.length} digit${t.length === 1 ? "" : "s"}: the models were trained on ${DIGITS}-digit numbers only (1000 to 9999).`;
    }
    return null;
  }

  function randomOperand() {
    return String(1000 + Math.floor(Math.random() * 9000));
  }

  function trueDigits(a, b) {
    const product = (BigInt(a) * BigInt(b)).toString().padStart(N_C, "0");
    return [...product].reverse().map(Number); // c0 (units) first
  }

  /* Scroll the horizontally scrolling `box` so that `item` sits in its middle (the page does not move). */
  function centre(box, item) {
    if (item) box.scrollLeft = item.offsetLeft - box.offsetLeft - (box.clientWidth - item.offsetWidth) / 2;
  }

  const headName = (layer, head) => `L${layer + 1}H${head}`; // layers from 1, as in chapter 3

  /* Names of the positions of a decoded sequence: a0…, *, b0…, ||, chain of thought, ####, c0…, <eos>. */
  function positionNames(sequence) {
    const start = sequence.indexOf("####");
    return sequence.map((token, t) => {
      if (t < DIGITS) return `a${t}`;
      if (t === DIGITS) return "*";
      if (t <= 2 * DIGITS) return `b${t - DIGITS - 1}`;
      if (t === 2 * DIGITS + 1) return "||";
      if (start < 0 || t < start) return "CoT";
      if (t === start) return "####";
      return t - start - 1 < N_C ? `c${t - start - 1}` : token;
    });
  }

  /* A widget's frame: its state attribute, status line and message line (errors and bad input). */
  class Widget {
    constructor(root, settings) {
      this.root = root;
      this.settings = settings;
      this.status = el("p", { class: "lm-status", "aria-live": "polite" });
      this.message = el("p", { class: "lm-message", role: "alert" });
      this.setState("loading");
    }

    setState(state) {
      this.root.dataset.state = state;
    }

    say(text) {
      this.message.textContent = text || "";
    }

    /* The two operand boxes, opening on the settings' problem. */
    makeOperandBoxes() {
      const box = (name, label) =>
        el("input", { name, inputmode: "numeric", autocomplete: "off", size: 6, "aria-label": label, value: this.settings[name] });
      this.a = box("a", "first number");
      this.b = box("b", "second number");
    }

    /* The typed operands, or null once the widget has said what is wrong with them. */
    readOperands() {
      const bad = operandProblem(this.a.value) || operandProblem(this.b.value);
      if (bad) {
        this.say(bad);
        this.setState("invalid");
        return null;
      }
      this.say("");
      return [this.a.value.trim(), this.b.value.trim()];
    }

    /* Run `work` (async), showing its failure in the widget; marks the widget busy meanwhile. */
    async run(work) {
      this.setState("busy");
      const started = performance.now();
      try {
        const result = await work();
        this.root.dataset.lastMs = (performance.now() - started).toFixed(1);
        if (!("firstAnswerMs" in this.root.dataset)) this.root.dataset.firstAnswerMs = performance.now().toFixed(1);
        this.setState("ready");
        return result;
      } catch (err) {
        this.say(err && err.message ? err.message : String(err));
        this.setState("error");
        return null;
      }
    }
  }

  /* ------------------------------------------------------------------ multiply */

  class MultiplyWidget extends Widget {
    constructor(root, settings) {
      super(root, settings);
      this.makeOperandBoxes();
      const form = el(
        "form",
        { class: "lm-controls", onsubmit: (event) => (event.preventDefault(), this.answer()) },
        this.a,
        " × ",
        this.b,
        " ",
        el("button", { type: "submit" }, "Multiply"),
        el("button", { type: "button", onclick: () => this.random() }, "Random problem")
      );
      this.table = el("div", { class: "lm-scroll" });
      root.replaceChildren(form, this.message, this.table, this.status);
    }

    async start() {
      const entries = await this.run(async () => {
        const entries = await loadIndex();
        const total = entries.reduce((s, e) => s + e.bytes, 0);
        this.status.textContent = `Loading ${entries.length} models (${megabytes(total)}) into this page…`;
        await Promise.all(entries.map((e) => loadModel(e.name)));
        return entries;
      });
      if (entries) {
        this.entries = entries;
        await this.answer();
      }
    }

    random() {
      this.a.value = randomOperand();
      this.b.value = randomOperand();
      this.answer();
    }

    async answer() {
      if (!this.entries) return;
      const operands = this.readOperands();
      if (!operands) return;
      const [a, b] = operands;
      const answers = await this.run(async () => {
        const out = [];
        for (const entry of this.entries) out.push([entry, await (await loadModel(entry.name)).multiply(a, b)]);
        return out;
      });
      if (!answers) return;
      this.table.replaceChildren(this.render(a, b, answers), ...this.notes(answers));
      this.status.textContent = `${a} × ${b}: ${answers.length} models answered in this page in ${this.root.dataset.lastMs} ms.`;
    }

    /* What a reader should know about a model before trusting its row: unfinished, or still writing CoT. */
    about(entry) {
      const parts = [
        entry.snapshot ? `a snapshot at ${entry.steps.toLocaleString("en")} training steps of a run still in training` : null,
        entry.cotTokens ? `writes ${entry.cotTokens} chain-of-thought tokens before its answer` : null,
      ].filter(Boolean);
      return parts.length ? `${entry.label}: ${parts.join("; ")}.` : null;
    }

    notes(answers) {
      return answers
        .map(([entry]) => this.about(entry))
        .filter(Boolean)
        .map((text) => el("p", { class: "lm-caption" }, "* " + text));
    }

    render(a, b, answers) {
      const truth = trueDigits(a, b);
      const order = [...Array(N_C).keys()].reverse(); // c7 … c0: the product as people write it
      const head = el("tr", {}, el("th", {}, ""), order.map((k) => el("th", { scope: "col" }, `c${k}`)), el("th", { scope: "col" }, "right"));
      const truthRow = el(
        "tr",
        { class: "lm-truth" },
        el("th", { scope: "row" }, `${a} × ${b}`),
        order.map((k) => el("td", {}, truth[k])),
        el("td", {}, "")
      );
      const rows = answers.map(([entry, answer]) => {
        const right = answer.correct.filter(Boolean).length;
        return el(
          "tr",
          { "data-model": entry.name },
          el("th", { scope: "row" }, entry.label + (this.about(entry) ? " *" : "")),
          order.map((k) => {
            const digit = answer.digits[k];
            const p = answer.probabilities[k];
            const ok = answer.correct[k];
            return el(
              "td",
              {
                class: ok ? "lm-right" : "lm-wrong",
                "data-k": k,
                "data-digit": digit,
                title: digit < 0 ? `c${k}: no digit written` : `c${k}: wrote ${digit} with probability ${p.toFixed(3)}; the true digit is ${truth[k]}`,
              },
              digit < 0 ? "–" : String(digit),
              el("small", {}, p === null ? "" : `${Math.round(100 * p)}%`)
            );
          }),
          el("td", { class: "lm-score" }, `${right}/${N_C}`)
        );
      });
      return el("table", { class: "lm-answers" }, el("thead", {}, head), el("tbody", {}, truthRow, rows));
    }
  }

  /* ------------------------------------------------------------------ knockout */

  class KnockoutWidget extends Widget {
    constructor(root, settings) {
      super(root, settings);
      this.knockouts = [];
      this.query = null; // null: the position that predicts the chosen digit
      this.model = el("select", { name: "model", "aria-label": "model", onchange: () => this.reset() });
      this.makeOperandBoxes();
      this.digit = el(
        "select",
        { name: "digit", "aria-label": "output digit", onchange: () => ((this.query = null), this.show()) },
        [...Array(N_C).keys()].map((k) => el("option", { value: k }, `c${k}`))
      );
      this.digit.value = String(settings.digit ?? 3);
      this.head = el("select", { name: "head", "aria-label": "head", onchange: () => this.show() });
      const form = el(
        "form",
        { class: "lm-controls", onsubmit: (event) => (event.preventDefault(), this.reset()) },
        el("label", {}, "model ", this.model),
        " ",
        this.a,
        " × ",
        this.b,
        " ",
        el("button", { type: "submit" }, "Run"),
        el("br"),
        el("label", {}, "digit ", this.digit),
        " ",
        el("label", {}, "head ", this.head),
        " ",
        el("button", { type: "button", onclick: () => ((this.knockouts = []), this.show()) }, "Clear knockouts")
      );
      this.presets = el(
        "div",
        { class: "lm-presets" },
        (settings.presets || []).map((preset, i) => el("button", { type: "button", "data-preset": i, onclick: () => this.applyPreset(preset) }, preset.label))
      );
      this.caption = el("p", { class: "lm-caption" });
      this.bars = el("div", { class: "lm-scroll" });
      this.chips = el("div", { class: "lm-chips" });
      this.answers = el("div", { class: "lm-scroll" });
      root.replaceChildren(form, this.presets, this.message, this.caption, this.bars, this.chips, this.answers, this.status);
    }

    async start() {
      const entries = await this.run(async () => {
        const entries = await loadIndex();
        this.model.replaceChildren(...entries.map((e) => el("option", { value: e.name }, e.label)));
        const wanted = entries.find((e) => e.name === this.settings.model);
        this.model.value = (wanted || entries[0]).name;
        const model = await loadModel(this.model.value);
        const { n_layers, n_heads } = model.format;
        const heads = [];
        for (let l = 0; l < n_layers; l++) for (let h = 0; h < n_heads; h++) heads.push(el("option", { value: `${l},${h}` }, headName(l, h)));
        this.head.replaceChildren(...heads);
        this.head.value = `${n_layers - 1},0`;
        return entries;
      });
      if (entries) await this.reset();
    }

    /* A new model or problem: its intact answer; knockouts name positions of the old one, so they go. */
    async reset() {
      this.knockouts = [];
      this.query = null;
      this.intact = null;
      const operands = this.readOperands();
      if (!operands) return;
      const [a, b] = operands;
      const intact = await this.run(async () => (await loadModel(this.model.value)).multiply(a, b));
      if (!intact) return;
      this.intact = intact;
      await this.show();
    }

    async applyPreset(preset) {
      this.model.value = preset.model;
      this.a.value = preset.a;
      this.b.value = preset.b;
      this.digit.value = String(preset.digit);
      await this.reset();
      if (!this.intact) return;
      this.knockouts = preset.knockouts.map((k) => ({ ...k }));
      // show the head of the preset's last layer, from its query: the edges that end at the answer
      const shown = this.knockouts.reduce((a, k) => (k.layer > a.layer ? k : a), this.knockouts[0]);
      this.head.value = `${shown.layer},${shown.head}`;
      this.query = [shown.query].flat()[0];
      await this.show();
    }

    get layerHead() {
      const [layer, head] = this.head.value.split(",").map(Number);
      return { layer, head };
    }

    queryPosition() {
      if (this.query !== null) return this.query;
      const k = Number(this.digit.value);
      return this.intact.answerStart < 0 ? this.intact.length - 1 : this.intact.answerStart + k;
    }

    isKnocked(layer, head, query, key) {
      const has = (x, v) => (Array.isArray(x) ? x.includes(v) : x === v);
      return this.knockouts.some((k) => k.layer === layer && k.head === head && has(k.query, query) && has(k.key, key));
    }

    toggle(query, key) {
      const { layer, head } = this.layerHead;
      if (this.isKnocked(layer, head, query, key)) {
        this.knockouts = this.knockouts.filter((k) => !(k.layer === layer && k.head === head && k.query === query && k.key === key));
        if (this.isKnocked(layer, head, query, key)) {
          this.say("That edge belongs to a preset's group of edges: clear the knockouts to restore it.");
          return;
        }
      } else {
        this.knockouts.push({ layer, head, query, key });
      }
      this.show();
    }

    /* The head's attention row from the query position, the knockouts, and the answers. */
    async show() {
      if (!this.intact) return;
      this.say("");
      const intact = this.intact;
      const { layer, head } = this.layerHead;
      const { n_heads } = (await loadModel(this.model.value)).format;
      const T = intact.length;
      const query = Math.min(this.queryPosition(), T - 1);
      const names = positionNames(intact.sequence);
      const k = Number(this.digit.value);
      const row = intact.attention.subarray(((layer * n_heads + head) * T + query) * T, ((layer * n_heads + head) * T + query + 1) * T);
      this.caption.textContent =
        `Bars: how much ${headName(layer, head)} attends from position ${query} (${names[query]}` +
        (query === intact.answerStart + k ? `, which predicts c${k}` : "") +
        `) to each position, in the intact model. Click a bar to knock that edge out (again to restore it); ` +
        `click a token to attend from it instead.`;
      const columns = intact.sequence.map((token, key) => {
        const weight = key <= query ? row[key] : 0;
        const knocked = this.isKnocked(layer, head, query, key);
        const bar = el(
          "button",
          {
            type: "button",
            class: "lm-bar" + (knocked ? " lm-knocked" : ""),
            disabled: key > query,
            "data-key": key,
            title: `${headName(layer, head)} ${query}←${key}: weight ${weight.toFixed(3)}` + (knocked ? " (knocked out)" : ""),
            "aria-label": `${knocked ? "restore" : "knock out"} ${headName(layer, head)} ${query}←${key}`,
            onclick: () => this.toggle(query, key),
          },
          el("span", { style: `height: ${(100 * weight).toFixed(1)}%` })
        );
        const label = el(
          "button",
          {
            type: "button",
            class: "lm-token" + (key === query ? " lm-query" : ""),
            "data-position": key,
            title: `position ${key}: ${names[key]}`,
            onclick: () => ((this.query = key), this.show()),
          },
          token === "<eos>" ? "⏎" : token,
          el("small", {}, names[key])
        );
        return el("div", { class: "lm-column" }, bar, label);
      });
      this.bars.replaceChildren(el("div", { class: "lm-sequence" }, columns));
      centre(this.bars, columns[query]); // on a narrow screen the row scrolls: keep the query in sight
      this.chips.replaceChildren(
        ...(this.knockouts.length ? ["Knocked out: "] : []),
        ...this.knockouts.map((ko, i) =>
          el(
            "button",
            { type: "button", class: "lm-chip", title: "restore this edge", onclick: () => (this.knockouts.splice(i, 1), this.show()) },
            `${headName(ko.layer, ko.head)} ${[ko.query].flat().join(",")}←${[ko.key].flat().join(",")} ✕`
          )
        )
      );
      if (!this.knockouts.length) {
        this.answers.replaceChildren(this.renderAnswers(intact, null, null, k));
        centre(this.answers, this.answers.querySelector("td.lm-chosen"));
        this.status.textContent = `No knockouts: the intact model's answer.`;
        return;
      }
      const knockouts = this.knockouts.map((ko) => ({ ...ko }));
      const effect = await this.run(async () => (await loadModel(this.model.value)).knockoutEffect(intact.a, intact.b, knockouts));
      if (!effect) return;
      this.answers.replaceChildren(this.renderAnswers(intact, effect.knocked, effect.logitChange, k));
      centre(this.answers, this.answers.querySelector("td.lm-chosen"));
      const change = effect.logitChange[k];
      this.status.textContent =
        change === null
          ? `The intact model wrote no c${k}.`
          : `Knocking out ${knockouts.length} edge${knockouts.length === 1 ? "" : "s"} changes the logit of c${k}'s digit ` +
            `${intact.digits[k]} by ${change >= 0 ? "+" : "−"}${Math.abs(change).toFixed(2)} (on the intact model's sequence); ` +
            `${effect.changed.filter(Boolean).length} of ${N_C} digits of the answer change.`;
    }

    renderAnswers(intact, knocked, logitChange, chosen) {
      const truth = trueDigits(intact.a, intact.b);
      const order = [...Array(N_C).keys()].reverse();
      const cells = (answer, kind) =>
        order.map((k) => {
          const digit = answer.digits[k];
          const changed = kind === "knocked" && digit !== intact.digits[k];
          return el(
            "td",
            {
              class: (digit === truth[k] ? "lm-right" : "lm-wrong") + (changed ? " lm-changed" : "") + (k === chosen ? " lm-chosen" : ""),
              "data-row": kind,
              "data-k": k,
              "data-digit": digit,
            },
            digit < 0 ? "–" : String(digit)
          );
        });
      const rows = [
        el("tr", {}, el("th", { scope: "row" }, "true product"), order.map((k) => el("td", { class: k === chosen ? "lm-chosen" : null }, truth[k]))),
        el("tr", {}, el("th", { scope: "row" }, "intact model"), cells(intact, "intact")),
      ];
      if (knocked) {
        rows.push(el("tr", {}, el("th", { scope: "row" }, "with knockouts"), cells(knocked, "knocked")));
        rows.push(
          el(
            "tr",
            { class: "lm-logits" },
            el("th", { scope: "row" }, "Δ logit"),
            order.map((k) => el("td", { "data-row": "logit", "data-k": k }, logitChange[k] === null ? "" : logitChange[k].toFixed(1)))
          )
        );
      }
      const head = el("tr", {}, el("th", {}, ""), order.map((k) => el("th", { scope: "col" }, `c${k}`)));
      return el("table", { class: "lm-answers" }, el("thead", {}, head), el("tbody", {}, rows));
    }
  }

  /* ------------------------------------------------------------------ start */

  const KINDS = { multiply: MultiplyWidget, knockout: KnockoutWidget };

  function mount(root) {
    let settings;
    const Kind = KINDS[root.dataset.kind];
    try {
      settings = JSON.parse(root.dataset.settings || "{}");
    } catch (err) {
      settings = null;
    }
    if (!Kind || settings === null) {
      root.dataset.state = "error";
      root.append(el("p", { class: "lm-message" }, `This explorable (${root.dataset.kind}) cannot be shown: its settings are malformed.`));
      return;
    }
    const widget = new Kind(root, settings);
    // Load the runtime and models (several MB) only when the reader comes near the widget.
    const begin = () => {
      if (!widget.started) {
        widget.started = true;
        widget.start();
      }
    };
    if ("IntersectionObserver" in window) {
      const seen = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          seen.disconnect();
          begin();
        }
      }, { rootMargin: "600px" });
      seen.observe(root);
    } else {
      begin();
    }
  }

  function mountAll() {
    document.querySelectorAll(".longmul-explorable").forEach(mount);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
