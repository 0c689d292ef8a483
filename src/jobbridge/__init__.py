"""jobbridge: run workflows of command-line jobs on any computing resource.

The link between the workflow engine and a resource's job manager is a
:class:`jobbridge.scheduler.Scheduler` subclass; see ``jobbridge.schedulers``.
"""

__version__ = "0.1.0"
