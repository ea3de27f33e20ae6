"""scipy's special-function ufuncs (gammaln, ndtr) without the cost of `import scipy.special`.

`import scipy.special` (scipy 1.15+) loads its array-API dispatch layer, which imports numpy.f2py, numpy.testing
and more: 0.4-0.6 s of CPU, more than a whole `trainsim validate` should take (issue #13). The ufuncs themselves
live in the compiled module scipy.special._special_ufuncs, which loads on its own in a few milliseconds; it is
the very ufunc object scipy.special exports (same numbers). Where that module cannot be loaded alone (another
scipy layout), scipy.special is imported as usual.
"""
from __future__ import annotations

import sys
from functools import lru_cache


@lru_cache(maxsize=None)
def _compiled():
    import importlib.machinery
    import importlib.util
    import os

    import scipy

    name = "scipy.special._special_ufuncs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.machinery.PathFinder.find_spec("_special_ufuncs",
                                                    [os.path.join(os.path.dirname(scipy.__file__), "special")])
    spec = importlib.util.spec_from_file_location(name, spec.origin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def special_ufunc(name: str):
    """The scipy.special ufunc `name` (gammaln, ndtr, ...)."""
    loaded = sys.modules.get("scipy.special")
    if loaded is not None:
        return getattr(loaded, name)
    try:
        return getattr(_compiled(), name)
    except Exception:                  # noqa: BLE001 - any other scipy layout: the public import
        import scipy.special
        return getattr(scipy.special, name)
