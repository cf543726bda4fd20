"""Where each lane's renormalisation word is in the payload window: the lanes' word positions."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import DecoderParams

__all__ = ["WordPositions"]


class WordPositions(wiring.Component):
    """Counts, for the beat going into S5, how many lanes before each lane take a word.

    The stream holds a beat's renormalisation words in lane order, so lane ``j`` takes the
    word after those of the lanes ``< j`` that take one: its position in the window's head.
    The positions (and the beat's total, at index K) are counted from the lanes' flags
    (``counts_word``, from S4, or from the S4b registers) and registered into S5, so neither
    the lanes' word select nor the window's take starts from the multiplier's carry chain.
    With the S4c stage (ring window, ``ways > 7``; ``> 8`` with S2b) they are registered once
    more on the way.

    Members
    -------
    en : In(1)
        The datapath advances.
    counts_word : In(K)
        Each lane's "will take a word in S5" flag, for the beat before S5 (or before S4c).
    pos : Out(ArrayLayout(range(K + 1), K + 1))
        S5: each lane's word position (a register); ``pos[K]``: the words the beat takes.
    pos_next : Out(ArrayLayout(range(K + 1), K + 1))
        The positions that enter S5 when the datapath advances.
    total_next : Out(count_width(K))
        ``pos_next[K]`` at the width of its sum (the window's take register is made from it).
    read_at : Out(ArrayLayout(range(K + 1), K + 1))
        The positions S5 holds on the next clock (``pos_next`` if ``en``, else ``pos``): where
        the ring window reads the lanes' words a clock ahead.

    Latency: the count is in ``pos`` the clock after the flags (two with S4c). Throughput: a
    beat per enabled clock.
    """

    def __init__(self, params: DecoderParams):
        self.p = p = params
        K = p.lanes
        positions = data.ArrayLayout(range(K + 1), K + 1)
        super().__init__({"en": In(1), "counts_word": In(K), "pos": Out(positions), "pos_next": Out(positions),
                          "read_at": Out(positions), "total_next": Out(self.count_width(K))})

    @staticmethod
    def count_width(lanes: int) -> int:
        """Bits of the lanes' count as it is summed (``range(K + 1)`` plus a bit a lane)."""
        return Shape.cast(range(lanes + 1)).width + lanes

    def elaborate(self, platform):
        m = Module()
        K, xc = self.p.lanes, self.p.s4c
        en = self.en
        pre4 = Const(0, range(K + 1))               # the count so far, lanes < j
        for j in range(K + 1):
            pos = Signal(range(K + 1), name=f"r5_pre{j}" if j < K else "total")
            pre_in = pre4
            if xc:
                pre_in = Signal(range(K + 1), name=f"r4c_pre{j}" if j < K else "total4c")
                with m.If(en):
                    m.d.sync += pre_in.eq(pre4)
            with m.If(en):
                m.d.sync += pos.eq(pre_in)
            m.d.comb += [self.pos[j].eq(pos), self.pos_next[j].eq(pre_in), self.read_at[j].eq(Mux(en, pre_in, pos))]
            if j < K:
                pre4 = pre4 + self.counts_word[j]
        m.d.comb += self.total_next.eq(pre_in)
        return m
