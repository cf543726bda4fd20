"""Payload word window: a small in-order buffer that hands the oldest words to the lanes."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import rejected

__all__ = ["WordWindow"]


class WordWindow(wiring.Component):
    """Shift-register FIFO of words with a ``K + 1``-word head.

    Words enter through ``push`` (up to ``words_per_beat`` per clock) and leave
    from the head: ``head[j]`` is the ``j``-th oldest word, ``level`` the number
    of words held. The consumer takes ``take`` (<= ``level``) words from the
    head each clock. The head is at fixed positions, so a lane's word select
    is a small mux driven only by the lanes' own renormalisation flags.

    Parameters
    ----------
    depth : int
        Capacity in words, at least ``lanes + words_per_beat``.
    lanes : int
        Width of the head (and the most words taken per clock).
    words_per_beat : 1 or 2
    width : int
        Bits per word (the decoder stores a 16-bit word and its layer tag).

    Members
    -------
    push : In(stream.Signature(StructLayout({"data": ArrayLayout(width, words_per_beat), "n": range(words_per_beat + 1)})))
        ``n`` words of ``data`` (oldest first). ``ready`` depends only on
        ``level`` (``level <= depth - words_per_beat``).
    head : Out(ArrayLayout(width, lanes + 1))
    level : Out(range(depth + 1))
    take : In(range(lanes + 1))

    Latency: a pushed word is at the head (and counted in ``level``) the clock
    after it is accepted. Throughput: ``words_per_beat`` in and up to ``lanes``
    out per clock.
    """

    def __init__(self, depth: int, lanes: int, words_per_beat: int = 1, width: int = 16):
        if words_per_beat not in (1, 2):
            raise rejected(self, f"words_per_beat must be 1 or 2, not {words_per_beat!r}")
        if not isinstance(depth, int) or depth < lanes + words_per_beat:
            raise rejected(self, f"window depth must be >= lanes + words_per_beat = "
                              f"{lanes + words_per_beat}, not {depth!r}")
        self.depth, self.lanes, self.wpb, self.width = depth, lanes, words_per_beat, width
        self.push_layout = data.StructLayout({"data": data.ArrayLayout(unsigned(width), words_per_beat),
                                              "n": range(words_per_beat + 1)})
        super().__init__({
            "push": In(stream.Signature(self.push_layout)),
            "head": Out(data.ArrayLayout(unsigned(width), lanes + 1)),
            "level": Out(range(depth + 1)),
            "take": In(range(lanes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        B, K = self.depth, self.lanes
        buf = [Signal(self.width, name=f"w{i}") for i in range(B)]
        level = Signal(range(B + 1))
        m.d.comb += self.level.eq(level)
        for j in range(K + 1):
            m.d.comb += self.head[j].eq(buf[j])

        m.d.comb += self.push.ready.eq(level <= B - self.wpb)
        n_in = Signal(range(self.wpb + 1))
        with m.If(self.push.valid & self.push.ready):
            m.d.comb += n_in.eq(self.push.payload.n)

        kept = Signal(range(B + 1))          # words left after the take
        m.d.comb += kept.eq(level - self.take)
        m.d.sync += level.eq(kept + n_in)
        shifted = Array(buf + [buf[-1]] * K)  # reads past the end are don't-cares
        for i in range(B):
            incoming = self.push.payload.data[0]
            if self.wpb == 2 and i >= 1:
                incoming = Mux(kept == i - 1, self.push.payload.data[1], incoming)
            m.d.sync += buf[i].eq(Mux(kept > i, shifted[i + self.take], incoming))
        return m
