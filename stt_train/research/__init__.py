"""Experiment code behind the README's studies, not part of the product.

The product (``stt-train``, ``stt-eval``, the node) neither imports this package nor reads its
switches; each experiment reaches the product through one named hook:

* :mod:`.headroom`, :mod:`.correspondence`: probes of a trained model on SynthDrive's exact flow
  (``python -m stt_train.research.headroom``, ``python -m stt_train.research.correspondence``);
* :mod:`.controls`: the no-past control, the transformer attending to the current frame in place of
  the previous ones, in training and in evaluation;
* :mod:`.temporal_loss`: an ETC-style temporal loss along the exact flow;
* :mod:`.train`: ``python -m stt_train.research.train``, ``stt-train`` with a ``research`` config
  section (``memory``, ``temporal_weight``) through :class:`stt_train.train.Objective`;
* :mod:`.evaluate`: ``python -m stt_train.research.evaluate``, ``stt-eval`` with ``--memory current``
  through ``evaluate_sequences(before_frame=...)``.
"""
