"""Payload word window: a small in-order buffer that hands the oldest words to the lanes."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .logic import select
from .params import rejected

__all__ = ["WordWindow", "RingWindow"]


def _common(win, depth, lanes, words_per_beat, width) -> dict:
    """Checks and records the parameters both windows have; returns their shared members."""
    if words_per_beat not in (1, 2):
        raise rejected(win, f"words_per_beat must be 1 or 2, not {words_per_beat!r}")
    if not isinstance(depth, int) or depth < lanes + words_per_beat:
        raise rejected(win, f"window depth must be >= lanes + words_per_beat = "
                           f"{lanes + words_per_beat}, not {depth!r}")
    win.depth, win.lanes, win.wpb, win.width = depth, lanes, words_per_beat, width
    win.push_layout = data.StructLayout({"data": data.ArrayLayout(unsigned(width), words_per_beat),
                                         "n": range(words_per_beat + 1)})
    return {"push": In(stream.Signature(win.push_layout)),
            "level": Out(range(depth + 1)),
            "occ": Out(depth),
            "take": In(range(lanes + 1))}


def _level(m, win):
    """The register behind ``win.level``."""
    level = Signal(range(win.depth + 1))
    m.d.comb += win.level.eq(level)
    return level


def _accepted(m, win):
    """Words accepted from ``win.push`` this clock; ``ready`` is a bit of the ``occ``
    register (``level <= depth - words_per_beat``)."""
    m.d.comb += win.push.ready.eq(~win.occ[win.depth - win.wpb])
    n_in = Signal(range(win.wpb + 1))
    with m.If(win.push.valid & win.push.ready):
        m.d.comb += n_in.eq(win.push.payload.n)
    return n_in


def _occupancy(m, win, level, take_of, n_in):
    """``level`` (from :func:`_level`) and ``win.occ`` as registers, for words leaving by
    ``take_of[i]`` (word i's copy of ``take``) and ``n_in`` arriving; returns ``kept_gt_(i)``,
    the signal ``kept > i`` (words left after the take; a constant 1 for i < 0)."""
    B, K = win.depth, win.lanes
    kept = Signal(range(B + 1))          # words left after the take
    m.d.comb += kept.eq(level - take_of[0])
    m.d.sync += level.eq(kept + n_in)
    # the same in thermometer code: `kept > i` is occ[i + take], a (K+1)-way select of
    # registers instead of a subtraction and a compare on the path into every word
    occ = Signal(B)
    m.d.comb += win.occ.eq(occ)
    # (each select is built over its K + 1 candidates: indexing one Array with `i + take`
    # makes a mux over the whole buffer for every word)
    occ_x = [occ[i] for i in range(B)] + [Const(0)] * K
    kept_gt = [Signal(name=f"kept_gt{i}") for i in range(B)]
    m.d.comb += [kept_gt[i].eq(select(occ_x[i:i + K + 1], take_of[i])) for i in range(B)]

    def kept_gt_(i):                     # kept > i, for i >= -2
        return Const(1) if i < 0 else kept_gt[i]
    m.d.sync += occ.eq(Cat(*[select([kept_gt_(i - n) for n in range(win.wpb + 1)], n_in)
                             for i in range(B)]))
    return kept_gt_


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
        ``level`` (a bit of ``occ``: ``level <= depth - words_per_beat``).
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
        common = _common(self, depth, lanes, words_per_beat, width)
        if not isinstance(take_copies, int) or not 1 <= take_copies <= depth:
            raise rejected(self, f"take_copies must be 1 .. depth = {depth}, not {take_copies!r}")
        self.take_copies = take_copies
        super().__init__({
            "push": common["push"],
            "head": Out(data.ArrayLayout(unsigned(width), lanes + 1)),
            **{k: common[k] for k in ("level", "occ", "take")},
            **({"take_dup": In(data.ArrayLayout(range(lanes + 1), take_copies - 1))}
               if take_copies > 1 else {}),
        })

    def elaborate(self, platform):
        m = Module()
        B, K = self.depth, self.lanes
        buf = [Signal(self.width, name=f"w{i}") for i in range(B)]
        level = _level(m, self)
        for j in range(K + 1):
            m.d.comb += self.head[j].eq(buf[j])

        n_in = _accepted(m, self)

        # word i's copy of `take` (groups of consecutive words)
        takes = [self.take, *(self.take_dup[c] for c in range(self.take_copies - 1))]
        take_of = [takes[i * self.take_copies // B] for i in range(B)]
        kept_gt_ = _occupancy(m, self, level, take_of, n_in)
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
                incoming = Mux(kept_gt_(i - 2) & ~kept_gt_(i - 1), self.push.payload.data[1], incoming)
            m.d.sync += buf[i].eq(Mux(kept_gt_(i), shifted[i], incoming))
        return m


class RingWindow(wiring.Component):
    """Ring buffer of words in distributed RAM, read through one registered address per reader.

    Words enter through ``push`` (up to ``words_per_beat`` per clock) and leave in order:
    ``take`` (<= ``level``) of the oldest each clock. Reader ``r`` names the word it wants on
    the next clock by its place among the words held then: ``offset[r]`` = ``n`` asks for
    the ``n``-th oldest word after this clock's ``take``. Its address (read pointer + take +
    offset) is a register, so ``word[r]`` is an asynchronous RAM read straight from a
    flip-flop, and no word ever moves: each reader costs a copy of a small RAM (the copies
    share the write port) instead of every word a mux over its successors (:class:`WordWindow`).
    A word named on the clock it is pushed is read correctly on the next.

    Parameters
    ----------
    depth : int
        Capacity in words, at least ``lanes + words_per_beat``; the RAM has the next power
        of two of entries (in ``words_per_beat`` banks, so each bank takes one write a clock).
    lanes : int
        Most words taken per clock (``take`` and ``offset`` are in ``0..lanes``).
    readers : int >= 1
    words_per_beat : 1 or 2
    width : int
        Bits per word.

    Members
    -------
    push : In(stream.Signature(StructLayout({"data": ArrayLayout(width, words_per_beat), "n": range(words_per_beat + 1)})))
        As :class:`WordWindow`'s.
    level : Out(range(depth + 1))
    occ : Out(depth)
        ``occ[i]`` is ``level > i`` (a register).
    take : In(range(lanes + 1))
    offset : In(ArrayLayout(range(lanes + 1), readers))
    word : Out(ArrayLayout(width, readers))
        The word ``offset[r]`` named on the previous clock (meaningless if it was not held
        then: ``occ`` tells).

    Latency: a pushed word is in ``level`` and readable the clock after it is accepted; a
    reader's word comes the clock after it names it. Throughput: ``words_per_beat`` in and
    up to ``lanes`` out per clock.
    """

    def __init__(self, depth: int, lanes: int, readers: int, words_per_beat: int = 1,
                 width: int = 16):
        common = _common(self, depth, lanes, words_per_beat, width)
        if not isinstance(readers, int) or readers < 1:
            raise rejected(self, f"readers must be an integer >= 1, not {readers!r}")
        self.readers = readers
        self.size = 1 << (depth - 1).bit_length()     # RAM entries (a power of two >= depth)
        super().__init__({
            **common,
            "offset": In(data.ArrayLayout(range(lanes + 1), readers)),
            "word": Out(data.ArrayLayout(unsigned(width), readers)),
        })

    def elaborate(self, platform):
        m = Module()
        R, nb = self.size, self.wpb
        level = _level(m, self)
        n_in = _accepted(m, self)
        _occupancy(m, self, level, [self.take] * self.depth, n_in)

        ab = (R - 1).bit_length()            # address bits
        rp = Signal(ab)                      # oldest word
        wp = Signal(ab)                      # next free entry
        rp_next = Signal(ab)
        m.d.comb += rp_next.eq(rp + self.take)
        m.d.sync += [rp.eq(rp_next), wp.eq(wp + n_in)]

        # bank b holds the entries whose address is b modulo the bank count
        banks = [Memory(shape=unsigned(self.width), depth=R // nb, init=[]) for b in range(nb)]
        for b, mem in enumerate(banks):
            m.submodules[f"ram{b}"] = mem
            wr = mem.write_port()
            data_ = self.push.payload.data
            if nb == 1:
                k, wdata = 0, data_[0]
            else:                            # word k of the beat lands here: (wp + k) % 2 == b
                k = wp[0] if b == 0 else ~wp[0]
                wdata = Mux(k, data_[1], data_[0])
            m.d.comb += [wr.addr.eq((wp + k)[nb - 1:ab]), wr.data.eq(wdata), wr.en.eq(n_in > k)]
        for r in range(self.readers):
            addr = Signal(ab, name=f"addr{r}")
            m.d.sync += addr.eq(rp_next + self.offset[r])
            words = []
            for mem in banks:
                rd = mem.read_port(domain="comb")
                m.d.comb += rd.addr.eq(addr[nb - 1:])
                words.append(rd.data)
            m.d.comb += self.word[r].eq(words[0] if nb == 1 else Mux(addr[0], words[1], words[0]))
        return m
