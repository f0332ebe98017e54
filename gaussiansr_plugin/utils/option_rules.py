"""Table-driven checks of option values: kinds (a type and a range), sections and call signatures.

A check raises ``ValueError`` for a bad value and ``KeyError`` for a missing or unknown key, with
a one-line message naming the key's full path (``datasets.train.batch_size_per_gpu``), the value
and what is expected. ``utils/option_sections.py`` holds the tables of BasicSR's sections; our
dataset and model check their own sections with the same kinds.
"""
import inspect
import math
import typing
from typing import Any, Callable, Collection, Dict, Mapping, NamedTuple, Optional


class Kind(NamedTuple):
    """What a value must be: ``expected`` reads in a message ("must be <expected>")."""
    expected: str
    test: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_words(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f' in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    if low is not None:
        return f' {">" if low_open else ">="} {low}'
    return f' {"<" if high_open else "<="} {high}' if high is not None else ''


def _in_range(value: float, low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> bool:
    return ((low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high)))


def integer(low: Optional[int] = None, high: Optional[int] = None, whole_floats: bool = False) -> Kind:
    """An int in [low, high]; ``whole_floats`` also takes 5000.0 (BasicSR's ``!!float 5e3`` counts)."""
    if (low, high) == (1, None):
        words = 'a positive integer'
    elif (low, high) == (0, None):
        words = 'a non-negative integer'
    else:
        words = 'an integer' + _range_words(low, high, False, False)
    whole = (lambda v: _is_number(v) and float(v).is_integer()) if whole_floats else _is_int
    return Kind(words, lambda v: whole(v) and _in_range(v, low, high, False, False))


def number(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
           high_open: bool = False) -> Kind:
    """A finite int or float in the range (bounds closed unless ``*_open``)."""
    words = 'a positive number' if (low, high, low_open) == (0, None, True) else \
        'a number' + _range_words(low, high, low_open, high_open)
    return Kind(words, lambda v: _is_number(v) and _in_range(v, low, high, low_open, high_open))


def one_of(*choices: Any) -> Kind:
    return Kind(f'one of {list(choices)}', lambda v: any(v == c and type(v) is type(c) for c in choices))


def optional(kind: Kind) -> Kind:
    """``kind`` or ``~`` (None)."""
    return Kind(f'{kind.expected} or ~', lambda v: v is None or kind.test(v))


def list_of(kind: Kind, length: Optional[int] = None) -> Kind:
    size = f'{length} ' if length else ''
    return Kind(f'a list of {size}items, each {kind.expected}',
                lambda v: isinstance(v, (list, tuple)) and (length is None or len(v) == length)
                and all(kind.test(item) for item in v))


BOOL = Kind('true or false', lambda v: isinstance(v, bool))
STRING = Kind('a non-empty string', lambda v: isinstance(v, str) and v != '')
MAPPING = Kind('a mapping of keys to values', lambda v: isinstance(v, dict))
POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
POSITIVE_NUMBER = number(0, low_open=True)
ITERATIONS = integer(1, whole_floats=True)  # iteration counts and frequencies: int or !!float 5e3


def describe(value: Any) -> str:
    """``repr(value)``, with a hint when a number was read as text (YAML 1.1 reads ``2e-4`` as a string)."""
    if not isinstance(value, str):
        return repr(value)
    try:
        float(value)
    except ValueError:
        return repr(value)
    if value.strip().lower().lstrip('+-') in ('nan', 'inf', 'infinity'):
        return repr(value)
    if 'e' in value.lower() and '.' not in value:
        return f'{value!r} (a string: YAML reads {value} as text; write {value.lower().replace("e", ".0e", 1)})'
    return f'{value!r} (a string, not a number)'



def check_value(value: Any, kind: Kind, where: str) -> None:
    """Raises ValueError "``where`` must be <expected>, got <value>" unless ``kind`` accepts ``value``."""
    if not kind.test(value):
        raise ValueError(f'{where} must be {kind.expected}, got {describe(value)}')


def check_section(section: Any, rules: Mapping[str, Kind], where: str, required: Collection[str] = (),
                  closed: bool = False, owner: str = '') -> Dict[str, Any]:
    """Checks a mapping of options against ``rules`` (key -> Kind) and returns it.

    Args:
        section: The value found at ``where``.
        rules: Kinds of the keys that may appear (keys not in ``rules`` pass unless ``closed``).
        where: The section's path (``train.optim_g``), or '' for the top level.
        required: Keys that must be present.
        closed: Reject keys missing from ``rules``.
        owner: Who reads the section, for messages (``Adam``, ``ArbitraryScalePairedDataset``).
    """
    check_value(section, MAPPING, where or 'the option file')
    prefix = f'{where}.' if where else ''
    for key in required:
        if key not in section:
            what = f' ({rules[key].expected})' if key in rules else ''
            by = f' by {owner}' if owner else ''
            raise KeyError(f'{prefix}{key} is required{by}{what}')
    if closed:
        unknown = sorted(set(section) - set(rules), key=str)
        if unknown:
            of = f' of {owner}' if owner else ''
            raise KeyError(f'{prefix}{unknown[0]}: unknown key{of}; allowed: {", ".join(sorted(rules))}')
    for key, kind in rules.items():
        if key in section:
            check_value(section[key], kind, f'{prefix}{key}')
    return section


def check_kwargs(target: Callable, kwargs: Mapping[str, Any], where: str, skip: Collection[str] = (),
                 extra: Collection[str] = (), closed: bool = True) -> None:
    """Checks keyword arguments against ``target``'s signature: unknown keys (unless ``target``
    takes ``**kwargs`` and not ``closed``) and missing required arguments raise KeyError.

    Args:
        skip: Parameters the caller supplies itself (``params``, ``optimizer``, ``img``).
        extra: Keys that are read by someone else and never reach ``target`` (``type``).
    """
    name = getattr(target, '__qualname__', getattr(target, '__name__', str(target)))
    params = inspect.signature(target).parameters
    named = {key: p for key, p in params.items()
             if key not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if closed or not takes_any:
        unknown = sorted(set(kwargs) - set(named) - set(extra), key=str)
        if unknown:
            raise KeyError(f'{where}.{unknown[0]}: unknown key for {name}; allowed: '
                           f'{", ".join(sorted(set(named) | set(extra)))}')
    for key, param in named.items():
        if param.default is param.empty and key not in kwargs:
            raise KeyError(f'{where}.{key} is required by {name}')


def annotation_kind(annotation: Any) -> Optional[Kind]:
    """The Kind of a type hint (int, float, bool, str, Sequence[...], Optional[...]); None if unknown."""
    simple = {bool: BOOL, int: integer(), float: number(), str: Kind('a string', lambda v: isinstance(v, str))}
    if annotation in simple:
        return simple[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = annotation_kind(rest[0]) if len(rest) == 1 else None
        return optional(inner) if inner else None
    if origin in (list, tuple) or (isinstance(origin, type) and origin.__name__ == 'Sequence'):
        item = annotation_kind(args[0]) if args else None
        return list_of(item) if item else None
    return None


def default_kind(default: Any) -> Optional[Kind]:
    """The Kind of an argument without a type hint, from its default; None if the default says nothing.

    A number default takes a number, or a list (some archs take either: SwinIR's ``img_size``).
    """
    if isinstance(default, bool):
        return BOOL
    if _is_number(default):
        return Kind(f'a number like its default {default!r}', lambda v: _is_number(v) or isinstance(v, (list, tuple)))
    if isinstance(default, str):
        return Kind(f'a string like its default {default!r}', lambda v: isinstance(v, str))
    if isinstance(default, (list, tuple)):
        return Kind(f'a list like its default {list(default)!r}', lambda v: isinstance(v, (list, tuple)))
    return None


def check_typed_kwargs(target: Callable, kwargs: Mapping[str, Any], where: str) -> None:
    """Checks each of ``kwargs`` against the kind of ``target``'s parameter: its type hint where
    it has one, else the kind of its default (``default_kind``)."""
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable hints: the defaults still say something
        hints = {}
    params = inspect.signature(target).parameters
    for key, value in kwargs.items():
        if key in hints:
            kind = annotation_kind(hints[key])
        else:
            kind = default_kind(params[key].default) if key in params else None
        if kind is not None:
            check_value(value, kind, f'{where}.{key}')
