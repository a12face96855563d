(* The OCaml binding on the simulated host (run by sim-run.sh, which
   starts a private one): the flow a xenopsd fork would run, every error
   path as its exception, cancellation from another thread, and (case
   "gc") the flow again with Gc.compact between calls and handles dropped
   without close, run under valgrind by ctest. *)

open Stubdm

let dir = try Sys.getenv "STUBDM_TEST_DIR" with Not_found -> Filename.get_temp_dir_name ()
let qemu_args = [ "-xen-domid"; "7"; "-machine"; "xenfv"; "-m"; "16";
                  "-nodefaults"; "-display"; "none"; "-no-shutdown" ]
let guest = 100
let gc = ref false
let step () = if !gc then Gc.compact ()

(* The whole store, as xenstore-ls -fp prints it. *)
let store () =
  let ic = Unix.open_process_in "xenstore-ls -fp 2>&1" in
  let b = Buffer.create 4096 in
  (try
     while true do
       Buffer.add_channel b ic 1
     done
   with End_of_file -> ());
  ignore (Unix.close_process_in ic);
  Buffer.contents b

let contains s sub =
  let n = String.length sub and m = String.length s in
  let rec go i = i + n <= m && (String.sub s i n = sub || go (i + 1)) in
  go 0

let file_size p = (Unix.stat p).Unix.st_size

let code = Alcotest.testable (fun f c -> Format.pp_print_string f (code_name c)) ( = )

(* f () raises Stubdm.Error with this code. *)
let raises what c f =
  match f () with
  | _ -> Alcotest.failf "%s: returned, expected %s" what (code_name c)
  | exception Error (got, msg) ->
      Alcotest.check code (what ^ ": " ^ msg) c got

let spawn ?restore_fd ?(sim_args = []) ?(consoles = []) ?disks ctx =
  Spawn.spawn ctx ~guest ?restore_fd ~sim_args ~consoles ?disks ~timeout_ms:20000
    ~qmp:true qemu_args

(* ---- the flow ------------------------------------------------------------ *)

let commands_from_threads q =
  let results = Array.make 4 [] in
  let worker i () =
    for j = 0 to 4 do
      let cmd = if (i + j) mod 2 = 0 then "query-status" else "query-version" in
      let r = Qmp.execute q cmd in
      results.(i) <- (cmd, r) :: results.(i);
      step ()
    done
  in
  let threads = List.init 4 (fun i -> Thread.create (worker i) ()) in
  List.iter Thread.join threads;
  let all = List.concat (Array.to_list results) in
  Alcotest.(check int) "20 replies" 20 (List.length all);
  List.iter
    (fun (cmd, r) ->
      if cmd = "query-status" then
        Alcotest.(check bool) "status running" true (contains r "\"running\":true")
      else Alcotest.(check bool) "version" true (contains r "qemu"))
    all

let rec next_named q name =
  match Qmp.next_event ~timeout:10. q with
  | None -> Alcotest.failf "no %s event within 10 s" name
  | Some ev when ev.Qmp.name = name -> ev
  | Some _ -> next_named q name

let flow () =
  let ctx = Ctx.create ~host:Ctx.Sim () in
  Ctx.set_hotplug ctx false;
  let before = store () in
  step ();
  let disk = Filename.concat dir "disk.img" in
  close_out (open_out disk);
  let log = Filename.concat dir "qemu-dm.log" in
  let s =
    spawn ctx ~consoles:[ (Console.log, "file:" ^ log) ]
      ~disks:[ { Spawn.target = disk; format = None; readonly = false } ]
  in
  step ();
  let domid = Spawn.domid s in
  Alcotest.(check string) "step" "running" (Spawn.step s);
  Wait.running ctx ~stubdom:domid ~guest ~timeout_ms:10000;
  step ();
  let q = Qmp.open_ ctx ~stubdom:domid ~guest in
  Qmp.enable_events q;
  step ();
  let st = Qmp.execute q "query-status" in
  Alcotest.(check bool) "query-status" true (contains st "\"running\":true");
  let sent = (Qmp.stats q).Qmp.commands_sent in
  commands_from_threads q;
  step ();
  Alcotest.(check bool) "20 more commands sent" true
    (Int64.sub (Qmp.stats q).Qmp.commands_sent sent >= 20L);
  (* events: stop and cont *)
  ignore (Qmp.execute q "stop");
  let ev = next_named q "STOP" in
  Alcotest.(check bool) "STOP json" true (contains ev.Qmp.event_json "STOP");
  Alcotest.(check bool) "timestamp" true (ev.Qmp.timestamp <> None);
  ignore (Qmp.execute q "cont");
  ignore (next_named q "RESUME");
  step ();
  (* save through console 1 *)
  let saved = Filename.concat dir "dm.state" in
  let fd = Unix.openfile saved [ Unix.O_WRONLY; Unix.O_CREAT; Unix.O_TRUNC ] 0o600 in
  let bytes = Dm_state.save s fd in
  Unix.close fd;
  step ();
  Alcotest.(check bool) "saved bytes" true (bytes > 0L);
  Alcotest.(check int) "file size" (Int64.to_int bytes) (file_size saved);
  (match Spawn.console s Console.save with
  | Some i -> Alcotest.(check int64) "console 1 bytes_out" bytes i.Console.bytes_out
  | None -> Alcotest.fail "no console 1");
  Qmp.close q;
  Qmp.close q;
  Spawn.destroy s;
  Spawn.close s;
  Spawn.close s;
  step ();
  (* restore through console 2 *)
  let fd = Unix.openfile saved [ Unix.O_RDONLY ] 0 in
  let r = spawn ctx ~restore_fd:fd in
  Unix.close fd;
  step ();
  (match Spawn.console r Console.restore with
  | Some i ->
      Alcotest.(check int64) "console 2 bytes_in" bytes i.Console.bytes_in;
      Alcotest.(check bool) "console 2 done" true (i.Console.result = `Done)
  | None -> Alcotest.fail "no console 2");
  let q2 = Qmp.open_ ctx ~stubdom:(Spawn.domid r) ~guest in
  Alcotest.(check bool) "restored running" true
    (contains (Qmp.execute q2 "query-status") "\"running\":true");
  Alcotest.(check bool) "migration completed" true
    (contains (Qmp.execute q2 "query-migrate") "completed");
  if !gc then () else Qmp.close q2;
  step ();
  Spawn.destroy r;
  if not !gc then Spawn.close r;
  step ();
  if !gc then Gc.full_major ();
  Ctx.close ctx;
  Ctx.close ctx;
  step ();
  Alcotest.(check string) "store back to its first state" before (store ())

(* ---- errors -------------------------------------------------------------- *)

let errors () =
  let ctx = Ctx.create ~host:Ctx.Sim () in
  Ctx.set_hotplug ctx false;
  let before = store () in
  raises "encode: newline" `EINVAL (fun () ->
      Dm_argv.encode ctx ~vm_path:"/vm/x" ~stubdom:5 [ "a\nb" ]);
  raises "encode: 1000 args" `ELIMIT (fun () ->
      Dm_argv.encode ctx ~vm_path:"/vm/x" ~stubdom:5 (List.init 1000 string_of_int));
  let nodes = Dm_argv.encode ctx ~vm_path:"/vm/x" ~stubdom:5 [ "-m"; "16" ] in
  Alcotest.(check int) "two argv nodes" 2
    (List.length (List.filter (fun n -> contains n.path "dm-argv/") nodes));
  raises "layout: no vm path" `EINVAL (fun () ->
      Contract.layout ctx (Contract.make ~guest:5 ~stubdom:6 [ "-m"; "16" ]));
  Alcotest.(check bool) "layout" true
    (Contract.layout ctx (Contract.make ~guest:5 ~stubdom:6 ~vm_path:"/vm/x" [ "-m" ])
     <> []);
  raises "spawn: no args" `EINVAL (fun () -> Spawn.spawn ctx ~guest []);
  raises "destroy_by_domid: none" `ENOENT (fun () -> Spawn.destroy_by_domid ctx 999);
  raises "spawn: stubdomain dies" `EDOMAIN_GONE (fun () ->
      spawn ctx ~sim_args:[ "--die-at=after-argv" ]);
  raises "spawn: never running" `ETIMEDOUT (fun () ->
      Spawn.spawn ctx ~guest ~sim_args:[ "--no-running"; "--no-qemu" ] ~timeout_ms:500
        qemu_args);
  (* a spawn cancelled from another thread rolls back before it raises *)
  let tok = Cancel.create ctx in
  ignore (Thread.create (fun () -> Thread.delay 0.3; Cancel.cancel tok) ());
  raises "spawn: cancelled" `ECANCELED (fun () ->
      Spawn.spawn ~cancel:tok ctx ~guest ~sim_args:[ "--no-running"; "--no-qemu" ]
        ~timeout_ms:20000 qemu_args);
  Alcotest.(check bool) "token" true (Cancel.is_cancelled tok);
  Alcotest.(check string) "rolled back" before (store ());
  let s = spawn ctx in
  let domid = Spawn.domid s in
  raises "wait: other guest" `ETIMEDOUT (fun () ->
      Wait.running ctx ~stubdom:domid ~guest:(guest + 1) ~timeout_ms:300);
  let q = Qmp.open_ ctx ~stubdom:domid ~guest in
  raises "bad command name" `EINVAL (fun () -> Qmp.execute q "bad name!");
  raises "unknown command" `EQMP (fun () -> Qmp.execute q "no-such-command");
  let r = Qmp.execute_reply q "no-such-command" in
  Alcotest.(check (option string)) "error class" (Some "CommandNotFound") r.Qmp.error_class;
  raises "bad arguments" `EINVAL (fun () -> Qmp.execute ~args:"[1]" q "query-status");
  raises "next_event without queue" `ESTATE (fun () -> Qmp.next_event ~timeout:0. q);
  Qmp.enable_events q;
  raises "events twice" `ESTATE (fun () -> Qmp.enable_events q);
  Alcotest.(check bool) "no event" true (Qmp.next_event ~timeout:0.1 q = None);
  raises "qmp: no such stubdomain" `EDOMAIN_GONE (fun () ->
      Qmp.open_ ~timeout_ms:500 ctx ~stubdom:998 ~guest:997);
  (* cancellation from another thread: the interrupt and a token *)
  let later f = ignore (Thread.create (fun () -> Thread.delay 0.2; f ()) ()) in
  later (fun () -> Ctx.interrupt ctx);
  let t0 = Unix.gettimeofday () in
  raises "wait: interrupted" `ECANCELED (fun () ->
      Wait.running ctx ~stubdom:domid ~guest:(guest + 1) ~timeout_ms:20000);
  Alcotest.(check bool) "interrupted within 5 s" true (Unix.gettimeofday () -. t0 < 5.);
  let tok = Cancel.create ctx in
  later (fun () -> Cancel.cancel tok);
  raises "next_event: cancelled" `ECANCELED (fun () -> Qmp.next_event ~cancel:tok q);
  let tok = Cancel.create ctx in
  later (fun () -> Cancel.cancel tok);
  raises "wait: cancelled" `ECANCELED (fun () ->
      Wait.running ~cancel:tok ctx ~stubdom:domid ~guest:(guest + 1) ~timeout_ms:20000);
  (* a QMP command keeps working meanwhile on another thread *)
  let tok = Cancel.create ctx in
  let waiter =
    Thread.create
      (fun () ->
        try Wait.running ~cancel:tok ctx ~stubdom:domid ~guest:(guest + 1) ~timeout_ms:20000
        with Error (`ECANCELED, _) -> ())
      ()
  in
  Thread.delay 0.1;
  Alcotest.(check bool) "command while another thread waits" true
    (contains (Qmp.execute q "query-status") "running");
  Cancel.cancel tok;
  Thread.join waiter;
  Qmp.close q;
  raises "closed qmp" `ESTATE (fun () -> Qmp.execute q "query-status");
  Spawn.destroy s;
  Spawn.close s;
  raises "closed stubdom" `ESTATE (fun () -> Spawn.destroy s);
  Ctx.close ctx;
  Alcotest.(check string) "store back to its first state" before (store ());
  raises "closed ctx" `ESTATE (fun () -> Wait.running ctx ~stubdom:1 ~guest:2 ~timeout_ms:10)

let () =
  Alcotest.run "stubdm"
    [ ("flow", [ Alcotest.test_case "spawn-qmp-save-restore-destroy" `Quick flow ]);
      ("errors", [ Alcotest.test_case "exceptions-and-cancel" `Quick errors ]);
      ( "gc",
        [ Alcotest.test_case "flow-with-compaction" `Quick (fun () ->
              gc := true;
              Fun.protect ~finally:(fun () -> gc := false) flow) ] ) ]
