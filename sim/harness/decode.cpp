// C harness of the Verilated `subbit_decoder` top (hw/verilog.py), loaded by sim/fast.py with
// ctypes: feeds a whole word stream (input always valid, output always ready) and collects the
// codes and layer ends. Output payloads up to 64 bits (K * code_bits + count + last). The port
// fields come from ports.h, written next to this file by sim/fast.py from the Amaranth layouts
// (subbit.sim.ports).
#include <cstdint>
#include "ports.h"
#include "Vtop.h"
#include "verilated.h"

// Verilator escapes the double underscore of amaranth's stream port names (i__valid -> i___05Fvalid).

extern "C" {
// stats: [0] clocks to `done`, [1] codes, [2] layers, [3] status, [4] clock of the first code,
// [5] output beats. Returns the number of codes or -1 (timeout), -2 (decoder error).
int64_t sb_decode(const uint64_t* beats, int64_t n_beats, int16_t* codes, int64_t max_codes, int64_t* layer_ends, int64_t max_layers,
                  uint64_t* stats, int64_t timeout) {
    VerilatedContext ctx;
    Vtop* t = new Vtop{&ctx};
    t->rst = 1; t->i___05Fvalid = 0; t->i___05Fpayload = 0; t->o___05Fready = 0;
    for (int k = 0; k < 2; ++k) { t->clk = 0; t->eval(); t->clk = 1; t->eval(); }
    t->rst = 0;
    t->o___05Fready = 1;
    int64_t next = 0, n = 0, layers = 0, rc = -1;
    uint64_t cyc = 0, first = 0, obeats = 0;
    const uint64_t cmask = (1ull << SB_O_CODE_BITS) - 1;
    const uint64_t nmask = (1ull << SB_O_COUNT_WIDTH) - 1;
    for (; (int64_t)cyc < timeout; ++cyc) {
        t->i___05Fvalid = next < n_beats;
        t->i___05Fpayload = next < n_beats ? beats[next] : 0;
        t->clk = 0;
        t->eval();
        bool i_fire = t->i___05Fvalid && t->i___05Fready;
        if (t->o___05Fvalid) {
            uint64_t v = t->o___05Fpayload;
            int cnt = (int)((v >> SB_O_COUNT_OFFSET) & nmask);
            bool last = (v >> SB_O_LAST_OFFSET) & 1;
            if (cnt && !obeats) first = cyc;
            for (int j = 0; j < cnt; ++j) {
                uint64_t c = (v >> (SB_O_CODE_OFFSET + j * SB_O_CODE_BITS)) & cmask;
                int64_t sc = (c >> (SB_O_CODE_BITS - 1)) ? (int64_t)c - (1ll << SB_O_CODE_BITS) : (int64_t)c;
                if (n < max_codes) codes[n] = (int16_t)sc;
                ++n;
            }
            ++obeats;
            if (last) { if (layers < max_layers) layer_ends[layers] = n; ++layers; }
        }
        uint32_t st = t->status;
        t->clk = 1;
        t->eval();
        if (i_fire) ++next;
        if ((st >> SB_STATUS_ERROR_OFFSET) & ((1u << SB_STATUS_ERROR_WIDTH) - 1)) { rc = -2; break; }
        if (((st >> SB_STATUS_DONE_OFFSET) & 1) && next >= n_beats && !t->o___05Fvalid) { rc = n; break; }
    }
    stats[0] = cyc; stats[1] = n; stats[2] = layers; stats[3] = t->status; stats[4] = first; stats[5] = obeats;
    t->final();
    delete t;
    return rc;
}
}
