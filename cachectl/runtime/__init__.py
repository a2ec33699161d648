"""The mechanisms every command runs through, each decided in one place.

- ``output``: results to standard output, everything else to standard error
- ``wording``: how counts and sizes read in human output
- ``secrets``: credentials kept out of everything cachectl shows, logs or writes
- ``safe_files``: the one way a file someone else may control is opened
- ``interrupts``: the signals that end a run, handled one way for every command
- ``checking``: every check of a batch first, then the work
- ``command_line``: a line of text split into a command's words, as bash would
- ``importing``: the app's own code imported as ``flask --app`` finds it; lazy imports
- ``audit``: the audit log, one JSON line per run that changed a cache

Import from the submodules: this package imports nothing itself, so start-up pays only
for what a command uses.
"""
