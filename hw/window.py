"""Payload word window: a small in-order buffer that hands the oldest words to the lanes."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .logic import select
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
    take_copies : int
        How many equal copies of ``take`` drive the buffer (``take`` and
        ``take_copies - 1`` more in ``take_dup``, each for its own group of
        words): a registered ``take`` then drives a fraction of the shifter.

    Members
    -------
    push : In(stream.Signature(StructLayout({"data": ArrayLayout(width, words_per_beat), "n": range(words_per_beat + 1)})))
        ``n`` words of ``data`` (oldest first). ``ready`` depends only on
        ``level`` (``level <= depth - words_per_beat``).
    head : Out(ArrayLayout(width, lanes + 1))
    level : Out(range(depth + 1))
    occ : Out(depth)
        ``level`` as a thermometer code: ``occ[i]`` is ``level > i`` (a register, so
        comparisons of ``level`` with a constant or a small count are a bit select).
    take : In(range(lanes + 1))
    take_dup : In(ArrayLayout(range(lanes + 1), take_copies - 1))
        Only with ``take_copies`` > 1: must equal ``take``.

    Latency: a pushed word is at the head (and counted in ``level``) the clock
    after it is accepted. Throughput: ``words_per_beat`` in and up to ``lanes``
    out per clock.
    """

    def __init__(self, depth: int, lanes: int, words_per_beat: int = 1, width: int = 16,
                 take_copies: int = 1):
        if words_per_beat not in (1, 2):
            raise rejected(self, f"words_per_beat must be 1 or 2, not {words_per_beat!r}")
        if not isinstance(depth, int) or depth < lanes + words_per_beat:
            raise rejected(self, f"window depth must be >= lanes + words_per_beat = "
                              f"{lanes + words_per_beat}, not {depth!r}")
        if not isinstance(take_copies, int) or not 1 <= take_copies <= depth:
            raise rejected(self, f"take_copies must be 1 .. depth = {depth}, not {take_copies!r}")
        self.depth, self.lanes, self.wpb, self.width = depth, lanes, words_per_beat, width
        self.take_copies = take_copies
        self.push_layout = data.StructLayout({"data": data.ArrayLayout(unsigned(width), words_per_beat),
                                              "n": range(words_per_beat + 1)})
        super().__init__({
            "push": In(stream.Signature(self.push_layout)),
            "head": Out(data.ArrayLayout(unsigned(width), lanes + 1)),
            "level": Out(range(depth + 1)),
            "occ": Out(depth),
            "take": In(range(lanes + 1)),
            **({"take_dup": In(data.ArrayLayout(range(lanes + 1), take_copies - 1))}
               if take_copies > 1 else {}),
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

        # word i's copy of `take` (groups of consecutive words)
        takes = [self.take, *(self.take_dup[c] for c in range(self.take_copies - 1))]
        take_of = [takes[i * self.take_copies // B] for i in range(B)]
        kept = Signal(range(B + 1))          # words left after the take
        m.d.comb += kept.eq(level - self.take)
        m.d.sync += level.eq(kept + n_in)
        # the same in thermometer code: `kept > i` is occ[i + take], a (K+1)-way select of
        # registers instead of a subtraction and a compare on the path into every word
        occ = Signal(B)
        m.d.comb += self.occ.eq(occ)
        # (each select is built over its K + 1 candidates: indexing one Array with `i + take`
        # makes a mux over the whole buffer for every word)
        occ_x = [occ[i] for i in range(B)] + [Const(0)] * K
        kept_gt = [Signal(name=f"kept_gt{i}") for i in range(B)]
        m.d.comb += [kept_gt[i].eq(select(occ_x[i:i + K + 1], take_of[i])) for i in range(B)]

        def kept_gt_(i):                     # kept > i, for i >= -2
            return Const(1) if i < 0 else kept_gt[i]
        m.d.sync += occ.eq(Cat(*[select([kept_gt_(i - n) for n in range(self.wpb + 1)], n_in)
                                 for i in range(B)]))
        # the words moved up by `take`: a shifter of 4-way stages, one per two bits of `take`
        # (K = 8: 4.4k fewer LUT4 than one (K + 1)-way select per word on ECP5)
        shifted = list(buf)
        for d in range(0, max(1, K.bit_length()), 2):
            n_opts = min(4, (K >> d) + 1)
            # reads past the end are don't-cares (the word is replaced by `incoming` there)
            shifted = [select([shifted[min(i + (a << d), B - 1)] for a in range(n_opts)],
                              take_of[i][d:d + 2])
                       for i in range(B)]
        for i in range(B):
            incoming = self.push.payload.data[0]
            if self.wpb == 2 and i >= 1:      # kept == i - 1: the second word lands here
                incoming = Mux(kept_gt_(i - 2) & ~kept_gt[i - 1], self.push.payload.data[1], incoming)
            m.d.sync += buf[i].eq(Mux(kept_gt[i], shifted[i], incoming))
        return m
