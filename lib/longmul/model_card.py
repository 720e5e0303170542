"""The ``README.md`` written beside each saved model: what it is, its scores, how it was trained, and
how to run it with longmul or with plain ``transformers`` (``tests/test_model_card.py`` runs that code)."""

from __future__ import annotations

from pathlib import Path

from .provenance import hours_by_machine


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _without_resume(command: str) -> str:
    return " ".join(part for part in command.split(" ") if part != "--resume")


def _changes(training: dict, prefix: str) -> list[str]:
    lines = []
    for change in training.get("schedule_changes", []):
        what = ", ".join(f"{name} {old} → {new}" for name, (old, new) in change["changed"].items())
        lines.append(f"- {prefix} step {change['step']:,} with {what}")
    return lines


def _commands(training: dict) -> list[str]:
    """How to reproduce the run: its recipe file, or its command, or for a run resumed by hand the
    first command and each later change of what it trains, with the step where it took effect."""
    sessions = training.get("sessions", [])
    first = sessions[0]["command"] if sessions else training["command"]
    recipe = training.get("recipe_file")
    if recipe and not recipe.get("written_after_training"):
        lines = [
            (
                f"- recipe file: `{recipe['path']}` (sha256 `{recipe['sha256']}`), the whole training plan; "
                f"`longmul train {recipe['path']} --out DIR` re-makes it"
            ),
            f"- command: `{first}`",
            *_changes(training, "its plan changes at"),
        ]
        return lines if first == training["command"] else [*lines, f"- last command: `{training['command']}`"]
    if first == training["command"]:
        lines = [f"- command: `{training['command']}`"]
    else:
        lines = [f"- first command: `{first}`", *_changes(training, "resumed at"), f"- last command: `{training['command']}`"]
    if len({_without_resume(s["command"]) for s in sessions if isinstance(s.get("command"), str)}) > 1:
        lines.append(
            "- not a one-file recipe: its sessions ran with different commands (each one, with its machine, "
            "is in `training.json`)"
        )
    if recipe:
        lines.append(
            f"- recipe file: `{recipe['path']}` (sha256 `{recipe['sha256']}`), written after training from these "
            f"records and checked against them; `longmul train {recipe['path']} --out DIR` replays this schedule "
            "in one command"
        )
    return lines


def model_card(path: str | Path, training: dict, metrics: dict, cot_tokens: int = 0) -> str:
    """The card of the model saved in ``path`` (as the reader will type it, e.g. ``models/icot``);
    ``cot_tokens``: chain-of-thought tokens it still writes before ``####`` (an ICoT run in progress)."""
    name = Path(path).as_posix()
    mc = training["model_config"]
    writes = (
        f"generates the last {cot_tokens} tokens of the chain of thought (partial products and running sums; "
        "the rest it has internalised), then `#### c0 c1 … c7 <eos>`."
        if cot_tokens
        else "generates `#### c0 c1 … c7 <eos>`."
    )
    lines = [
        f"# longmul model `{name}`: {training['recipe']} recipe",
        "",
        (
            f"A GPT-2 ({mc['n_layers']} layers, {mc['n_heads']} heads, width {mc['d_model']}, "
            f"{training['n_parameters']:,} parameters) trained from scratch on {mc['n_a']}x{mc['n_b']}-digit "
            f"multiplication with the `{training['recipe']}` recipe of the `longmul` library, reproducing "
            "Bai et al. (2025), *Why Can't Transformers Learn Multiplication?* (arXiv:2510.00184)."
        ),
        "",
        *(
            [
                f"**A snapshot of a run still in training** (step {training['steps']:,}); the finished model will",
                "replace it.",
                "",
            ]
            if training.get("snapshot_of_unfinished_run")
            else []
        ),
        "Digits are written least-significant first. Prompt: `a0 a1 a2 a3 * b0 b1 b2 b3 ||`; the model",
        writes,
        "",
        "## Scores (greedy decoding, exact match of all digits)",
        "",
        "| evaluation set | problems | exact match | per-digit accuracy c0…c7 |",
        "|---|---|---|---|",
    ]
    for key, result in metrics.items():
        digits = " ".join(f"{d:.3f}" for d in result["per_digit"])
        lines.append(f"| {key} | {result['n']:,} | {_pct(result['exact_match'])} | {digits} |")
    lines += [
        "",
        "## Training",
        "",
        *_commands(training),
        (
            f"- seed {training['seed']}, {training['steps']:,} steps, {training['examples']:,} examples, "
            f"{training['wall_time_s'] / 60:.1f} min of wall time over {len(training['sessions'])} session(s)"
        ),
        f"- trained on: {hours_by_machine(training['sessions']) or 'not recorded'} (each session's machine and command: `training.json`)",
        "",
        "## Load it",
        "",
        "```python",
        "from longmul.saved import load_model          # verifies the sha256 manifest",
        "from longmul.evaluate import predict",
        "from longmul.task import problem_from_strings",
        f"loaded = load_model('{name}')",
        "print(predict(loaded.model, problem_from_strings('2365', '4347')).digits)",
        "```",
        "",
        "With plain `transformers` (no longmul), greedy decoding of 2365 × 4347 written units first:",
        "",
        "```python",
        "import torch",
        "from transformers import AutoTokenizer, GPT2LMHeadModel",
        "",
        f"tok = AutoTokenizer.from_pretrained('{name}')",
        f"model = GPT2LMHeadModel.from_pretrained('{name}')",
        "skip = getattr(model.config, 'longmul_position_skip', 0)  # ICoT: chain-of-thought tokens removed in training",
        "ids = tok('5 6 3 2 * 7 4 3 4 ||', return_tensors='pt').input_ids  # 10 prompt tokens",
        "while ids[0, -1] != tok.eos_token_id and skip + ids.shape[1] < model.config.n_positions:",
        "    # tokens after '||' keep the positions they had before the chain of thought was removed",
        "    positions = torch.tensor([list(range(10)) + [10 + skip + t for t in range(ids.shape[1] - 10)]])",
        "    logits = model(ids, position_ids=positions, attention_mask=torch.ones_like(ids)).logits",
        "    ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)",
        "print(tok.decode(ids[0, 10:]))  # the answer after '####': 5 5 6 0 8 2 0 1 <eos>",
        "```",
        "",
    ]
    return "\n".join(lines)
