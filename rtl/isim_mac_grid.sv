// `grid` LUT-decode MAC (docs/arithmetic.md §5.3): a per-layer LUT maps each flat code to its grid
// value G(s, q) = e_s + d_s·q (fits grid_bits signed bits); one multiplier w·G and one accumulator
// A = Σ w·G with the overflow policy at `acc_bits` after every addition (§5.4). The LUT is written
// through (lut_we, lut_addr, lut_data) before a layer runs. One tap per clock when `en`.
module isim_mac_grid #(
    parameter int W_W = 16,
    parameter int CODE_W = 16,
    parameter int G_W = 32,
    parameter int LUT_N = 65536,
    parameter int ACC_W = 64
) (
    input  logic                    clk,
    input  logic                    lut_we,
    input  logic        [CODE_W-1:0] lut_addr,
    input  logic signed [G_W-1:0]   lut_data,
    input  logic                    clear,
    input  logic                    en,
    input  logic signed [W_W-1:0]   w,
    input  logic        [CODE_W-1:0] code,
    input  logic        [6:0]       acc_bits,
    input  logic                    wrap,
    output logic signed [ACC_W-1:0] a,
    output logic        [31:0]      events
);
  logic signed [G_W-1:0] lut [0:LUT_N-1];
  logic signed [ACC_W-1:0] a_nxt;
  logic ev;
  isim_overflow #(.W(ACC_W)) u_ovf (.v(a + ACC_W'(w) * ACC_W'(lut[code])), .bits(acc_bits), .wrap(wrap),
                                    .o(a_nxt), .event_o(ev));
  always_ff @(posedge clk) begin
    if (lut_we) lut[lut_addr] <= lut_data;
    if (clear) begin
      a <= '0; events <= '0;
    end else if (en) begin
      a <= a_nxt;
      events <= events + 32'(ev);
    end
  end
endmodule
