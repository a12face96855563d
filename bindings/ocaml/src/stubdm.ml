(* OCaml binding of libstubdm: see stubdm.mli and docs/ocaml.md. *)

type code =
  [ `EFAIL | `EINVAL | `ENOMEM | `ESTATE | `EXENSTORE | `ETIMEDOUT
  | `ECANCELED | `EDOMAIN_GONE | `EPROTO | `EQMP | `EVCHAN | `EBUFFERFULL
  | `ERECURSIVE | `ENOENT | `EPERM | `EBUSY | `ELIMIT | `ENOTSUP | `EXEN
  | `ENOTSTUBDOM | `EAGAIN ]

exception Error of (code * string)

let () = Callback.register_exception "stubdm.error" (Error (`EFAIL, ""))

let all_codes : (code * int) list =
  [ (`EFAIL, -1); (`EINVAL, -2); (`ENOMEM, -3); (`ESTATE, -4);
    (`EXENSTORE, -5); (`ETIMEDOUT, -6); (`ECANCELED, -7);
    (`EDOMAIN_GONE, -8); (`EPROTO, -9); (`EQMP, -10); (`EVCHAN, -11);
    (`EBUFFERFULL, -12); (`ERECURSIVE, -13); (`ENOENT, -14); (`EPERM, -15);
    (`EBUSY, -16); (`ELIMIT, -17); (`ENOTSUP, -18); (`EXEN, -19);
    (`ENOTSTUBDOM, -20); (`EAGAIN, -21) ]

external strerror_of_int : int -> string = "stubdm_ml_strerror"
external errname_of_int : int -> string = "stubdm_ml_errname"
external version : unit -> string = "stubdm_ml_version"

let code_to_int c = List.assoc c all_codes
let code_name c = errname_of_int (code_to_int c)
let strerror c = strerror_of_int (code_to_int c)

let () =
  Printexc.register_printer (function
    | Error (c, msg) -> Some (Printf.sprintf "Stubdm.Error(%s, %S)" (code_name c) msg)
    | _ -> None)

module Ctx = struct
  type t
  type host = Auto | Xen | Sim

  external create_raw : int -> t = "stubdm_ml_ctx_new"
  external close : t -> unit = "stubdm_ml_ctx_close"
  external host_raw : t -> int = "stubdm_ml_ctx_host"
  external set_hotplug : t -> bool -> unit = "stubdm_ml_ctx_set_hotplug"
  external interrupt : t -> unit = "stubdm_ml_ctx_interrupt"

  let create ?(host = Auto) () =
    create_raw (match host with Auto -> 0 | Xen -> 1 | Sim -> 2)

  let host t = match host_raw t with 1 -> Xen | 2 -> Sim | _ -> Auto

  let with_ctx ?host f =
    let t = create ?host () in
    Fun.protect ~finally:(fun () -> close t) (fun () -> f t)
end

module Cancel = struct
  type t
  external create : Ctx.t -> t = "stubdm_ml_cancel_new"
  external cancel : t -> unit = "stubdm_ml_cancel_cancel"
  external is_cancelled : t -> bool = "stubdm_ml_cancel_is_cancelled"
end

type node = { path : string; value : string; perms : string option }

let nodes_of l = List.map (fun (path, value, perms) -> { path; value; perms }) l

module Dm_argv = struct
  type encoding = Directory | Minios_dmargs | Esc_string

  let int_of_encoding = function
    | Directory -> 0 | Minios_dmargs -> 1 | Esc_string -> 2

  external raw :
    Ctx.t -> int -> string -> int -> int -> int -> string list
    -> (string * string * string option) list
    = "stubdm_ml_dm_argv_byte" "stubdm_ml_dm_argv"

  external read_raw : Ctx.t -> string -> int -> string list
    = "stubdm_ml_dm_argv_read"

  let encode ctx ~vm_path ~stubdom ?(encoding = Directory) ?(max_value_len = 0)
      args =
    nodes_of
      (raw ctx 0 vm_path stubdom (int_of_encoding encoding) max_value_len args)

  let write ctx ~vm_path ~stubdom ?(encoding = Directory) ?(max_value_len = 0)
      args =
    ignore (raw ctx 1 vm_path stubdom (int_of_encoding encoding) max_value_len args)

  let read ctx ~vm_path ?(encoding = Directory) () =
    read_raw ctx vm_path (int_of_encoding encoding)
end

type stubdom

let code_of_int rc =
  match List.find_opt (fun (_, i) -> i = rc) all_codes with
  | Some (c, _) -> c
  | None -> `EFAIL

module Console = struct
  type backend = Ioemu | Xenconsoled | Libstubdm

  let int_of_backend = function Ioemu -> 0 | Xenconsoled -> 1 | Libstubdm -> 2
  let log = 0
  let save = 1
  let restore = 2
  let serial n = 3 + n

  type info = {
    state : int;
    result : [ `Serving | `Done | `Failed of code ];
    bytes_out : int64;
    bytes_in : int64;
    bytes_dropped : int64;
    tty : string option;
  }

  external raw :
    stubdom -> int -> (int * int * int64 * int64 * int64 * string option) option
    = "stubdm_ml_console_info"

  let info s n =
    match raw s n with
    | None -> None
    | Some (state, result, bytes_out, bytes_in, bytes_dropped, tty) ->
        let result =
          if result = -4 then `Serving
          else if result = 0 then `Done
          else `Failed (code_of_int result)
        in
        Some { state; result; bytes_out; bytes_in; bytes_dropped; tty }
end

module Contract = struct
  type t = {
    guest : int;
    stubdom : int;
    vm_path : string option;
    args : string list;
    encoding : Dm_argv.encoding;
    backend : Console.backend;
    consoles : (int * string) list;
    hvmloader_bios : string option;
    toolstack_domid : int;
    dm_version : bool;
  }

  let make ~guest ~stubdom ?vm_path ?(encoding = Dm_argv.Directory)
      ?(backend = Console.Ioemu) ?(consoles = []) ?hvmloader_bios
      ?(toolstack_domid = 0) ?(dm_version = true) args =
    { guest; stubdom; vm_path; args; encoding; backend; consoles;
      hvmloader_bios; toolstack_domid; dm_version }

  (* The record the C stubs read: the enums as ints. *)
  type raw = {
    r_guest : int; r_stubdom : int; r_vm_path : string option;
    r_args : string list; r_encoding : int; r_backend : int;
    r_consoles : (int * string) list; r_bios : string option;
    r_toolstack : int; r_dm_version : bool;
  }

  external raw : Ctx.t -> int -> raw -> (string * string * string option) list
    = "stubdm_ml_contract"

  let to_raw t =
    { r_guest = t.guest; r_stubdom = t.stubdom; r_vm_path = t.vm_path;
      r_args = t.args; r_encoding = Dm_argv.int_of_encoding t.encoding;
      r_backend = Console.int_of_backend t.backend; r_consoles = t.consoles;
      r_bios = t.hvmloader_bios; r_toolstack = t.toolstack_domid;
      r_dm_version = t.dm_version }

  let layout ctx t = nodes_of (raw ctx 0 (to_raw t))
  let write ctx t = ignore (raw ctx 1 (to_raw t))
  let remove ctx t = ignore (raw ctx 2 (to_raw t))
end

module Wait = struct
  external raw : Ctx.t -> Cancel.t option -> int -> int -> int -> unit
    = "stubdm_ml_wait_running"

  let running ?cancel ctx ~stubdom ~guest ~timeout_ms =
    raw ctx cancel stubdom guest timeout_ms
end

module Qmp = struct
  type t

  type reply = {
    json : string;
    return_json : string option;
    error_class : string option;
    error_desc : string option;
  }

  type event = {
    name : string;
    event_json : string;
    data_json : string option;
    timestamp : (int64 * int64) option;
  }

  type stats = {
    commands_sent : int64;
    replies : int64;
    events : int64;
    events_queued : int64;
    events_dropped : int64;
  }

  external open_raw : Ctx.t -> Cancel.t option -> int -> int -> int -> t
    = "stubdm_ml_qmp_open"
  external close : t -> unit = "stubdm_ml_qmp_close"
  external execute_raw :
    t -> Cancel.t option -> string -> string option -> int -> reply
    = "stubdm_ml_qmp_execute"
  external events_enable_raw : t -> int -> bool -> unit
    = "stubdm_ml_qmp_events_enable"
  external next_event_raw :
    t -> Cancel.t option -> int
    -> (string * string * string option * int64 * int64) option
    = "stubdm_ml_qmp_next_event"
  external greeting_json : t -> string option = "stubdm_ml_qmp_greeting"
  external stats_raw : t -> int64 * int64 * int64 * int64 * int64
    = "stubdm_ml_qmp_stats"

  let open_ ?cancel ?(timeout_ms = 0) ctx ~stubdom ~guest =
    open_raw ctx cancel stubdom guest timeout_ms

  let execute_reply ?cancel ?args ?(timeout_ms = 10000) q command =
    execute_raw q cancel command args timeout_ms

  let execute ?cancel ?args ?timeout_ms q command =
    let r = execute_reply ?cancel ?args ?timeout_ms q command in
    match r.return_json with
    | Some j -> j
    | None ->
        let cls = Option.value r.error_class ~default:"" in
        let desc = Option.value r.error_desc ~default:"" in
        raise (Error (`EQMP, Printf.sprintf "%s: %s" cls desc))

  let enable_events ?(capacity = 256) ?(drop_newest = false) q =
    events_enable_raw q capacity drop_newest

  let next_event ?cancel ?timeout q =
    let ms =
      match timeout with
      | None -> -1
      | Some s -> max 0 (int_of_float (s *. 1000.))
    in
    match next_event_raw q cancel ms with
    | None -> None
    | Some (name, event_json, data_json, sec, usec) ->
        let timestamp = if sec < 0L then None else Some (sec, usec) in
        Some { name; event_json; data_json; timestamp }

  let stats q =
    let commands_sent, replies, events, events_queued, events_dropped =
      stats_raw q
    in
    { commands_sent; replies; events; events_queued; events_dropped }
end

module Spawn = struct
  type disk = { target : string; format : string option; readonly : bool }

  type config = {
    guest : int;
    uuid : string option;
    name : string option;
    args : string list;
    memory_kib : int;
    vcpus : int;
    kernel : string option;
    ramdisk : string option;
    cmdline : string option;
    disks : (string * string option * bool) list;
    consoles : (int * string) list;
    console_backend : int;
    restore_fd : int;
    timeout_ms : int;
    qmp : bool;
    sim_program : string option;
    sim_args : string list;
    stubdom_domid : int;
  }

  type t = stubdom

  external spawn_raw : Ctx.t -> Cancel.t option -> config -> t
    = "stubdm_ml_spawn"
  external info : t -> int * int * string = "stubdm_ml_stubdom_info"
  external close : t -> unit = "stubdm_ml_stubdom_close"
  external destroy_raw : t -> Cancel.t option -> unit
    = "stubdm_ml_stubdom_destroy"
  external destroy_by_domid_raw : Ctx.t -> Cancel.t option -> int -> bool -> unit
    = "stubdm_ml_destroy_by_domid"
  external pause_raw : t -> bool -> unit = "stubdm_ml_stubdom_pause"

  let fd_int (fd : Unix.file_descr) : int = Obj.magic fd

  let spawn ?cancel ?uuid ?name ?(memory_kib = 0) ?(vcpus = 0) ?kernel
      ?ramdisk ?cmdline ?(disks = []) ?(consoles = []) ?console_backend
      ?restore_fd ?(timeout_ms = 0) ?(qmp = true) ?sim_program ?(sim_args = [])
      ?(stubdom_domid = 0) ctx ~guest args =
    spawn_raw ctx cancel
      { guest; uuid; name; args; memory_kib; vcpus; kernel; ramdisk; cmdline;
        disks = List.map (fun d -> (d.target, d.format, d.readonly)) disks;
        consoles;
        console_backend =
          (match console_backend with
          | None -> -1
          | Some b -> Console.int_of_backend b);
        restore_fd = (match restore_fd with None -> -1 | Some fd -> fd_int fd);
        timeout_ms; qmp; sim_program; sim_args; stubdom_domid }

  let domid t = let d, _, _ = info t in d
  let guest t = let _, g, _ = info t in g
  let step t = let _, _, s = info t in s
  let console = Console.info
  let destroy ?cancel t = destroy_raw t cancel

  let destroy_by_domid ?cancel ?(force = false) ctx domid =
    destroy_by_domid_raw ctx cancel domid force

  let pause t = pause_raw t true
  let unpause t = pause_raw t false
end

module Stubdom = Spawn

module Dm_state = struct
  external save_raw : Spawn.t -> Cancel.t option -> int -> int -> int64
    = "stubdm_ml_stubdom_save"
  external dm_save_raw :
    Ctx.t -> Cancel.t option -> int -> int -> int -> int -> int64
    = "stubdm_ml_dm_save_byte" "stubdm_ml_dm_save"

  let save ?cancel ?(timeout_ms = 20000) s fd =
    save_raw s cancel (Spawn.fd_int fd) timeout_ms

  let save_by_domid ?cancel ?(timeout_ms = 20000) ctx ~stubdom ~guest fd =
    dm_save_raw ctx cancel stubdom guest (Spawn.fd_int fd) timeout_ms
end

