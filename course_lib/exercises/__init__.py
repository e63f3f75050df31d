"""Per-chapter exercise checkers (``ch00``, ``ch01``, ...), built on :mod:`course_lib.checks`.

Each ``check_<exercise>(fn)`` draws random inputs, calls ``fn`` positionally, compares it with the
reference implementation and prints one line, or raises :class:`course_lib.checks.ExerciseError`
whose last line reruns the failing case. The inputs come from the public, seeded maker
``<exercise>_inputs(seed=0, trial=0)``, which returns trial ``trial`` of the check as a tuple of
positional arguments: ``fn(*ch02.isa_aggregate_inputs(seed=0, trial=7))``.
"""
