"""Instance-level method overrides: how `keras_transfer.fused` swaps in its paths.

An override is a bound method stored in the instance's `__dict__`, so the
class, its other instances, saved configs and weights are untouched, and
removing it gives the class's own method back.
"""

import types


def override(obj, name, function):
    """Makes `obj.name` call `function(obj, ...)`, unless `obj` already has its own `name`."""
    if name not in obj.__dict__:
        object.__setattr__(obj, name, types.MethodType(function, obj))


def has_override(obj, name, function):
    """Whether `obj.name` is `function` installed by `override`."""
    return getattr(obj.__dict__.get(name), "__func__", None) is function


def remove_override(obj, name, function):
    """Removes `function` from `obj.name` if `override` put it there; returns whether it did."""
    if has_override(obj, name, function):
        object.__delattr__(obj, name)
        return True
    return False
