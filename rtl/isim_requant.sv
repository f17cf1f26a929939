// Requantizer (docs/arithmetic.md §5.3, §1.5): I = Σ_j M_j·acc_j + B, X = OVF_stream(R(I, n)):
// the multiplies by the per-accumulator multipliers, ONE rounding shift in the artifact's mode
// (isim_round) and the stream overflow policy (saturate or wrap at stream_bits). Combinational;
// up to 6 accumulators (split: P_s, Q_s of 3 segments; grid: A), unused ones with M_j = 0.
module isim_requant #(
    parameter int W = 64
) (
    input  logic signed [W-1:0] acc0, acc1, acc2, acc3, acc4, acc5,
    input  logic signed [W-1:0] m0, m1, m2, m3, m4, m5,
    input  logic signed [W-1:0] bias,
    input  logic        [5:0]   shift,
    input  logic        [1:0]   mode,
    input  logic        [6:0]   stream_bits,
    input  logic                wrap,
    output logic signed [W-1:0] x,
    output logic                event_o
);
  logic signed [W-1:0] i, r;
  always @* i = m0 * acc0 + m1 * acc1 + m2 * acc2 + m3 * acc3 + m4 * acc4 + m5 * acc5 + bias;
  isim_round #(.W(W)) u_round (.i(i), .n(shift), .mode(mode), .q(r));
  isim_overflow #(.W(W)) u_ovf (.v(r), .bits(stream_bits), .wrap(wrap), .o(x), .event_o(event_o));
endmodule
