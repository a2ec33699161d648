"""``python -m cachectl``: the same command as the ``cachectl`` console script.

``python -m`` puts the current directory first on ``sys.path``, where the console script
does not: a module planted in the directory an operator runs from (``/tmp``) could then
shadow one cachectl imports. It goes, so both entry points import the same code; ``--app``
and a function's module still see the current directory, as ``flask --app`` does, where
they add it on purpose.
"""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from cachectl.cli import main

main()
