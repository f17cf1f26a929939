// `split` MAC (docs/arithmetic.md §5.3): one narrow multiplier w·q per tap; per segment s a
// product accumulator P_s = Σ w·q and, when the segment's origin e_s != 0, an offset accumulator
// Q_s = Σ w. The code is decoded to (segment, index q) from the codebook's bases (§3.2).
// Each accumulator applies the overflow policy at `acc_bits` after every addition (§5.4, the
// ordered form; for an op that cannot overflow it equals any order). One tap per clock when `en`;
// `clear` zeroes the accumulators and the event count. Up to 3 segments.
module isim_mac_split #(
    parameter int W_W = 16,     // weight width
    parameter int CODE_W = 16,  // flat code width
    parameter int Q_W = 32,     // segment index width
    parameter int ACC_W = 64    // accumulator register width (>= acc_bits)
) (
    input  logic                    clk,
    input  logic                    clear,
    input  logic                    en,
    input  logic signed [W_W-1:0]   w,
    input  logic        [CODE_W-1:0] code,
    input  logic        [1:0]       n_seg,
    input  logic        [CODE_W-1:0] base1, base2,
    input  logic signed [Q_W-1:0]   qmin0, qmin1, qmin2,
    input  logic        [2:0]       has_offset,  // bit s: origin_s != 0
    input  logic        [6:0]       acc_bits,
    input  logic                    wrap,
    output logic signed [ACC_W-1:0] p0, p1, p2, q0, q1, q2,
    output logic        [31:0]      events
);
  logic [1:0] s;
  logic signed [Q_W-1:0] qi;
  logic signed [ACC_W-1:0] prod, p_cur, q_cur, p_nxt, q_nxt;
  logic ev_p, ev_q;
  always @* begin
    if (n_seg > 2 && code >= base2) begin s = 2'd2; qi = Q_W'(code - base2) + qmin2; end
    else if (n_seg > 1 && code >= base1) begin s = 2'd1; qi = Q_W'(code - base1) + qmin1; end
    else begin s = 2'd0; qi = Q_W'(code) + qmin0; end
    prod  = ACC_W'(w) * ACC_W'(qi);  // the narrow multiplier: W_W x Q_W bits
    p_cur = (s == 0) ? p0 : (s == 1) ? p1 : p2;
    q_cur = (s == 0) ? q0 : (s == 1) ? q1 : q2;
  end
  isim_overflow #(.W(ACC_W)) u_ovf_p (.v(p_cur + prod), .bits(acc_bits), .wrap(wrap), .o(p_nxt), .event_o(ev_p));
  isim_overflow #(.W(ACC_W)) u_ovf_q (.v(q_cur + ACC_W'(w)), .bits(acc_bits), .wrap(wrap), .o(q_nxt), .event_o(ev_q));
  always_ff @(posedge clk) begin
    if (clear) begin
      p0 <= '0; p1 <= '0; p2 <= '0; q0 <= '0; q1 <= '0; q2 <= '0; events <= '0;
    end else if (en) begin
      case (s)
        2'd0: p0 <= p_nxt;
        2'd1: p1 <= p_nxt;
        default: p2 <= p_nxt;
      endcase
      if (has_offset[s]) begin
        case (s)
          2'd0: q0 <= q_nxt;
          2'd1: q1 <= q_nxt;
          default: q2 <= q_nxt;
        endcase
      end
      events <= events + 32'(ev_p) + 32'(has_offset[s] & ev_q);
    end
  end
endmodule
