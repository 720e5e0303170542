"""The ONNX export (longmul.onnx_export) and its runner (longmul.onnx_runtime) on a tiny model: the
re-written forward equals the library's under the same knockouts, the exported graph equals it under
onnxruntime, and the files are checked when loaded."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longmul.cli import main
from longmul.hooks import Knockout, run_with_cache
from longmul.model import PRESETS, build_model
from longmul.onnx_export import EXPORT_RECORD, ONNX_MODEL, KnockoutGPT2, export_onnx, knockout_mask
from longmul.onnx_runtime import decode_model, load_onnx, torch_logits_fn
from longmul.saved import load_model, sha256_file, write_json

T = 12
TINY = build_model(PRESETS["tiny"], seed=1).eval()
L, H = TINY.config.n_layer, TINY.config.n_head


@st.composite
def knockouts(draw):
    """Up to three knockouts of single edges or groups of keys, each leaving its query a key (together
    they may not)."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        query = draw(st.integers(1, T - 1))
        keys = draw(st.lists(st.integers(0, query), min_size=1, max_size=query, unique=True))
        out.append(Knockout(draw(st.integers(0, L - 1)), draw(st.integers(0, H - 1)), query, keys))
    return out


@given(knockouts(), st.integers(0, 2**31 - 1))
def test_the_rewritten_forward_equals_the_library_under_knockouts(kos, seed):
    ids = torch.randint(2, 18, (2, T), generator=torch.Generator().manual_seed(seed))
    positions = torch.arange(T).expand(2, T)
    try:
        mask = torch.from_numpy(knockout_mask(kos, L, H, T))
    except ValueError as err:  # together the knockouts leave a query no key: the library refuses them too
        with pytest.raises(ValueError, match=re.escape(str(err))):
            run_with_cache(TINY, ids, positions, knockouts=kos)
        return
    names = [f"blocks.{i}.{h}" for i in range(L) for h in ("attn.hook_pattern", "hook_resid_mid")]
    expected, cache = run_with_cache(TINY, ids, positions, names=names, knockouts=kos)
    with torch.no_grad():
        logits, attention, resid_mid = KnockoutGPT2(TINY)(ids, positions, mask)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    for layer in range(L):
        torch.testing.assert_close(attention[:, layer], cache[f"blocks.{layer}.attn.hook_pattern"], atol=1e-5, rtol=0)
        torch.testing.assert_close(resid_mid[:, layer], cache[f"blocks.{layer}.hook_resid_mid"], atol=1e-5, rtol=0)
    for k in kos:  # the knocked-out edges carry no weight
        assert float(attention[:, k.layer, k.head, k.query][:, k.key].abs().max()) == 0.0


@pytest.mark.parametrize(
    ("kos", "message"),
    [
        ([Knockout(2, 0, 3, 1)], "layer/head the model does not have"),
        ([Knockout(0, 4, 3, 1)], "layer/head the model does not have"),
        ([Knockout(0, 0, T, 1)], f"outside a sequence of {T} tokens"),
        ([Knockout(0, 0, 0, 0)], "removes every key that position 0 may attend to"),
        ([Knockout(1, 3, 2, [0, 1]), Knockout(1, 3, 2, 2)], r"position 2 may attend to \(layer 1, head 3\)"),
    ],
)
def test_bad_knockouts_are_named(kos, message):
    with pytest.raises(ValueError, match=message):
        knockout_mask(kos, L, H, T)


def test_export_writes_the_graph_and_its_record_into_the_manifest(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert ONNX_MODEL in manifest and EXPORT_RECORD in manifest
    record = json.loads((exported / EXPORT_RECORD).read_text())
    assert record["inputs"] == ["input_ids", "position_ids", "knockout"]
    assert record["outputs"] == ["logits", "attention", "resid_mid"]
    assert record["format"]["cot_tokens"] == 0 and record["format"]["n_layers"] == L
    assert load_model(exported).training  # the torch model still loads and verifies
    assert not (exported / "onnx.tmp").exists()


def test_onnxruntime_decodes_as_pytorch_with_and_without_knockouts(exported):
    model = load_model(exported).model
    onnx = load_onnx(exported)
    pairs = np.array([[1234, 5678], [9999, 9999], [1000, 1000], [2365, 4347]])
    for kos in ([Knockout(0, 1, 9, [0, 5]), Knockout(1, 0, 12, 11)], []):
        ours = decode_model(model, onnx.logits_fn(kos), pairs)
        theirs = decode_model(model, torch_logits_fn(model, kos), pairs)
        assert np.array_equal(ours.generated, theirs.generated)
        assert np.abs(ours.logits - theirs.logits).max() <= 1e-4
    out = onnx.run(ours.ids, ours.positions)  # the last decode: no knockouts
    np.testing.assert_array_equal(out["logits"], ours.logits)
    T = ours.ids.shape[1]
    assert out["attention"].shape == (4, L, H, T, T) and out["resid_mid"].shape == (4, L, T, TINY.config.n_embd)
    np.testing.assert_allclose(out["attention"].sum(-1), 1.0, atol=1e-5)
    _, cache = run_with_cache(model, torch.from_numpy(ours.ids), torch.from_numpy(np.array(ours.positions)))
    for layer in range(L):
        np.testing.assert_allclose(out["attention"][:, layer], cache[f"blocks.{layer}.attn.hook_pattern"], atol=1e-5)
        np.testing.assert_allclose(out["resid_mid"][:, layer], cache[f"blocks.{layer}.hook_resid_mid"], atol=1e-4)


def _edit_manifest(directory, name, sha):
    manifest = json.loads((directory / "manifest.json").read_text())
    if sha is None:
        del manifest[name]
    else:
        manifest[name] = sha
    write_json(directory / "manifest.json", manifest)


def test_a_changed_graph_is_refused(exported, tmp_path):
    copy = shutil.copytree(exported, tmp_path / "copy")
    with open(copy / ONNX_MODEL, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="onnx/model.onnx does not match its sha256"):
        load_onnx(copy)


def test_an_export_the_manifest_does_not_cover_is_refused(exported, tmp_path):
    copy = shutil.copytree(exported, tmp_path / "copy")
    _edit_manifest(copy, EXPORT_RECORD, None)
    with pytest.raises(ValueError, match="does not cover onnx/export.json"):
        load_onnx(copy)


def test_a_stale_export_is_refused_until_exported_again(exported, tmp_path):
    copy = shutil.copytree(exported, tmp_path / "copy")
    record = json.loads((copy / EXPORT_RECORD).read_text())
    record["sources"]["model.safetensors"] = "0" * 64  # as if the weights had changed since the export
    write_json(copy / EXPORT_RECORD, record)
    _edit_manifest(copy, EXPORT_RECORD, sha256_file(copy / EXPORT_RECORD))
    with pytest.raises(ValueError, match="exported from other weights or config.*rerun `longmul export-onnx"):
        load_onnx(copy)
    export_onnx(copy)
    assert load_onnx(copy).format["n_heads"] == H


def test_a_folder_without_an_export_says_how_to_make_one(tiny_sft_model):
    with pytest.raises(ValueError, match="has no onnx/model.onnx: run `longmul export-onnx"):
        load_onnx(tiny_sft_model)


def test_cli_exports_and_names_bad_folders(exported, tmp_path, capsys):
    assert main(["export-onnx", str(exported)]) == 0
    assert "wrote" in capsys.readouterr().out and load_onnx(exported)
    with pytest.raises(SystemExit) as exit_info:
        main(["export-onnx", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"longmul: error: model directory not found: {tmp_path / 'nowhere'}"
