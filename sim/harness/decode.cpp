// C harness of the Verilated `subbit_decoder` top (hw/verilog.py), loaded by sim/fast.py with
// ctypes: feeds a whole word stream (input always valid, output always ready) and collects the
// codes, the layer ends and the clocks of each layer's first and last output beat. Output payloads
// up to 64 bits (K * code_bits + count + last). The port fields come from ports.h, written next
// to this file by sim/fast.py from the Amaranth layouts (subbit.sim.ports).
//
// A run is resumable: sb_run simulates at most `budget` clocks and returns, so the caller can
// show progress between calls; the simulation state lives in the handle from sb_open.
#include <cstdint>
#include "ports.h"
#include "Vtop.h"
#include "verilated.h"

// Verilator escapes the double underscore of amaranth's stream port names (i__valid -> i___05Fvalid).

namespace {
struct Run {
    VerilatedContext ctx;
    Vtop* t;
    const uint64_t* beats;
    int64_t n_beats, next = 0, n = 0, layers = 0;
    uint64_t cyc = 0, first_in = 0, first_out = 0, last_out = 0, obeats = 0;
    bool seen_in = false, layer_start = true, finished = false;
    uint32_t status = 0;
    Run(const uint64_t* b, int64_t nb) : beats(b), n_beats(nb) {
        t = new Vtop{&ctx};
        t->rst = 1; t->i___05Fvalid = 0; t->i___05Fpayload = 0; t->o___05Fready = 0;
        for (int k = 0; k < 2; ++k) { t->clk = 0; t->eval(); t->clk = 1; t->eval(); }
        t->rst = 0;
        t->o___05Fready = 1;
    }
    ~Run() { t->final(); delete t; }
};
}  // namespace

extern "C" {
void* sb_open(const uint64_t* beats, int64_t n_beats) { return new Run(beats, n_beats); }
void sb_close(void* h) { delete static_cast<Run*>(h); }

// Simulates up to `budget` clocks. Writes codes (up to max_codes), per layer the end (codes so far),
// the clock of its first and of its last output beat (up to max_layers), and stats: [0] clocks so
// far, [1] codes, [2] layers, [3] status, [4] clock of the first output beat, [5] output beats,
// [6] clock of the first accepted input beat, [7] clock of the last output beat.
// Returns the number of codes once the decoder is done, -2 on a decoder error, -3 when the budget
// ran out first (call again).
int64_t sb_run(void* h, int64_t budget, int16_t* codes, int64_t max_codes, int64_t* layer_ends,
               int64_t* layer_first, int64_t* layer_last, int64_t max_layers, uint64_t* stats) {
    Run* r = static_cast<Run*>(h);
    Vtop* t = r->t;
    int64_t rc = -3;
    const uint64_t cmask = (1ull << SB_O_CODE_BITS) - 1;
    const uint64_t nmask = (1ull << SB_O_COUNT_WIDTH) - 1;
    const uint32_t emask = (1u << SB_STATUS_ERROR_WIDTH) - 1;
    for (int64_t k = 0; k < budget; ++k, ++r->cyc) {
        t->i___05Fvalid = r->next < r->n_beats;
        t->i___05Fpayload = r->next < r->n_beats ? r->beats[r->next] : 0;
        t->clk = 0;
        t->eval();
        bool i_fire = t->i___05Fvalid && t->i___05Fready;
        if (i_fire && !r->seen_in) { r->first_in = r->cyc; r->seen_in = true; }
        bool o_valid = t->o___05Fvalid;
        if (o_valid) {
            uint64_t v = t->o___05Fpayload;
            int cnt = (int)((v >> SB_O_COUNT_OFFSET) & nmask);
            bool last = (v >> SB_O_LAST_OFFSET) & 1;
            if (!r->obeats) r->first_out = r->cyc;
            r->last_out = r->cyc;
            if (r->layer_start && r->layers < max_layers) layer_first[r->layers] = r->cyc;
            r->layer_start = false;
            for (int j = 0; j < cnt; ++j) {
                uint64_t c = (v >> (SB_O_CODE_OFFSET + j * SB_O_CODE_BITS)) & cmask;
                int64_t sc = (c >> (SB_O_CODE_BITS - 1)) ? (int64_t)c - (1ll << SB_O_CODE_BITS) : (int64_t)c;
                if (r->n < max_codes) codes[r->n] = (int16_t)sc;
                ++r->n;
            }
            ++r->obeats;
            if (last) {
                if (r->layers < max_layers) { layer_ends[r->layers] = r->n; layer_last[r->layers] = r->cyc; }
                ++r->layers;
                r->layer_start = true;
            }
        }
        uint32_t st = t->status;
        t->clk = 1;
        t->eval();
        if (i_fire) ++r->next;
        if ((st >> SB_STATUS_ERROR_OFFSET) & emask) { rc = -2; break; }
        if (((st >> SB_STATUS_DONE_OFFSET) & 1) && r->next >= r->n_beats && !o_valid) { rc = r->n; break; }
    }
    r->status = t->status;
    stats[0] = r->cyc; stats[1] = r->n; stats[2] = r->layers; stats[3] = r->status; stats[4] = r->first_out;
    stats[5] = r->obeats; stats[6] = r->first_in; stats[7] = r->last_out;
    return rc;
}
}
