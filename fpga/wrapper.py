"""Verilog wrappers around a design's top module, generated from its port list.

Two wrappers, both plain Verilog-2001 emitted by Amaranth around an ``Instance`` of the top
(the top's own Verilog is read next to them):

:class:`RegisteredWrapper` -- for dropping into a vendor flow
    Same ports as the top, every one registered, so that the top's timing is register to
    register whatever the surrounding logic does. Streams (ports ``P__valid``, ``P__ready``
    and ``P__*``, the names Amaranth gives a ``stream.Signature`` member ``P``) pass through a
    :class:`RegisterSlice` each, which keeps the ready/valid handshake intact at full throughput;
    every other port gets one register. ``rst`` reaches the top through one register.

:class:`ScanWrapper` -- for small packages (iCE40 UP5K SG48 has 39 I/Os)
    Five pins (``clk``, ``rst``, ``si``, ``cap``, ``so``): all inputs of the top (stream
    ``ready``s included) come from a shift register fed by ``si``; all outputs are captured
    into a second shift register when ``cap`` is high and shifted out on ``so`` otherwise.
    Every input bit is driven by a flip-flop and every output bit is observable, so synthesis
    can neither constant-fold nor remove any of the top's logic. The instance carries
    ``keep_hierarchy`` so that yosys reports the top's cells apart from the wrapper's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Port", "parse_portlist", "stream_groups", "RegisterSlice", "RegisteredWrapper", "ScanWrapper",
           "registered_wrapper_verilog", "scan_wrapper_verilog"]

CLOCK, RESET = "clk", "rst"


@dataclass(frozen=True)
class Port:
    """One port of a Verilog module: ``direction`` is ``"input"`` or ``"output"``."""
    name: str
    direction: str
    width: int


def parse_portlist(text: str) -> list[Port]:
    """Ports from the output of yosys ``portlist`` (lines ``input [31:0] name``), in order.

    Raises
    ------
    ValueError
        If the listing has an ``inout`` port or no port at all.
    """
    ports = []
    for d, hi, lo, name in re.findall(r"^\s*(input|output|inout) \[(\d+):(\d+)\] (\S+)\s*$", text, re.M):
        if d == "inout":
            raise ValueError(f"inout port {name!r} is not supported by the wrappers")
        ports.append(Port(name, d, abs(int(hi) - int(lo)) + 1))
    if not ports:
        raise ValueError("no ports in the yosys portlist output")
    return ports


def stream_groups(ports: list[Port]) -> tuple[dict[str, list[Port]], list[Port]]:
    """Split ports into streams and plain ports.

    A stream ``P`` is a pair of ports ``P__valid``/``P__ready`` of opposite directions; its data
    members are all other ports named ``P__*`` with the direction of ``P__valid``.

    Returns
    -------
    (streams, plain)
        ``streams`` maps ``P`` to ``[valid, ready, *data]``; ``plain`` lists the remaining ports
        other than ``clk`` and ``rst``.
    """
    by_name = {p.name: p for p in ports}
    streams, used = {}, {CLOCK, RESET}
    for p in ports:
        if not p.name.endswith("__valid") or p.width != 1:
            continue
        prefix = p.name[:-len("__valid")]
        ready = by_name.get(prefix + "__ready")
        if ready is None or ready.width != 1 or ready.direction == p.direction:
            continue
        data = [q for q in ports if q.name.startswith(prefix + "__") and q.direction == p.direction
                and q is not p and q.name not in used]
        streams[prefix] = [p, ready, *data]
        used.update(q.name for q in streams[prefix])
    return streams, [p for p in ports if p.name not in used]


def _check_ports(component, top, ports, need_output=False):
    names = {p.name for p in ports}
    error = None
    if CLOCK not in names:
        error = f"module {top!r} has no {CLOCK!r} port; ports: {sorted(names)}"
    for p in ports:
        if p.name in (CLOCK, RESET) and (p.direction != "input" or p.width != 1):
            error = f"port {p.name!r} must be a 1-bit input, not a {p.width}-bit {p.direction}"
    if need_output and not any(p.direction == "output" for p in ports):
        error = f"module {top!r} has no output: nothing would survive synthesis"
    if error:
        component._MustUse__silence = True  # never elaborated: no "created but never used" warning
        raise ValueError(error)


def _instance(top, ports, sigs, rst, **attrs):
    args = [("i", CLOCK, ClockSignal())]
    if any(p.name == RESET for p in ports):
        args.append(("i", RESET, rst))
    args += [("i" if p.direction == "input" else "o", p.name, sigs[p.name])
             for p in ports if p.name not in (CLOCK, RESET)]
    return Instance(top, *args, *(("a", k, v) for k, v in attrs.items()))


def _reset_register(m):
    """``rst`` through one flip-flop (itself never reset), high from configuration on."""
    rst_q = Signal(init=1, reset_less=True)
    m.d.sync += rst_q.eq(ResetSignal())
    return rst_q


class RegisterSlice(wiring.Component):
    """A full register slice (skid buffer) on a stream of ``width``-bit payloads.

    ``o.valid``, ``o.payload`` and ``i.ready`` are all driven by flip-flops.

    Latency: 1 cycle. Throughput: one transfer per cycle, with any backpressure pattern.
    Backpressure: when ``o`` stalls, the slice takes one more payload into its skid register
    and then deasserts ``i.ready`` (one cycle after the stall began).

    Members
    -------
    i : ``In(stream.Signature(width))``
    o : ``Out(stream.Signature(width))``
    """

    def __init__(self, width: int):
        if not isinstance(width, int) or width < 1:
            raise TypeError(f"width must be a positive integer, not {width!r}")
        self.width = width
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self.width, reset_less=True)
        skid_valid = Signal()
        payload = Signal(self.width, reset_less=True)
        valid = Signal()
        m.d.comb += [self.o.payload.eq(payload), self.o.valid.eq(valid), self.i.ready.eq(~skid_valid)]
        with m.If(self.o.ready | ~valid):
            with m.If(skid_valid):
                m.d.sync += [payload.eq(skid), valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [payload.eq(self.i.payload), valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class RegisteredWrapper(wiring.Component):
    """The top ``top`` with every port registered (see the module docstring).

    Parameters
    ----------
    top : str
        Module name of the wrapped design.
    ports : list of Port
        Its ports (:func:`parse_portlist`); needs a 1-bit input ``clk``; ``rst`` is optional.

    Members
    -------
    One member per port of ``top`` except ``clk``/``rst``, same name, direction and width.

    Latency: +1 cycle on every input and on every output (a stream through the wrapper: +2).
    Throughput and backpressure: those of ``top`` (register slices sustain one transfer per cycle).

    Raises
    ------
    ValueError
        If ``clk`` is missing or ``clk``/``rst`` is not a 1-bit input.
    """

    def __init__(self, top: str, ports: list[Port]):
        _check_ports(self, top, ports)
        self.top, self.ports = top, list(ports)
        super().__init__({p.name: (In if p.direction == "input" else Out)(p.width)
                          for p in ports if p.name not in (CLOCK, RESET)})

    def elaborate(self, platform):
        m = Module()
        streams, plain = stream_groups(self.ports)
        inner = {p.name: Signal(p.width, name=f"top_{p.name}") for p in self.ports
                 if p.name not in (CLOCK, RESET)}
        outer = {name: getattr(self, name) for name in inner}
        for prefix, (valid, ready, *data) in streams.items():
            m.submodules[f"slice_{prefix}"] = s = RegisterSlice(sum(p.width for p in data) or 1)
            src, dst = (outer, inner) if valid.direction == "input" else (inner, outer)
            m.d.comb += [s.i.valid.eq(src[valid.name]), src[ready.name].eq(s.i.ready),
                         dst[valid.name].eq(s.o.valid), s.o.ready.eq(dst[ready.name])]
            if data:
                m.d.comb += [s.i.payload.eq(Cat(src[p.name] for p in data)),
                             Cat(dst[p.name] for p in data).eq(s.o.payload)]
        for p in plain:
            src, dst = (outer, inner) if p.direction == "input" else (inner, outer)
            m.d.sync += dst[p.name].eq(src[p.name])
        m.submodules.top = _instance(self.top, self.ports, inner, _reset_register(m))
        return m


class ScanWrapper(wiring.Component):
    """The top ``top`` behind a five-pin scan interface (see the module docstring).

    Members
    -------
    si : ``In(1)``
        Serial input; the shift register feeding all inputs of ``top`` shifts every cycle.
    cap : ``In(1)``
        High: capture all outputs of ``top``; low: shift the captured bits towards ``so``.
    so : ``Out(1)``
        Serial output (most significant captured bit first).

    Raises
    ------
    ValueError
        If ``top`` has no output, or ``clk``/``rst`` is missing or malformed.
    """

    def __init__(self, top: str, ports: list[Port]):
        _check_ports(self, top, ports, need_output=True)
        self.top, self.ports = top, list(ports)
        super().__init__({"si": In(1), "cap": In(1), "so": Out(1)})

    def elaborate(self, platform):
        m = Module()
        inner = {p.name: Signal(p.width, name=f"top_{p.name}") for p in self.ports
                 if p.name not in (CLOCK, RESET)}
        ins = Cat(inner[p.name] for p in self.ports if p.direction == "input" and p.name in inner)
        outs = Cat(inner[p.name] for p in self.ports if p.direction == "output")
        if len(ins):
            in_sr = Signal(len(ins), reset_less=True)
            m.d.sync += in_sr.eq(Cat(self.si, in_sr[:-1]))
            m.d.comb += ins.eq(in_sr)
        out_sr = Signal(len(outs), reset_less=True)
        with m.If(self.cap):
            m.d.sync += out_sr.eq(outs)
        with m.Else():
            m.d.sync += out_sr.eq(out_sr << 1)
        m.d.comb += self.so.eq(out_sr[-1])
        m.submodules.top = _instance(self.top, self.ports, inner, _reset_register(m), keep_hierarchy=1)
        return m


def _convert(component, name):
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False)


def registered_wrapper_verilog(top: str, ports: list[Port], name: str | None = None) -> str:
    """Verilog of :class:`RegisteredWrapper`; module name ``name`` (default ``<top>_wrap``)."""
    return _convert(RegisteredWrapper(top, ports), name or f"{top}_wrap")


def scan_wrapper_verilog(top: str, ports: list[Port], name: str = "subbit_scan_top") -> str:
    """Verilog of :class:`ScanWrapper`, module name ``name``."""
    return _convert(ScanWrapper(top, ports), name)
