"""Per-chapter exercise checkers (``ch00``, ``ch01``, ...), built on :mod:`course_lib.checks`.

Each ``check_<exercise>(fn)`` draws random inputs, compares ``fn`` with the reference
implementation and prints one line, or raises :class:`course_lib.checks.ExerciseError`.
"""
