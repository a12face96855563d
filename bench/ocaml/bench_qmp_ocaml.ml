(* QMP round trips from OCaml (Stubdm.Qmp.execute: the binding's stubs,
   the runtime released, the ctx driven by the calling thread) next to C
   (stubdm_qmp_execute_sync), on the same peer: a real QEMU in one
   simulated stubdomain.  Blocks of each alternate, each block with its own
   ctx and connection (one QMP client at a time), so that both see the same
   machine; the ratio is the median over blocks of OCaml's p50 / C's p50
   (target <= 1.1x, issue 17).

   usage: bench_qmp_ocaml.exe [BLOCKS [PER_BLOCK]]   (default 10 x 400) *)

open Stubdm

external now_ns : unit -> int64 = "bench_now_ns"
external c_round_trips : int -> int -> int -> float array = "bench_c_round_trips"

let guest = 100

let ocaml_round_trips ~stubdom n =
  let ctx = Ctx.create () in
  let q = Qmp.open_ ctx ~stubdom ~guest in
  let lat =
    Array.init n (fun _ ->
        let t0 = now_ns () in
        ignore (Qmp.execute q "query-status");
        Int64.to_float (Int64.sub (now_ns ()) t0) /. 1000.)
  in
  Qmp.close q;
  Ctx.close ctx;
  lat

let quantile a p =
  let a = Array.copy a in
  Array.sort compare a;
  a.(min (Array.length a - 1) (int_of_float (p *. float (Array.length a))))

let mean a = Array.fold_left ( +. ) 0. a /. float (Array.length a)

let () =
  let blocks = if Array.length Sys.argv > 1 then int_of_string Sys.argv.(1) else 10 in
  let per = if Array.length Sys.argv > 2 then int_of_string Sys.argv.(2) else 400 in
  let ctx = Ctx.create () in
  if Ctx.host ctx = Ctx.Sim then Ctx.set_hotplug ctx false;
  let s =
    Spawn.spawn ctx ~guest ~qmp:false ~timeout_ms:30000
      [ "-xen-domid"; string_of_int guest; "-machine"; "xenfv"; "-m"; "16";
        "-nodefaults"; "-display"; "none"; "-no-shutdown" ]
  in
  let stubdom = Spawn.domid s in
  Printf.printf "QMP query-status round trips, OCaml binding next to C, same QEMU peer \
                 (stubdomain %d), %d blocks x %d\n%!" stubdom blocks per;
  (* warm-up of both paths *)
  ignore (c_round_trips stubdom guest 50);
  ignore (ocaml_round_trips ~stubdom 50);
  let ratios = ref [] and all_c = ref [] and all_ml = ref [] in
  for b = 1 to blocks do
    let c, ml =
      if b mod 2 = 0 then
        let c = c_round_trips stubdom guest per in
        (c, ocaml_round_trips ~stubdom per)
      else
        let ml = ocaml_round_trips ~stubdom per in
        (c_round_trips stubdom guest per, ml)
    in
    if Array.length c = 0 then failwith "the C round trips failed";
    ratios := (quantile ml 0.5 /. quantile c 0.5) :: !ratios;
    all_c := c :: !all_c;
    all_ml := ml :: !all_ml
  done;
  let c = Array.concat !all_c and ml = Array.concat !all_ml in
  let line name a =
    Printf.printf "%-6s n=%-6d p50 %7.2f us  p99 %7.1f us  mean %7.2f us\n" name
      (Array.length a) (quantile a 0.5) (quantile a 0.99) (mean a)
  in
  line "C" c;
  line "OCaml" ml;
  let r = Array.of_list !ratios in
  Printf.printf "ratio OCaml / C: median %.2fx over %d blocks (p10 %.2fx, p90 %.2fx); \
                 mean %.2fx (target <= 1.1x)\n%!"
    (quantile r 0.5) blocks (quantile r 0.1) (quantile r 0.9) (mean ml /. mean c);
  Spawn.destroy s;
  Spawn.close s;
  Ctx.close ctx
