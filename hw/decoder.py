"""Streaming rANS weight decoder: K lanes, one weight per lane per clock.

The decoder is composed of components, each with its own docstring (latency, throughput,
backpressure) and block test; the map of the code is docs/architecture.md, "The code".
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .checks import LayerChecks
from .classes import ClassSelect
from .flow import FlowControl, take_copies
from .frontend import Frontend, input_layout
from .lane import Lane, window_word_width
from .logic import select
from .output import OutputStage, output_layout
from .params import DecoderParams
from .payload import PayloadFeed
from .sequencer import Sequencer
from .status import Status, status_layout
from .tables import SymbolTables
from .window import RingWindow, WordWindow
from .words import WordPositions

__all__ = ["Decoder", "output_layout", "status_layout"]


def fields(dst, src) -> list:
    """``dst`` driven from the fields of ``src`` it names (views of two struct layouts)."""
    return [getattr(dst, name).eq(getattr(src, name)) for name in dst.shape().members]


class Decoder(wiring.Component):
    """Decodes a v2 weight stream (with ``tables > 1`` also v3: row classes) into signed weight
    codes, ``lanes`` per clock.

    Architecture (``docs/architecture.md``): a parser writes each layer's
    table and initial states into one of two banks while the previous layer
    decodes from the other; payload words go to a small in-order window. Each
    lane is a 6-stage ring (state -> symbol lookup -> f/c read -> multiply ->
    add -> renormalise -> state) carrying ``ways`` interleaved rANS states, so
    a lane finishes one symbol per clock although one state takes 6 clocks.

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": word_width, "last": 1})))
        Stream words (two per beat at 32 bits, first in bits 0..15); ``last``
        on the stream's final beat.
    o : Out(stream.Signature(output_layout(params)))
        ``codes[0..count-1]`` are the next weights of the current layer, in
        order; ``last`` marks a layer's final beat (an empty layer is one beat
        with ``count = 0``).
    status : Out(StructLayout({"busy": 1, "done": 1, "error": ErrorCode}))
        ``busy`` from the first word of a stream until it is decoded;
        ``done`` after that (until the next stream starts) or after an error.
        ``error`` is sticky until reset; after an error the decoder stops
        producing output and accepts and drops all input (it never blocks
        its source).

    Throughput: ``lanes`` weights per clock while input words are available and
    ``o`` is ready, across layer boundaries (the next layer's header loads
    into the other bank while the current layer decodes). Input needed:
    about ``lanes * bits_per_weight / 16`` words per clock.
    Latency: the first weights leave 4 clocks after the first layer's header
    with ``lookup="compare"`` (the bank is ready before the header's check
    word; the weights leave from R2, the lanes' registered symbol, before the
    ring finishes the beat); ``table``: ``FIRST_WEIGHT_CLOCKS`` = 3 after the
    slot fill, its weights leaving from S1 (``DecoderParams.first_weight_clocks``);
    measured figures in ``docs/results.md``.
    Backpressure: any ``i.valid`` / ``o.ready`` pattern; ``o`` holds its
    payload while not ready; the whole datapath stalls together.
    Errors: parse errors (header words, tables, check words, ``last``) are
    flagged on ``status.error`` at most 3 clocks after the offending word is
    accepted; the per-layer final-state and payload-length checks at most
    ``LAYER_CHECK_CLOCKS`` = 5 (7 with ``ways > 6``, 8 with the ring window and ``ways > 7``; with
    row classes' S2b stage each threshold one way higher) clocks
    after the layer's ``last`` beat leaves ``o`` (``DecoderParams.layer_check_clocks``, ``docs/decoder.md``).
    """

    def __init__(self, params: DecoderParams = DecoderParams()):
        self.p = params
        super().__init__({
            "i": In(stream.Signature(input_layout(params.word_width))),
            "o": Out(stream.Signature(output_layout(params))),
            "status": Out(status_layout),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        K = p.lanes
        m.submodules.frontend = fe = Frontend(p)
        m.submodules.payload = payload = PayloadFeed(p)
        if p.ring_window:   # lane j's word (and the one after the lanes' words) read at its own address
            win = RingWindow(p.window_depth, K, K + 1, p.words_per_beat, width=window_word_width(p))
        else:
            win = WordWindow(p.window_depth, K, p.words_per_beat, width=window_word_width(p),
                             take_copies=take_copies(p))
        m.submodules.window = win
        m.submodules.sequencer = seq = Sequencer(p)
        m.submodules.tables = tables = SymbolTables(p)
        lanes = [Lane(p, j) for j in range(K)]
        for j, lane in enumerate(lanes):
            m.submodules[f"lane{j}"] = lane
        m.submodules.positions = positions = WordPositions(p)
        m.submodules.flow = flow = FlowControl(p)
        m.submodules.checks = checks = LayerChecks(p, window_word_width(p))
        m.submodules.output = output = OutputStage(p)
        m.submodules.status_unit = status = Status()
        en = flow.en

        # the word stream: header words into the banks, payload words into the window
        wiring.connect(m, wiring.flipped(self.i), fe.i)
        wiring.connect(m, fe.push, payload.i)
        wiring.connect(m, payload.o, win.push)
        m.d.comb += [*fields(payload.loading, fe.loading),
                     fe.bank_busy.eq(seq.bank_busy), fe.drained.eq(seq.drained),
                     fe.shadow_busy.eq(tables.shadow_busy if p.lookup == "compare" else 0)]

        # the banks: layer plan (sequencer), symbol tables, initial states (lanes), bases (output)
        m.d.comb += [seq.en.eq(en), *fields(seq.fields, fe.fields), *fields(seq.ready, fe.ready),
                     *fields(seq.ready_soon, fe.ready_soon),
                     tables.en.eq(en), tables.lane_en.eq(flow.lane_en), tables.clear.eq(fe.fields.we),
                     *fields(tables.freq, fe.freq), *fields(tables.slot, fe.slot), tables.ready.eq(fe.ready.we),
                     *fields(tables.entering, seq.entering), tables.r2_bank.eq(seq.r2.bank),
                     *fields(output.base_write, fe.fields)]

        # the lanes, and the window's words at their positions
        if p.ring_window:
            words = [win.word[r] for r in range(K + 1)]
            m.d.comb += win.offset.eq(positions.read_at)
        else:
            words = [select([win.head[k] for k in range(r + 1)], positions.pos[r]) if r else win.head[0]
                     for r in range(K + 1)]
        for j, lane in enumerate(lanes):
            m.d.comb += [lane.en.eq(flow.lane_en[j]), *fields(lane.state_write, fe.state),
                         lane.state_read.way.eq(seq.issue.way), lane.state_read.bank.eq(seq.issue.bank),
                         lane.init.eq(seq.entering.init), lane.fc.eq(tables.fc[j]),
                         tables.fc_symbol[j].eq(lane.fc_symbol),
                         lane.s4_active.eq(seq.r4.valid & seq.r4.act[j]), lane.word.eq(words[j]),
                         positions.counts_word[j].eq(lane.counts_word), output.symbols[j].eq(lane.symbol),
                         checks.needs_word[j].eq(lane.needs_word), checks.final_ok[j].eq(lane.final_ok)]
            if p.lookup == "compare" and p.classed:       # each lane's own table
                m.d.comb += [lane.cum.eq(tables.cum[j]), lane.cum_mask.eq(tables.cum_mask[j])]
            elif p.lookup == "compare":
                m.d.comb += [lane.cum.eq(tables.cum), lane.cum_mask.eq(tables.cum_mask)]
            else:
                m.d.comb += [tables.slot_index[j].eq(lane.slot_index), lane.slot_word.eq(tables.slot_word[j])]
        m.d.comb += positions.en.eq(en)

        if p.early_activation:
            m.d.comb += [tables.en_next.eq(flow.en_next), tables.issue_first.eq(seq.issue.first)]

        # row classes (stream v3): each lane's table per beat
        if p.classed:
            m.submodules.classes = classes = ClassSelect(p)
            m.d.comb += [classes.en.eq(en), *fields(classes.issue, seq.issue), *fields(classes.fields, fe.class_fields),
                         *fields(classes.word, fe.class_word), tables.entering_tab.eq(classes.entering_tab),
                         tables.r1_tab.eq(classes.r1_tab),
                         *([tables.r1_bank.eq(seq.r1.bank)] if not p.fc_sync else []),
                         status.class_error.eq(classes.error)]

        # flow control, the end-of-layer checks, the output and the status
        m.d.comb += [flow.room.eq(output.room), flow.occ.eq(win.occ), flow.payload_done.eq(payload.payload_done),
                     *fields(flow.r5_next, seq.r5_next), *fields(flow.r5, seq.r5), flow.halt_next.eq(status.halt_next),
                     flow.total.eq(positions.pos[K]), flow.total_next.eq(positions.total_next),
                     win.take.eq(flow.take)]
        if take_copies(p) > 1:
            m.d.comb += win.take_dup.eq(flow.take_dup)
        m.d.comb += [checks.en.eq(en), *fields(checks.r5, seq.r5), checks.payload_done.eq(payload.payload_done),
                     checks.occ.eq(win.occ), checks.pos.eq(positions.pos),
                     [checks.words[r].eq(words[r]) for r in range(K + 1)]]
        # the weights leave from R2 (compare), or R1 (table) (Lane.symbol): their beat and, a stage before, its bank
        m.d.comb += [output.en.eq(en), output.r0_bank.eq(seq.r1.bank if p.late_weights else seq.r0.bank),
                     *fields(output.r1, seq.r2 if p.late_weights else seq.r1)]
        wiring.connect(m, output.o, wiring.flipped(self.o))
        m.d.comb += [status.parse_error.eq(fe.error), status.layer_flags.eq(checks.flags),
                     status.stream_start.eq(fe.stream_start), status.stream_end.eq(fe.stream_end),
                     fe.halt.eq(status.halt), self.status.eq(status.status)]
        return m
