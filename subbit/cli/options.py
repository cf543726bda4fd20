"""The decoder's options, generated from `subbit.hw.params.DecoderParams`: each field's metadata holds
its help and legal values, the dataclass its default and its checks, so a parameter is declared once
for ``verilog``, ``synth``, ``bench rtl``, ``decode --rtl`` and the stream's coder options
(``compress``, ``train``: the stream's M, lanes and ways are the decoder's)."""

from __future__ import annotations

import dataclasses

from subbit.hw.params import DecoderParams

from .common import Option

__all__ = ["decoder_option", "decoder_options", "params_from_args"]

_FIELDS = {f.name: f for f in dataclasses.fields(DecoderParams)}
_UNSET = object()


def decoder_option(name: str, *, default=_UNSET, default_text: str | None = None, nargs: str | None = None,
                   what: str | None = None, metavar=_UNSET) -> Option:
    """The option ``--name`` of the field ``name`` of `DecoderParams`.

    Parameters
    ----------
    default
        The command's default, if not the dataclass's (None: the command chooses, see ``default_text``).
    default_text
        What the default is, in words, when the value alone does not say it.
    nargs
        ``"+"`` for a list of values (``bench rtl`` sweeps them).
    what
        Replaces the field's help (``"lane counts"`` for a list), keeping its legal values.
    """
    f = _FIELDS[name]
    o = f.metadata["option"]
    value = f.default if default is _UNSET else default
    if default_text is None:
        default_text = o["default_text"] if value is None else \
            " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        default_text = f"default: {default_text}" if value is None else f"default {default_text}"
    else:
        default_text = f"default: {default_text}"
    help = (what or o["help"]) + (f": {o['legal']}" if o["legal"] else "") + f" ({default_text})"
    kwargs = {"default": value, "help": help}
    if o["choices"]:
        kwargs["choices"] = list(o["choices"])
    if isinstance(f.default, int) or (o["choices"] and isinstance(o["choices"][0], int)):
        kwargs["type"] = int
    if nargs:
        kwargs["nargs"] = nargs
    m = o["metavar"] if metavar is _UNSET else metavar
    if m and not o["choices"]:
        kwargs["metavar"] = m
    flags = ("--" + name.replace("_", "-"),) + ((o["short"],) if o["short"] else ())
    return Option(flags, kwargs)


def decoder_options(parser, names=None, **overrides) -> None:
    """Add the options of ``names`` (default: every field, in the dataclass's order) to ``parser``;
    ``overrides[name]`` holds :func:`decoder_option` keywords for that field."""
    for name in names or _FIELDS:
        decoder_option(name, **overrides.get(name, {})).add_to(parser)


def params_from_args(args, **given) -> DecoderParams:
    """The `DecoderParams` of the parsed options (those absent or None take the dataclass's defaults;
    ``given`` wins)."""
    kw = {n: getattr(args, n) for n in _FIELDS if getattr(args, n, None) is not None}
    return DecoderParams(**dict(kw, **given))
