// (always @* rather than always_comb: Icarus Verilog 11 warns on always_comb with constant bit selects.)
// R(I, n): rescale I·2^-n to an integer with ONE rounding (docs/arithmetic.md §2).
// Combinational. I is W-bit two's complement (the load-time envelope, §9, keeps it below 2^53 in
// magnitude), n in [0, 62]. mode: 0 half_up ((I + h) >> n), 1 half_away (sign·((|I| + h) >> n)),
// 2 half_even (ties to even), 3 floor (I >> n), with h = 2^(n-1); n = 0 returns I.
// Build-time define PLANT_BUG_FLOOR plants a bug for the bench's negative test: half_up becomes floor.
module isim_round #(
    parameter int W = 64
) (
    input  logic signed [W-1:0] i,
    input  logic        [5:0]   n,
    input  logic        [1:0]   mode,
    output logic signed [W-1:0] q
);
  // one guard bit: I + h and |I| stay exact even at the edge of the W-bit range
  logic signed [W:0] ix, half, up, fl, mag, rem;
  always @* begin
    ix   = {i[W-1], i};
    half = (n == 0) ? '0 : ((W+1)'(1) <<< (n - 1));
    fl   = ix >>> n;
    up   = (ix + half) >>> n;
    mag  = ((ix < 0 ? -ix : ix) + half) >>> n;
    rem  = ix - (fl <<< n);
    if (n == 0) q = i;
    else begin
      case (mode)
`ifdef PLANT_BUG_FLOOR
        2'd0: q = fl[W-1:0];  // planted bug: half_up rounds down
`else
        2'd0: q = up[W-1:0];
`endif
        2'd1: q = (ix < 0) ? W'(-mag) : mag[W-1:0];
        2'd2: q = (rem > half || (rem == half && fl[0])) ? W'(fl + 1) : fl[W-1:0];
        default: q = fl[W-1:0];
      endcase
    end
  end
endmodule
