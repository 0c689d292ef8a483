"""soma-workflow as if it were not installed: this folder first on PYTHONPATH makes every
``import soma_workflow`` fail, in the command and in every process it starts (the
background engine of ``jobbridge submit`` included)."""

raise ImportError("soma-workflow is not installed (tests/data/no_soma)")
