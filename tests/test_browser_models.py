"""book/_vendor/longmul/longmul-models.js, the models in the reader's browser (issue 24), run under Node
with the vendored onnxruntime-web: its answers, probabilities and knockout effects equal Python's,
and bad input gets a message naming the problem."""

import base64
import gzip
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from longmul.evaluate import answer_digits, predict
from longmul.hooks import run_with_cache
from longmul.onnx_runtime import answer_knockouts, decode_model, load_onnx, torch_logits_fn
from longmul.saved import load_model
from longmul.shipped import MODEL_LABELS, shipped_dir
from longmul.task import problem_from_strings, random_problems

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "js" / "run_models.cjs"
FIXED = [("2365", "4347"), ("9999", "9999"), ("1000", "1000")]
N_RANDOM = 20

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (apt-get install nodejs)")


def run_js(models: dict[str, Path], requests: list[dict]) -> list[dict]:
    payload = json.dumps({"models": {k: str(v) for k, v in models.items()}, "requests": requests})
    done = subprocess.run(
        ["node", str(RUNNER)], input=payload, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def shipped():
    found = {name: shipped_dir(ROOT / "models", name) for name in sorted(MODEL_LABELS)}
    return {name: directory for name, directory in found.items() if directory is not None}


@pytest.fixture(scope="module")
def problems():
    return FIXED + [(str(p.a), str(p.b)) for p in random_problems(N_RANDOM, seed=7)]


def test_answers_and_probabilities_equal_python(shipped, problems, one_thread):
    requests = [{"model": name, "a": a, "b": b} for name in shipped for a, b in problems]
    answers = iter(run_js(shipped, requests))
    for name, directory in shipped.items():
        model = load_model(directory).model
        for a, b in problems:
            js = next(answers)
            expected = predict(model, problem_from_strings(a, b))
            assert js["digits"] == expected.digits, (name, a, b)
            assert js["tokens"] == expected.tokens, (name, a, b)
            assert all(p is not None and 0 < p <= 1 for p in js["probabilities"]), js
            T = js["length"]
            assert js["attentionSize"] == 2 * 4 * T * T and js["residMidSize"] == 2 * T * 128


def test_probabilities_equal_pytorch(shipped, one_thread):
    name, directory = next(iter(shipped.items()))
    model = load_model(directory).model
    pairs = np.array([[2365, 4347]])
    decoded = decode_model(model, torch_logits_fn(model), pairs)
    js = run_js({name: directory}, [{"model": name, "a": "2365", "b": "4347"}])[0]
    probs = torch.softmax(torch.from_numpy(decoded.logits[0]), -1).numpy()
    start = len(decoded.ids[0]) - len(js["tokens"])  # the prompt's length
    answer_at = start + js["tokens"].index("####")  # the position predicting c0
    expected = [probs[answer_at + k, 2 + d] for k, d in enumerate(js["digits"])]
    np.testing.assert_allclose(js["probabilities"], expected, atol=1e-4)


def test_knockouts_change_answers_as_in_python(shipped, one_thread):
    """Five random knockouts into the answer positions per model on one problem, and their logit
    effects, against PyTorch under the same longmul.hooks.Knockout."""
    a, b = "2365", "4347"
    pairs = np.array([[int(a), int(b)]])
    requests, expected = [], []
    changed = 0
    for name, directory in shipped.items():
        model, onnx = load_model(directory).model, load_onnx(directory)
        intact = decode_model(model, torch_logits_fn(model), pairs)
        for k in answer_knockouts(onnx, 5, np.random.default_rng(3)):
            knocked = decode_model(model, torch_logits_fn(model, [k]), pairs)
            forced, _ = run_with_cache(
                model,
                torch.from_numpy(intact.ids),
                torch.from_numpy(np.array(intact.positions)),
                names=[],
                knockouts=[k],
            )
            requests.append({"model": name, "a": a, "b": b, "effect": True, "knockouts": [k.__dict__]})
            expected.append((name, k, intact, knocked, forced.numpy()))
    for js, (name, k, intact, knocked, forced) in zip(run_js(shipped, requests), expected):
        n_c = 8
        assert js["knocked"] == answer_digits(knocked.generated, n_c)[0].tolist(), (name, k)
        assert js["intact"] == answer_digits(intact.generated, n_c)[0].tolist(), (name, k)
        changed += js["knocked"] != js["intact"]
        at = intact.ids.shape[1] - n_c - 2  # ####: predicts c0
        digits = js["intact"]
        change = [forced[0, at + i, 2 + d] - intact.logits[0, at + i, 2 + d] for i, d in enumerate(digits)]
        np.testing.assert_allclose(js["logitChange"], change, atol=1e-3)
    assert changed > 0, "no knockout changed an answer: the test would not notice knockouts ignored"


BAD = [
    ("12a4", "1111", [], "operand a='12a4' contains characters other than the digits 0-9"),
    ("12345", "1111", [], "operand a='12345' must be a 4-digit number without a leading zero"),
    ("0123", "1111", [], "operand a='0123' must be a 4-digit number without a leading zero"),
    ("", "1111", [], "operand a is empty"),
    ("1111", "-123", [], "operand b='-123' is negative"),
    ("1234", "5678", [{"layer": 2, "head": 0, "query": 12, "key": 3}], "names a layer/head the model does not have"),
    ("1234", "5678", [{"layer": 0, "head": 0, "query": 99, "key": 3}], "names a position outside a sequence"),
    ("1234", "5678", [{"layer": 0, "head": 1, "query": 1, "key": [0, 1]}], "removes every key that position 1"),
    ("1234", "5678", "x", "knockouts must be a list of {layer, head, query, key}"),
    ("1234", "5678", [None], "knockout null is not {layer, head, query, key}"),
]


def test_bad_input_is_named_as_python_names_it(shipped):
    name, directory = next(iter(shipped.items()))
    requests = [{"model": name, "a": a, "b": b, "knockouts": k} for a, b, k, _ in BAD]
    requests.append({"model": name, "a": " 2365 ", "b": "4347\n"})  # surrounding blanks are fine, as in Python
    *bad, fine = run_js({name: directory}, requests)
    for out, (a, b, _, message) in zip(bad, BAD, strict=True):
        assert message in out.get("error", ""), (a, b, out)
    assert "error" not in fine and len(fine["digits"]) == 8


def test_the_vendored_webassembly_is_the_package_s():
    """ort-wasm-binary.js holds the package's binary whole (its header records size and sha256)."""
    text = (ROOT / "book" / "_vendor" / "onnxruntime" / "ort-wasm-binary.js").read_text()
    size, sha = re.search(r"ort-wasm-simd-threaded.wasm \(([\d,]+) bytes, sha256 ([0-9a-f]{64})\)", text).groups()
    wasm = gzip.decompress(base64.b64decode(re.search(r'wasmGzipBase64 = "([^"]+)"', text).group(1)))
    assert len(wasm) == int(size.replace(",", "")) and hashlib.sha256(wasm).hexdigest() == sha
    assert wasm[:4] == b"\0asm"
