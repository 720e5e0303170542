"""A digit-level tokenizer (Hugging Face ``tokenizers``) over :data:`longmul.sequences.VOCAB`.

It is saved beside every model so that ``AutoTokenizer.from_pretrained(model_dir)`` works with plain
``transformers``. ``||`` is split off its neighbours, so an ICoT line such as
``5 6 3 2 * 7 4 3 4||5 5 5 6 1 …`` tokenizes without extra spaces. Training itself builds token ids
directly from digits (:mod:`longmul.sequences`); a test checks the two agree.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .sequences import TOKEN_ID


def build_tokenizer() -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token=None))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\|\|"), behavior="isolated"),
            pre_tokenizers.WhitespaceSplit(),
        ]
    )
    # No decoder: decoding joins the tokens with spaces. (A WordPiece decoder, the usual way to get
    # that, would read the answer marker "####" as a continuation prefix and glue it to the digit before.)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<eos>",
        pad_token="<pad>",
        model_max_length=512,
    )
