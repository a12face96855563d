(** OCaml binding of libstubdm: spawn, wait for, talk QMP to, save, restore
    and destroy Xen Linux stubdomains (include/libstubdm.h; docs/ocaml.md).

    {b Threads.}  Every blocking call releases the OCaml runtime: other
    threads run meanwhile, and several threads may block on one {!Ctx.t} at
    once (their QMP commands are on the wire together).  A blocking call is
    cancelled from another thread with {!Ctx.interrupt} (every call on the
    ctx) or a {!Cancel.t} (the calls given it); it then raises
    [Error (`ECANCELED, _)] once the library has undone what it must (a
    spawn's rollback).  The library never calls OCaml: QMP events are
    pulled with {!Qmp.next_event}.

    {b Handles.}  {!Ctx.t}, {!Qmp.t} and {!Spawn.t} release their C object
    once: at [close] (idempotent) or, if never closed, when the GC
    finalises them.  A closed handle raises [Error (`ESTATE, _)].  A
    {!Ctx.t}'s C context lives until its last handle is released. *)

(** The library's error codes, named as stubdm_errname names them without
    the [STUBDM_] prefix.  An unknown code (a newer library) is [`EFAIL]. *)
type code =
  [ `EFAIL | `EINVAL | `ENOMEM | `ESTATE | `EXENSTORE | `ETIMEDOUT
  | `ECANCELED | `EDOMAIN_GONE | `EPROTO | `EQMP | `EVCHAN | `EBUFFERFULL
  | `ERECURSIVE | `ENOENT | `EPERM | `EBUSY | `ELIMIT | `ENOTSUP | `EXEN
  | `ENOTSTUBDOM | `EAGAIN ]

(** Every failure: the code and the library's detailed message (the
    operation's or the ctx's: what it waited for, the step, the path). *)
exception Error of (code * string)

val code_name : code -> string
(** ["STUBDM_ETIMEDOUT"] (stubdm_errname). *)

val strerror : code -> string
(** A short English description (stubdm_strerror). *)

val version : unit -> string
(** The loaded library's version. *)

(** The context: one xenstore connection, one event loop, the host. *)
module Ctx : sig
  type t
  type host = Auto | Xen | Sim

  val create : ?host:host -> unit -> t
  (** [Auto] (default): Xen when a hypervisor is present, else the
      simulated host (stubdm-ctl sim start). *)

  val close : t -> unit
  (** No new call on the ctx; idempotent.  The C context is freed with the
      ctx's last handle (a pending spawn is rolled back then). *)

  val with_ctx : ?host:host -> (t -> 'a) -> 'a
  val host : t -> host

  val set_hotplug : t -> bool -> unit
  (** Run the backends' hotplug scripts (default true). *)

  val interrupt : t -> unit
  (** Cancel every blocking call running on the ctx now, from any thread. *)
end

(** A cancel token for blocking calls, cancelled from any thread. *)
module Cancel : sig
  type t

  val create : Ctx.t -> t
  val cancel : t -> unit
  (** Every call given the token, now or later, raises [`ECANCELED]. *)

  val is_cancelled : t -> bool
end

(** A xenstore node the library would write. *)
type node = { path : string; value : string; perms : string option }

(** The QEMU argv in xenstore (docs/protocol.md). *)
module Dm_argv : sig
  type encoding = Directory | Minios_dmargs | Esc_string

  val encode :
    Ctx.t -> vm_path:string -> stubdom:int -> ?encoding:encoding ->
    ?max_value_len:int -> string list -> node list
  (** The nodes, without I/O; [`EINVAL] for an argument the encoding cannot
      carry, [`ELIMIT] beyond the bounds. *)

  val write :
    Ctx.t -> vm_path:string -> stubdom:int -> ?encoding:encoding ->
    ?max_value_len:int -> string list -> unit

  val read : Ctx.t -> vm_path:string -> ?encoding:encoding -> unit -> string list
end

(** The stubdomain's consoles: 0 log, 1 save, 2 restore, 3.. serials. *)
module Console : sig
  type backend = Ioemu | Xenconsoled | Libstubdm

  val log : int
  val save : int
  val restore : int
  val serial : int -> int

  type info = {
    state : int;  (** the backend's xenbus state *)
    result : [ `Serving | `Done | `Failed of code ];
    bytes_out : int64;  (** from the stubdomain *)
    bytes_in : int64;  (** to the stubdomain *)
    bytes_dropped : int64;
    tty : string option;  (** a serial's pty *)
  }
end

(** The xenstore contract of a stubdomain start (for a toolstack that
    builds the domain itself). *)
module Contract : sig
  type t = {
    guest : int;
    stubdom : int;
    vm_path : string option;
    args : string list;
    encoding : Dm_argv.encoding;
    backend : Console.backend;
    consoles : (int * string) list;  (** console number, QEMU chardev output *)
    hvmloader_bios : string option;
    toolstack_domid : int;
    dm_version : bool;
  }

  val make :
    guest:int -> stubdom:int -> ?vm_path:string -> ?encoding:Dm_argv.encoding ->
    ?backend:Console.backend -> ?consoles:(int * string) list ->
    ?hvmloader_bios:string -> ?toolstack_domid:int -> ?dm_version:bool ->
    string list -> t

  val layout : Ctx.t -> t -> node list
  val write : Ctx.t -> t -> unit
  val remove : Ctx.t -> t -> unit
end

(** Waiting for the device model. *)
module Wait : sig
  val running :
    ?cancel:Cancel.t -> Ctx.t -> stubdom:int -> guest:int -> timeout_ms:int -> unit
  (** Until device-model/<guest>/state reads "running"; [`ETIMEDOUT],
      [`EDOMAIN_GONE], [`EXENSTORE], [`ECANCELED]. *)
end

(** QMP to the QEMU in a stubdomain. *)
module Qmp : sig
  type t

  (** A reply: the whole JSON text and the parsed parts the C API has. *)
  type reply = {
    json : string;
    return_json : string option;  (** the "return" member; None: an error *)
    error_class : string option;
    error_desc : string option;
  }

  type event = {
    name : string;
    event_json : string;
    data_json : string option;
    timestamp : (int64 * int64) option;  (** seconds, microseconds *)
  }

  type stats = {
    commands_sent : int64;
    replies : int64;
    events : int64;
    events_queued : int64;
    events_dropped : int64;
  }

  val open_ :
    ?cancel:Cancel.t -> ?timeout_ms:int -> Ctx.t -> stubdom:int -> guest:int -> t
  (** Handles of one ctx for one (stubdom, guest) share the connection. *)

  val close : t -> unit

  val execute :
    ?cancel:Cancel.t -> ?args:string -> ?timeout_ms:int -> t -> string -> string
  (** The "return" member as JSON text; a QEMU error raises
      [Error (`EQMP, "Class: desc")].  [args]: the arguments object as
      JSON text.  Default timeout 10 s. *)

  val execute_reply :
    ?cancel:Cancel.t -> ?args:string -> ?timeout_ms:int -> t -> string -> reply
  (** The reply, a QEMU error included (no [`EQMP] raised). *)

  val enable_events : ?capacity:int -> ?drop_newest:bool -> t -> unit
  (** Queue the handle's events (bounded: [capacity], default 256; a full
      queue drops the oldest, or the new one with [drop_newest]). *)

  val next_event : ?cancel:Cancel.t -> ?timeout:float -> t -> event option
  (** The oldest queued event, waiting for one up to [timeout] seconds
      (default: forever); None at the timeout.  [`ESTATE] without
      {!enable_events}. *)

  val greeting_json : t -> string option
  val stats : t -> stats
end

(** Spawning a stubdomain, and the handle of one. *)
module Spawn : sig
  type t
  type disk = { target : string; format : string option; readonly : bool }

  val spawn :
    ?cancel:Cancel.t -> ?uuid:string -> ?name:string -> ?memory_kib:int ->
    ?vcpus:int -> ?kernel:string -> ?ramdisk:string -> ?cmdline:string ->
    ?disks:disk list -> ?consoles:(int * string) list ->
    ?console_backend:Console.backend -> ?restore_fd:Unix.file_descr ->
    ?timeout_ms:int -> ?qmp:bool -> ?sim_program:string ->
    ?sim_args:string list -> ?stubdom_domid:int -> Ctx.t -> guest:int ->
    string list -> t
  (** Create, write the contract, attach devices, run hotplug scripts,
      unpause, wait for running, open QMP ([qmp], default true: needed by
      {!Dm_state.save}).  The last argument is QEMU's argv without
      argv[0].  A failure has rolled everything back before it raises. *)

  val domid : t -> int
  val guest : t -> int
  val step : t -> string

  val console : t -> int -> Console.info option
  (** Console n as the spawn serves it (libstubdm console backend). *)

  val pause : t -> unit
  val unpause : t -> unit

  val destroy : ?cancel:Cancel.t -> t -> unit
  (** Tear down: the domain, its devices, its nodes; the handle stays valid
      until closed. *)

  val close : t -> unit
  (** Release the handle; a running stubdomain keeps running. *)

  val destroy_by_domid : ?cancel:Cancel.t -> ?force:bool -> Ctx.t -> int -> unit
end

(** The device model's state: save through console 1 (restore: the
    [restore_fd] of {!Spawn.spawn}, through console 2). *)
module Dm_state : sig
  val save : ?cancel:Cancel.t -> ?timeout_ms:int -> Spawn.t -> Unix.file_descr -> int64
  (** The bytes written; the device model is left stopped ("cont" resumes). *)

  val save_by_domid :
    ?cancel:Cancel.t -> ?timeout_ms:int -> Ctx.t -> stubdom:int -> guest:int ->
    Unix.file_descr -> int64
end
