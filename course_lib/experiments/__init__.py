"""Toy-world experiment harnesses, one module per chapter (``chNN_topic``).

These modules set up, train and measure the course's methods on the embedded toy world: the
tiny CLIP's training frames and recipe (chapter 1), the UCoFiA ablation (chapter 2), COREBA's
toy splits, feature sources and checkpoints (chapters 4-5), the corpus evaluation (chapter 6).
Notebooks, tests and ``scripts/`` import them; the library packages (``course_lib.clip``,
``course_lib.corpus``, ...) never do, so the pipeline runs on real data without them.
"""
