// C harness of the Verilated `subbit_infer` top (hw/infer.py), loaded by sim/fast.py with ctypes.
// One clock per loop iteration: inputs set, combinational outputs settled (clk low), handshakes
// sampled, rising edge. The weight stream is a FIFO of input beats fed whenever `i.ready`.
#include <cstdint>
#include <deque>
#include "ports.h"                    // port fields, written by sim/fast.py from the Amaranth layouts
#include "Vtop.h"
#include "verilated.h"

// Verilator escapes the double underscore of amaranth's stream port names (i__valid -> i___05Fvalid).

namespace {
struct Sim {
    VerilatedContext ctx;
    Vtop* top;
    std::deque<uint64_t> beats;       // payload incl. `last` bit
    uint64_t cycles = 0;
    Sim() { top = new Vtop{&ctx}; }
    ~Sim() { top->final(); delete top; }
    // one clock; returns true if an input beat was taken
    void tick(bool& i_fire, bool& o_fire, uint64_t& o_payload, bool& waiting) {
        top->i___05Fvalid = !beats.empty();
        top->i___05Fpayload = beats.empty() ? 0 : beats.front();
        top->clk = 0;
        top->eval();
        i_fire = top->i___05Fvalid && top->i___05Fready;
        o_fire = top->o___05Fvalid && top->o___05Fready;
        o_payload = top->o___05Fpayload;
        waiting = (top->status >> SB_STATUS_MAC_WAITING_OFFSET) & 1;
        top->clk = 1;
        top->eval();
        if (i_fire) beats.pop_front();
        ++cycles;
    }
};
}  // namespace

extern "C" {
void* sb_open() { return new Sim(); }
void sb_close(void* h) { delete static_cast<Sim*>(h); }

void sb_reset(void* h) {
    Sim* s = static_cast<Sim*>(h);
    Vtop* t = s->top;
    t->rst = 1; t->i___05Fvalid = 0; t->i___05Fpayload = 0; t->o___05Fready = 0; t->act___05Fvalid = 0; t->start = 0;
    t->cfg = 0; t->act___05Fpayload = 0;
    for (int k = 0; k < 2; ++k) { t->clk = 0; t->eval(); t->clk = 1; t->eval(); }
    t->rst = 0; t->clk = 0; t->eval();
    s->beats.clear();
}

void sb_push(void* h, const uint64_t* beats, int64_t n) {
    Sim* s = static_cast<Sim*>(h);
    for (int64_t k = 0; k < n; ++k) s->beats.push_back(beats[k]);
}

// Loads `n_acts` activations (address k <- acts[k]), runs one layer of `cols` x `positions`
// and writes its accumulators to `out`. stats: [0] load clocks, [1] layer clocks (start to
// done), [2] clocks the engine waited for weights, [3] status word after the layer,
// [4] total clocks so far, [5] input beats still queued.
// Returns the number of accumulators, or -1 (timeout), -2 (an error on status).
int64_t sb_layer(void* h, const int8_t* acts, int64_t n_acts, int cols, int positions,
                 int32_t* out, int64_t max_out, uint64_t* stats, int64_t timeout) {
    Sim* s = static_cast<Sim*>(h);
    Vtop* t = s->top;
    bool i_fire, o_fire, waiting;
    uint64_t o_pay;
    int64_t n_out = 0;
    uint64_t c0 = s->cycles;
    t->o___05Fready = 1;
    for (int64_t k = 0; k < n_acts; ++k) {
        t->act___05Fvalid = 1;
        t->act___05Fpayload = ((uint64_t)k << SB_ACT_ADDR_OFFSET) |
                              ((uint64_t)(uint8_t)acts[k] << SB_ACT_DATA_OFFSET);
        s->tick(i_fire, o_fire, o_pay, waiting);
    }
    t->act___05Fvalid = 0;
    stats[0] = s->cycles - c0;
    t->cfg = ((uint32_t)cols << SB_CFG_COLS_OFFSET) | ((uint32_t)positions << SB_CFG_POSITIONS_OFFSET);
    t->start = 1;
    uint64_t c1 = s->cycles, waits = 0;
    s->tick(i_fire, o_fire, o_pay, waiting);
    t->start = 0;
    int64_t rc = -1;
    bool done = false;                  // mac.done is a one-clock pulse; drain `o` after it
    while ((int64_t)(s->cycles - c1) < timeout) {
        s->tick(i_fire, o_fire, o_pay, waiting);
        waits += waiting;
        if (o_fire) {
            if (n_out < max_out) out[n_out] = (int32_t)(uint32_t)o_pay;
            ++n_out;
        }
        uint32_t st = t->status;
        if ((st >> SB_STATUS_MAC_ERROR_OFFSET) & ((1u << SB_STATUS_MAC_ERROR_WIDTH) - 1) ||
            (st >> SB_STATUS_DECODER_ERROR_OFFSET) & ((1u << SB_STATUS_DECODER_ERROR_WIDTH) - 1)) { rc = -2; break; }
        done |= (st >> SB_STATUS_MAC_DONE_OFFSET) & 1;
        if (done && !t->o___05Fvalid) { rc = n_out; break; }
    }
    stats[1] = s->cycles - c1;
    stats[2] = waits;
    stats[3] = t->status;
    stats[4] = s->cycles;
    stats[5] = s->beats.size();
    return rc;
}
}
