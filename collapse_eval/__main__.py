"""`python -m collapse_eval ...` runs the command line, like the `collapse-eval` script."""

from collapse_eval.cli import entry

entry()
