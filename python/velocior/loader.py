"""Find the WSGI application named by `module:name`, `module:factory(...)` or `module`.

Every failure becomes one `AppImportError` line that says what was wrong and where (file and line
of the exception raised while importing), because a traceback of the loader itself helps nobody.
"""

from __future__ import annotations

import importlib
import sys
import types

from velocior.errors import AppImportError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

DEFAULT_NAMES = ("application", "app")


def _where(exc: BaseException, module: str) -> str:
    """`file:line` of the innermost frame of the app's own code that raised `exc`."""
    if isinstance(exc, SyntaxError):
        return ""  # its message already says "(file, line N)"
    import traceback  # only on failures, like `ast` and `inspect` below: workers need not hold them

    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "importlib" not in f.filename and
           not f.filename.endswith("velocior/loader.py")]
    if own:
        f = own[-1]
        return f" ({f.filename}, line {f.lineno})"
    return ""


def _exc(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _parse_call(spec: str, text: str) -> tuple[str, list[Any], dict[str, Any]] | None:
    """`name(args)` -> (name, args, kwargs) with literal arguments only; None when not a call."""
    if "(" not in text:
        return None
    import ast

    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise AppImportError(f"bad application spec {spec!r}: {text!r} is not a name or "
                             "a call such as factory() or factory('prod', debug=False)") from None
    if not isinstance(node, ast.Call):
        raise AppImportError(f"bad application spec {spec!r}: expected a name or a call")
    name = ast.unparse(node.func)
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except ValueError:
        raise AppImportError(f"bad application spec {spec!r}: only literal arguments (strings, "
                             "numbers, True/False/None, lists...) can be passed to the factory"
                             ) from None
    if len(kwargs) != len(node.keywords):
        raise AppImportError(f"bad application spec {spec!r}: **kwargs are not supported")
    return name, args, kwargs


def _resolve(obj: object, dotted: str, spec: str, module: str) -> object:
    for part in dotted.split("."):
        if not part.isidentifier():
            raise AppImportError(f"bad application spec {spec!r}: {dotted!r} is not a name")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppImportError(f"cannot find {dotted!r} in module {module!r} (application "
                                 f"spec {spec!r})") from None
    return obj


def import_module(module: str, spec: str) -> Any:
    if not module or not all(p.isidentifier() for p in module.split(".")):
        raise AppImportError(f"bad application spec {spec!r}: {module!r} is not a module name "
                             "(expected MODULE:APP, e.g. myproject.wsgi:application)")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            raise AppImportError(f"cannot import module {module!r}: no module named {e.name!r} "
                                 f"(sys.path[0] is {sys.path[0]!r}; see --chdir and "
                                 "--pythonpath)") from None
        raise AppImportError(f"failed to import module {module!r}: "
                             f"{_exc(e)}{_where(e, module)}") from None
    except SystemExit as e:
        raise AppImportError(f"failed to import module {module!r}: it called "
                             f"sys.exit({e.code!r})") from None
    except Exception as e:
        raise AppImportError(f"failed to import module {module!r}: "
                             f"{_exc(e)}{_where(e, module)}") from None


def load_app(spec: str) -> Any:
    """Import and return the WSGI callable named by `spec`; raise AppImportError otherwise."""
    module, sep, target = spec.strip().partition(":")
    mod = import_module(module.strip(), spec)
    target = target.strip()
    if not sep or not target:
        for name in DEFAULT_NAMES:
            if hasattr(mod, name):
                target = name
                break
        else:
            raise AppImportError(f"module {module!r} has no {' or '.join(DEFAULT_NAMES)}: name "
                                 f"the application, e.g. {module}:myapp")
    call = _parse_call(spec, target)
    if call is None:
        app = _resolve(mod, target, spec, module)
    else:
        name, args, kwargs = call
        factory = _resolve(mod, name, spec, module)
        if not callable(factory):
            raise AppImportError(f"{module}:{name} is not callable (it is a "
                                 f"{type(factory).__name__})")
        try:
            app = factory(*args, **kwargs)
        except Exception as e:
            raise AppImportError(f"application factory {module}:{target} failed: "
                                 f"{_exc(e)}{_where(e, module)}") from None
    if not callable(app):
        raise AppImportError(f"application {spec!r} is not callable (it is a "
                             f"{type(app).__name__})")
    if call is None and _takes_no_arguments(app):
        raise AppImportError(f"{spec!r} takes no arguments, so it is not a WSGI application; "
                             f"if it is a factory that returns one, write {spec.strip()}()")
    return app


_CO_VARARGS = 0x04  # inspect.CO_VARARGS: the function has *args


def _takes_no_arguments(obj: object) -> bool:
    """True for a function that cannot take (environ, start_response) but can be called with no
    arguments (a factory named without its parentheses)."""
    if not isinstance(obj, types.FunctionType):
        return False
    code = obj.__code__
    defaults = obj.__defaults__ or ()
    if (hasattr(obj, "__wrapped__") or hasattr(obj, "__signature__")
            or hasattr(obj, "_partialmethod") or len(defaults) > code.co_argcount):
        return _takes_no_arguments_by_signature(obj)
    # A plain function: its code says what inspect.signature() would (it reads the same fields),
    # without importing inspect (and ast, dis...) into every worker.
    kwdefaults = obj.__kwdefaults__ or {}
    kwonly = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    if any(name not in kwdefaults for name in kwonly):
        return False  # a required keyword-only parameter: callable neither way
    required = code.co_argcount - len(defaults)
    takes_two = (code.co_argcount >= 2 or bool(code.co_flags & _CO_VARARGS)) and required <= 2
    return not takes_two and required == 0


def _takes_no_arguments_by_signature(obj: types.FunctionType) -> bool:
    """The general case (decorated functions: `__wrapped__`, `__signature__`...)."""
    import inspect

    try:
        inspect.signature(obj).bind(None, None)
    except TypeError:
        try:
            inspect.signature(obj).bind()
        except TypeError:
            return False
        return True
    return False
