// Overflow policy at a run-time width of `bits` (docs/arithmetic.md §4): saturate clamps to
// [-2^(bits-1), 2^(bits-1)-1], wrap keeps the low `bits` bits as two's complement
// ((v + 2^(bits-1)) mod 2^bits) - 2^(bits-1). `event_o` is 1 when v was out of range (one event).
// The `error` policy of the spec is a simulation stop, not hardware: a design flags it with event_o.
// Combinational; 2 <= bits <= W.
module isim_overflow #(
    parameter int W = 64
) (
    input  logic signed [W-1:0] v,
    input  logic        [6:0]   bits,
    input  logic                wrap,
    output logic signed [W-1:0] o,
    output logic                event_o
);
  logic signed [W-1:0] hi, lo, half, mask;
  always @* begin
    half    = W'(1) <<< (bits - 1);
    hi      = half - 1;
    lo      = -half;
    mask    = (bits >= W) ? '1 : ((W'(1) <<< bits) - 1);
    event_o = (v > hi) || (v < lo);
    if (!event_o) o = v;
    else if (wrap) o = ((v + half) & mask) - half;
    else o = (v > hi) ? hi : lo;
  end
endmodule
