// Reference bench (not synthesizable): runs exported layer cases (intsim export-vectors --artifact,
// docs/rtl.md) through the reference datapath and writes each output as a $readmemh dump that
// `intsim compare` reads. Driven by cocotb (rtl/bench/test_layers.py); the tap loops live here so
// the simulator, not Python, runs them.
//
// +jobs=FILE: one job per line, "CASE_DIR DUMP_FILE y0 y1 x0 x1 c0 c1 cstep mode": compute the outputs
// [y0,y1) x [x0,x1) x (c0..c1-1 step cstep) of the case in CASE_DIR (config.hex and the array
// files) and write them, row-major over that region, to DUMP_FILE. mode 0: the whole layer (MAC and
// requantizer, or the encoder); mode 1 (conv cases exported with --accumulators): the requantizer
// alone, fed the exported accumulators (acc.hex). Beside each dump, DUMP_FILE.events holds the job's
// event counts (arithmetic.md §7): "acc_overflow stream_overflow saturations". `done` rises after
// the last job.
`timescale 1ns/1ps
module tb_layer;
  `include "config_fields.svh"
  localparam int MEM_N = 1 << 17;
  localparam int LUT_N = 1 << 16;
  localparam int MAXCO = 4096;

  logic [63:0] cfg [0:CFG_WORDS-1];
  logic [63:0] in_m [0:MEM_N-1];
  logic [63:0] w_m [0:MEM_N-1];
  logic [63:0] mult_m [0:6*MAXCO-1];
  logic [63:0] bias_m [0:MAXCO-1];
  logic [63:0] lut_m [0:LUT_N-1];
  logic [63:0] acc_m [0:MEM_N-1];

  logic clk = 0, clear = 0, en = 0, lut_we = 0, done = 0;
  integer jobs_done = 0, taps = 0;
  integer n_acc_ev, n_stream_ev, n_sat;  // events of the current job (arithmetic.md §7)
  logic signed [15:0] w;
  logic [15:0] code, lut_addr;
  logic signed [31:0] lut_data;
  logic signed [63:0] x_in;
  logic signed [63:0] p0, p1, p2, q0, q1, q2, a, accs [0:5], ms [0:5], bias, xq;
  logic [31:0] ev_split, ev_grid;
  logic ev_stream, enc_sat;
  logic [15:0] enc_code;

  function automatic logic signed [63:0] sx(input logic [63:0] v, input integer bits);
    // both arms signed: one unsigned arm would make the whole ?: unsigned and >>> a logical shift
    sx = (bits >= 64) ? $signed(v) : $signed(v << (64 - bits)) >>> (64 - bits);
  endfunction
  function automatic integer c(input integer f);
    c = cfg[f];
  endfunction
  function automatic logic signed [63:0] cs(input integer f);
    cs = $signed(cfg[f]);
  endfunction

  // Ports read cfg words directly: a function call in a port expression would be evaluated only when
  // its (constant) argument changes, not when a new case is loaded.
  isim_mac_split #(.W_W(16), .CODE_W(16), .Q_W(32), .ACC_W(64)) u_split (
      .clk, .clear, .en(en && cfg[CFG_REALIZATION] == 0), .w, .code, .n_seg(2'(cfg[CFG_N_SEG])),
      .base1(16'(cfg[CFG_SEG1_BASE])), .base2(16'(cfg[CFG_SEG2_BASE])),
      .qmin0(32'($signed(cfg[CFG_SEG0_QMIN]))), .qmin1(32'($signed(cfg[CFG_SEG1_QMIN]))), .qmin2(32'($signed(cfg[CFG_SEG2_QMIN]))),
      .has_offset({cfg[CFG_SEG2_ORIGIN] != 0, cfg[CFG_SEG1_ORIGIN] != 0, cfg[CFG_SEG0_ORIGIN] != 0}),
      .acc_bits(7'(cfg[CFG_ACC_BITS])), .wrap(cfg[CFG_OVERFLOW] == 2), .p0, .p1, .p2, .q0, .q1, .q2,
      .events(ev_split));
  isim_mac_grid #(.W_W(16), .CODE_W(16), .G_W(32), .LUT_N(LUT_N), .ACC_W(64)) u_grid (
      .clk, .lut_we, .lut_addr, .lut_data, .clear, .en(en && cfg[CFG_REALIZATION] == 1), .w, .code,
      .acc_bits(7'(cfg[CFG_ACC_BITS])), .wrap(cfg[CFG_OVERFLOW] == 2), .a, .events(ev_grid));
  isim_requant #(.W(64)) u_requant (
      .acc0(accs[0]), .acc1(accs[1]), .acc2(accs[2]), .acc3(accs[3]), .acc4(accs[4]), .acc5(accs[5]),
      .m0(ms[0]), .m1(ms[1]), .m2(ms[2]), .m3(ms[3]), .m4(ms[4]), .m5(ms[5]), .bias,
      .shift(6'(cfg[CFG_SHIFT])), .mode(2'(cfg[CFG_ROUNDING])), .stream_bits(7'(cfg[CFG_STREAM_BITS])),
      .wrap(cfg[CFG_OVERFLOW] == 2), .x(xq), .event_o(ev_stream));
  isim_encoder #(.W(64), .CODE_W(16)) u_encoder (
      .x(x_in), .n_seg(2'(cfg[CFG_N_SEG])), .thr0($signed(cfg[CFG_THR0])), .thr1($signed(cfg[CFG_THR1])),
      .center0($signed(cfg[CFG_ENC0_CENTER])), .center1($signed(cfg[CFG_ENC1_CENTER])), .center2($signed(cfg[CFG_ENC2_CENTER])),
      .mult0($signed(cfg[CFG_ENC0_MULT])), .mult1($signed(cfg[CFG_ENC1_MULT])), .mult2($signed(cfg[CFG_ENC2_MULT])),
      .shift0(6'(cfg[CFG_ENC0_SHIFT])), .shift1(6'(cfg[CFG_ENC1_SHIFT])), .shift2(6'(cfg[CFG_ENC2_SHIFT])),
      .qmin0($signed(cfg[CFG_SEG0_QMIN])), .qmin1($signed(cfg[CFG_SEG1_QMIN])), .qmin2($signed(cfg[CFG_SEG2_QMIN])),
      .qmax0($signed(cfg[CFG_SEG0_QMAX])), .qmax1($signed(cfg[CFG_SEG1_QMAX])), .qmax2($signed(cfg[CFG_SEG2_QMAX])),
      .base0($signed(cfg[CFG_SEG0_BASE])), .base1($signed(cfg[CFG_SEG1_BASE])), .base2($signed(cfg[CFG_SEG2_BASE])),
      .mode(2'(cfg[CFG_ROUNDING])), .code(enc_code), .saturated(enc_sat));

  task automatic tick;
    #1 clk = 1;
    #1 clk = 0;
  endtask

  task automatic put(input integer fd, input logic signed [63:0] v, input integer bits);
    if (bits == 16) $fwrite(fd, "%h\n", v[15:0]);
    else if (bits == 32) $fwrite(fd, "%h\n", v[31:0]);
    else $fwrite(fd, "%h\n", v);
  endtask

  task automatic load(input string dir, input integer mode);
    integer n_in, n_w, co, n_acc;
    $readmemh({dir, "/config.hex"}, cfg);
    n_in = c(CFG_H) * c(CFG_W) * c(CFG_CI);
    if (n_in > MEM_N) $fatal(1, "%s: %0d input values exceed the bench's %0d", dir, n_in, MEM_N);
    if (c(CFG_NUM_CODES) > LUT_N) $fatal(1, "%s: %0d codes exceed the bench's 16-bit codes", dir, c(CFG_NUM_CODES));
    $readmemh({dir, "/input.hex"}, in_m, 0, n_in - 1);
    if (c(CFG_KIND) == 1) begin
      co = c(CFG_CO);
      n_w = co * c(CFG_KH) * c(CFG_KW) * (c(CFG_CI) / c(CFG_GROUPS));
      n_acc = c(CFG_N_ACC);
      if (n_w > MEM_N || co > MAXCO) $fatal(1, "%s: layer exceeds the bench's memories", dir);
      $readmemh({dir, "/weight.hex"}, w_m, 0, n_w - 1);
      $readmemh({dir, "/mult.hex"}, mult_m, 0, n_acc * co - 1);
      $readmemh({dir, "/bias.hex"}, bias_m, 0, co - 1);
      $readmemh({dir, "/lut_grid.hex"}, lut_m, 0, c(CFG_NUM_CODES) - 1);
      if (mode == 1) begin
        if (n_acc * c(CFG_HO) * c(CFG_WO) * co > MEM_N) $fatal(1, "%s: accumulators exceed the bench's memory", dir);
        $readmemh({dir, "/acc.hex"}, acc_m, 0, n_acc * c(CFG_HO) * c(CFG_WO) * co - 1);
      end
      if (c(CFG_REALIZATION) == 1) begin  // fill the grid MAC's LUT through its write port
        for (integer k = 0; k < c(CFG_NUM_CODES); k++) begin
          lut_we = 1; lut_addr = 16'(k); lut_data = 32'(sx(lut_m[k], 32));
          tick();
        end
        lut_we = 0;
      end
    end
  endtask

  // Requantize one output from the exported accumulators acc[j, oy, ox, co] (mode 1).
  task automatic requant_output(input integer oy, input integer ox, input integer co, output logic signed [63:0] x);
    integer n_acc;
    n_acc = c(CFG_N_ACC);
    for (integer j = 0; j < 6; j++) begin
      accs[j] = (j >= n_acc) ? 0 : $signed(acc_m[((j * c(CFG_HO) + oy) * c(CFG_WO) + ox) * c(CFG_CO) + co]);
      ms[j] = (j >= n_acc) ? 0 : $signed(mult_m[j * c(CFG_CO) + co]);
    end
    bias = $signed(bias_m[co]);
    #1 x = xq;
    n_stream_ev += ev_stream;
  endtask

  // One output element of a conv: accumulate its taps in the order ky, kx, ci (§5.4), then requantize.
  task automatic conv_output(input integer oy, input integer ox, input integer co, output logic signed [63:0] x);
    integer cig, g, iy, ix, num, kind, seg, n_acc;
    cig = c(CFG_CI) / c(CFG_GROUPS);
    g = co / (c(CFG_CO) / c(CFG_GROUPS));
    clear = 1; tick(); clear = 0;
    for (integer ky = 0; ky < c(CFG_KH); ky++) begin
      if (c(CFG_TRANSPOSED)) begin
        num = oy + c(CFG_PH) - ky;
        iy = (num >= 0 && num % c(CFG_SH) == 0) ? num / c(CFG_SH) : -1;
      end else iy = oy * c(CFG_SH) - c(CFG_PH) + ky * c(CFG_DH);
      // a padding tap adds nothing and is no step (§5.1, §5.4)
      if (iy >= 0 && iy < c(CFG_H)) for (integer kx = 0; kx < c(CFG_KW); kx++) begin
        if (c(CFG_TRANSPOSED)) begin
          num = ox + c(CFG_PW) - kx;
          ix = (num >= 0 && num % c(CFG_SW) == 0) ? num / c(CFG_SW) : -1;
        end else ix = ox * c(CFG_SW) - c(CFG_PW) + kx * c(CFG_DW);
        if (ix >= 0 && ix < c(CFG_W)) for (integer ci = 0; ci < cig; ci++) begin
          code = 16'(in_m[(iy * c(CFG_W) + ix) * c(CFG_CI) + g * cig + ci]);
          w = 16'(sx(w_m[((co * c(CFG_KH) + ky) * c(CFG_KW) + kx) * cig + ci], c(CFG_W_BITS)));
          en = 1; tick(); en = 0;
          taps++;
        end
      end
    end
    n_acc = c(CFG_N_ACC);
    for (integer j = 0; j < 6; j++) begin
      kind = c(CFG_ACC0_KIND + 2 * j);
      seg = c(CFG_ACC0_SEG + 2 * j);
      accs[j] = (j >= n_acc) ? 0 : (kind == 2) ? a : (kind == 0) ? (seg == 0 ? p0 : seg == 1 ? p1 : p2)
                                                                : (seg == 0 ? q0 : seg == 1 ? q1 : q2);
      ms[j] = (j >= n_acc) ? 0 : $signed(mult_m[j * c(CFG_CO) + co]);
    end
    bias = $signed(bias_m[co]);
    #1 x = xq;
    n_stream_ev += ev_stream;
    n_acc_ev += (c(CFG_REALIZATION) == 1) ? ev_grid : ev_split;
  endtask

  task automatic run_job(input string dir, input string dump, input integer y0, input integer y1,
                         input integer x0, input integer x1, input integer c0, input integer c1,
                         input integer cstep, input integer mode);
    integer fd;
    logic signed [63:0] x;
    load(dir, mode);
    fd = $fopen(dump, "w");
    if (fd == 0) $fatal(1, "cannot write %s", dump);
    n_acc_ev = 0; n_stream_ev = 0; n_sat = 0;
    for (integer oy = y0; oy < y1; oy++)
      for (integer ox = x0; ox < x1; ox++)
        for (integer co = c0; co < c1; co += cstep) begin
          if (c(CFG_KIND) == 1 && mode == 1) requant_output(oy, ox, co, x);
          else if (c(CFG_KIND) == 1) conv_output(oy, ox, co, x);
          else begin
            x_in = sx(in_m[(oy * c(CFG_W) + ox) * c(CFG_CI) + co], c(CFG_IN_BITS));
            #1 x = 64'(enc_code);
            n_sat += enc_sat;
          end
          put(fd, x, c(CFG_OUT_BITS));
        end
    $fclose(fd);
    // the job's event counts beside the dump: acc_overflow stream_overflow saturations
    fd = $fopen({dump, ".events"}, "w");
    $fwrite(fd, "%0d %0d %0d\n", n_acc_ev, n_stream_ev, n_sat);
    $fclose(fd);
  endtask

  initial begin
    string jobs, dir, dump;
    integer fd, r, y0, y1, x0, x1, c0, c1, cstep, mode;
    if (!$value$plusargs("jobs=%s", jobs)) $fatal(1, "+jobs=FILE is required");
    fd = $fopen(jobs, "r");
    if (fd == 0) $fatal(1, "cannot read %s", jobs);
    while (!$feof(fd)) begin
      r = $fscanf(fd, "%s %s %d %d %d %d %d %d %d %d\n", dir, dump, y0, y1, x0, x1, c0, c1, cstep, mode);
      if (r == 10) begin
        run_job(dir, dump, y0, y1, x0, x1, c0, c1, cstep, mode);
        jobs_done++;
      end
    end
    $fclose(fd);
    done = 1;
  end
endmodule
