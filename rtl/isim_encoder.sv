// Two-region encoder: stream integer X -> flat code (docs/arithmetic.md §3.4). Combinational.
//   s = min{ s : X <= U_s } (S-1 if none)          threshold comparisons
//   t = R((X - C_s)·E_s, k_s)                       fixed-point multiply, one rounding shift
//   q = clamp(t, qmin_s, qmax_s); c = base_s + q - qmin_s   (q != t: one saturation)
// Up to 3 segments (§3.1). W: internal width; the envelope (§9) keeps (X - C)·E below 2^53.
// PLANT_BUG_THRESHOLD plants an off-by-one threshold (X < U_s instead of X <= U_s).
module isim_encoder #(
    parameter int W = 64,
    parameter int CODE_W = 16
) (
    input  logic signed [W-1:0] x,
    input  logic        [1:0]   n_seg,
    input  logic signed [W-1:0] thr0, thr1,
    input  logic signed [W-1:0] center0, center1, center2,
    input  logic signed [W-1:0] mult0, mult1, mult2,
    input  logic        [5:0]   shift0, shift1, shift2,
    input  logic signed [W-1:0] qmin0, qmin1, qmin2,
    input  logic signed [W-1:0] qmax0, qmax1, qmax2,
    input  logic signed [W-1:0] base0, base1, base2,
    input  logic        [1:0]   mode,
    output logic [CODE_W-1:0]   code,
    output logic                saturated
);
  logic [1:0] s;
  logic signed [W-1:0] c, e, qmn, qmx, b, t, q;
  logic [5:0] k;
  logic le0, le1;
  always @* begin
`ifdef PLANT_BUG_THRESHOLD
    le0 = x < thr0;
    le1 = x < thr1;
`else
    le0 = x <= thr0;
    le1 = x <= thr1;
`endif
    if (n_seg > 1 && le0) s = 2'd0;
    else if (n_seg > 2 && le1) s = 2'd1;
    else s = n_seg - 1;
    case (s)
      2'd0: begin c = center0; e = mult0; k = shift0; qmn = qmin0; qmx = qmax0; b = base0; end
      2'd1: begin c = center1; e = mult1; k = shift1; qmn = qmin1; qmx = qmax1; b = base1; end
      default: begin c = center2; e = mult2; k = shift2; qmn = qmin2; qmx = qmax2; b = base2; end
    endcase
  end
  isim_round #(.W(W)) u_round (.i((x - c) * e), .n(k), .mode(mode), .q(t));
  always @* begin
    q = (t < qmn) ? qmn : (t > qmx) ? qmx : t;
    saturated = q != t;
    code = CODE_W'(b + q - qmn);
  end
endmodule
