(* A device-model start shaped like xenopsd's (ocaml/xenopsd/xc/device.ml,
   Dm.start), with the device model in a Linux stubdomain instead of dom0:

     1. build the qemu argv from the VM's description   (Dm.qemu_args)
     2. spawn the stubdomain for the paused HVM guest   (Dm.start)
     3. wait until the device model is running          (wait_for_qemu)
     4. talk QMP to it: query-status, events            (Qmp_protocol)
     5. save its state, and restore it in a new one     (Dm.suspend / restore)
     6. destroy                                          (Dm.stop)

   Every call blocks only its own thread (xenopsd runs each VM operation
   as a task on a thread), and a task's cancel is a Stubdm.Cancel.t.  On a
   host without Xen it runs on the simulated host: stubdm-ctl sim start.

   usage: xenopsd_dm.exe [--guest DOMID] [--workdir DIR] [--kernel K
            --ramdisk R --cmdline C --stubdom-memory MIB] [--xenconsoled]
            [--smoke]

   On Xen, --kernel/--ramdisk/--cmdline name the stubdomain's image;
   --xenconsoled leaves console 0 to xenconsoled (no save console then);
   --smoke stops after spawn -> running -> query-status -> destroy. *)

open Stubdm

type vm = {
  domid : int;
  name : string;
  memory_mib : int;
  vcpus : int;
  disk : string;  (** the guest's disk image, an emulated IDE disk *)
}

(* 1. What xenopsd's Dm.qemu_args gives QEMU, minus what only a dom0 QEMU
   needs (-chardev for the QMP socket: the library speaks QMP over the
   stubdomain's vchan).  Inside the stubdomain the disks are /dev/xvdX. *)
let qemu_args vm =
  [ "-xen-domid"; string_of_int vm.domid;
    "-machine"; "xenfv";
    "-m"; string_of_int vm.memory_mib;
    "-smp"; string_of_int vm.vcpus;
    "-nodefaults"; "-display"; "none"; "-no-shutdown";
    "-drive"; "file=/dev/xvda,if=ide,index=0,media=disk,format=raw" ]

let log fmt = Printf.printf (fmt ^^ "\n%!")

type image = {
  memory_mib : int;  (** the stubdomain's; 0: the library's default *)
  kernel : string option;
  ramdisk : string option;
  cmdline : string option;
  xenconsoled : bool;
}

(* 2 and 3: spawn returns once the device model reports running. *)
let start ?restore ?cancel ctx vm img ~workdir =
  let args = qemu_args vm in
  log "%s: qemu %s" vm.name (String.concat " " args);
  let consoles, console_backend, disks =
    if img.xenconsoled then ([], Some Console.Xenconsoled, [])
    else
      ( [ (Console.log, "file:" ^ Filename.concat workdir "qemu-dm.log") ],
        None,
        [ { Spawn.target = vm.disk; format = None; readonly = false } ] )
  in
  let s =
    Spawn.spawn ?cancel ctx ~guest:vm.domid ~name:(vm.name ^ "-dm")
      ~memory_kib:(img.memory_mib * 1024) ?kernel:img.kernel
      ?ramdisk:img.ramdisk ?cmdline:img.cmdline ?console_backend ~disks ~consoles
      ?restore_fd:restore ~timeout_ms:150000 args
  in
  log "%s: stubdomain %d, %s" vm.name (Spawn.domid s) (Spawn.step s);
  (* What xenopsd's wait_for_qemu does; the spawn waited already, so this
     returns at once: shown for a caller that spawned elsewhere. *)
  Wait.running ?cancel ctx ~stubdom:(Spawn.domid s) ~guest:vm.domid ~timeout_ms:5000;
  s

(* 4. A QMP handle of xenopsd's own (it shares the spawn's connection). *)
let status q = Qmp.execute q "query-status"

let () =
  let guest = ref 1000 and workdir = ref (Filename.get_temp_dir_name ()) in
  let kernel = ref None and ramdisk = ref None and cmdline = ref None in
  let xenconsoled = ref false and smoke = ref false and mem = ref 0 in
  let some r = Arg.String (fun v -> r := Some v) in
  Arg.parse
    [ ("--guest", Arg.Set_int guest, "DOMID the HVM guest (default 1000)");
      ("--workdir", Arg.Set_string workdir, "DIR for the disk, log and state");
      ("--kernel", some kernel, "FILE the stubdomain's kernel (Xen)");
      ("--ramdisk", some ramdisk, "FILE the stubdomain's ramdisk (Xen)");
      ("--cmdline", some cmdline, "TEXT the stubdomain's command line (Xen)");
      ("--stubdom-memory", Arg.Set_int mem, "MIB the stubdomain's memory");
      ("--xenconsoled", Arg.Set xenconsoled, " console 0 served by xenconsoled");
      ("--smoke", Arg.Set smoke, " spawn, query-status, destroy only") ]
    (fun a -> raise (Arg.Bad a))
    "xenopsd_dm.exe [options]";
  let img = { memory_mib = !mem; kernel = !kernel; ramdisk = !ramdisk; cmdline = !cmdline;
              xenconsoled = !xenconsoled } in
  if Filename.is_relative !workdir then
    workdir := Filename.concat (Sys.getcwd ()) !workdir;
  let disk = Filename.concat !workdir "disk.img" in
  close_out (open_out disk);
  let vm = { domid = !guest; name = "vm" ^ string_of_int !guest;
             memory_mib = 16; vcpus = 1; disk } in
  Ctx.with_ctx (fun ctx ->
      (* The simulated host has no hotplug scripts of its own. *)
      if Ctx.host ctx = Ctx.Sim then Ctx.set_hotplug ctx false;
      let s = start ctx vm img ~workdir:!workdir in
      let q = Qmp.open_ ctx ~stubdom:(Spawn.domid s) ~guest:vm.domid in
      Qmp.enable_events q;
      log "%s: query-status %s" vm.name (status q);
      if !smoke then begin
        Qmp.close q;
        Spawn.destroy s;
        Spawn.close s;
        log "%s: destroyed" vm.name
      end
      else begin
      (* 5. Dm.suspend: the device state through console 1 into a file. *)
      let state = Filename.concat !workdir "dm-state" in
      let fd = Unix.openfile state [ Unix.O_WRONLY; Unix.O_CREAT; Unix.O_TRUNC ] 0o600 in
      let bytes = Dm_state.save s fd in
      Unix.close fd;
      log "%s: saved %Ld bytes of device state" vm.name bytes;
      (match Qmp.next_event ~timeout:5. q with
      | Some ev -> log "%s: event %s" vm.name ev.Qmp.name
      | None -> log "%s: no event" vm.name);
      Qmp.close q;
      (* 6. Dm.stop, then Dm.restore: a new stubdomain fed the state
         through console 2. *)
      Spawn.destroy s;
      Spawn.close s;
      let fd = Unix.openfile state [ Unix.O_RDONLY ] 0 in
      let s = Fun.protect ~finally:(fun () -> Unix.close fd)
          (fun () -> start ~restore:fd ctx vm img ~workdir:!workdir) in
      let q = Qmp.open_ ctx ~stubdom:(Spawn.domid s) ~guest:vm.domid in
      log "%s: restored, query-status %s" vm.name (status q);
      Qmp.close q;
      Spawn.destroy s;
      Spawn.close s;
      log "%s: destroyed" vm.name
      end)
