"""``python -m optimlab.engine.native_build``: build the native check helper now and say where it is.

Its own module, which the package never imports, so that running it does not import the module
it runs twice (:mod:`optimlab.engine.native` is imported by the engine itself).
"""

import sys

from optimlab.engine.native import main

if __name__ == "__main__":
    sys.exit(main())
