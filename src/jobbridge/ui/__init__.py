"""``jobbridge ui``: a web dashboard of everything in ``$JOBBRIDGE_HOME``.

- :mod:`.views` reads the store (never writes it) and shapes what each page shows:
  plain dicts, no HTTP; large workflows stay cheap (paged SQL, grouped graph).
- :mod:`.server` is the HTTP side: the access token, the JSON API, server-sent
  events when the store changes, and the actions (through the controller, like
  the command line).
- ``static/`` holds the page, its script and its styles: every asset ships in the
  package (login nodes have no internet), with no build step.

Needs the extra ``jobbridge[ui]`` (Starlette and uvicorn); see docs/ui.md.
"""
