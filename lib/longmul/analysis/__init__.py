"""Analyses of trained models: one module per finding of the paper.

Every analysis takes a loaded ``GPT2LMHeadModel`` (see :func:`longmul.saved.load_model`) and builds its
inputs with :func:`longmul.evaluate.teacher_forced_batch`, so it works for SFT, aux and ICoT models
(whose answer positions and position ids differ) alike.
"""
