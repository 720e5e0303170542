"""longmul: reproduce and dissect *Why Can't Transformers Learn Multiplication?* (Bai et al., 2025).

Modules: :mod:`~longmul.task` (problems, running sums, ICoT format), :mod:`~longmul.sequences`
(token layout), :mod:`~longmul.tokenizer`, :mod:`~longmul.model` (GPT-2 presets),
:mod:`~longmul.hooks` (named activations, attention knockout), :mod:`~longmul.train` (SFT / ICoT /
aux recipes), :mod:`~longmul.evaluate`, :mod:`~longmul.saved` (model directories), :mod:`~longmul.cli`.
"""

__version__ = "0.1.0"
