# A boot sector for section pci of tests/xen/payload.sh (docs/real-xen.md):
# the HVM guest's proof that a host PCI device passed through a library
# stubdomain is really there.  It finds QEMU's edu device (1234:11e8) in
# PCI configuration space (mechanism #1, bus 0, function 0 of each slot),
# reads its BAR0 as hvmloader placed it, reads edu's identification
# register (BAR0 + 0, 0x010000ed) and writes 0x12345678 to its liveness
# register (BAR0 + 4), which reads back inverted (0xedcba987): reads and
# a write that reach the outer QEMU's device through the mapping of the
# real BAR that the stubdomain's qemu-xen set up.  The result goes to COM1
# and to Xen's debug port 0xe9 (`xl dmesg`) as one line,
#   XT-PCI-EDU slot=SS bar0=XXXXXXXX id=XXXXXXXX live=XXXXXXXX
# (or XT-PCI-EDU none), then it idles (sti; hlt: a halt with interrupts
# off would power the guest off), ejecting what QEMU asks to unplug.
# BAR0 is above 1 MiB: fs gets a flat 4 GiB segment ("unreal" mode: fs
# loaded once in protected mode, its limit kept back in real mode), so no
# protected-mode code runs longer than two instructions and the real-mode
# interrupt table stays valid.
# Built by tests/xen/run.sh (as --32, ld --oformat binary at 0x7c00).
        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %sp
        cld
        call    com1_init
        xor     %bx, %bx
scan:
        xor     %cl, %cl
        call    cfg_read
        cmp     $0x11e81234, %eax
        je      found
        inc     %bx
        cmp     $32, %bx
        jb      scan
        mov     $m_none, %si
        call    puts
        jmp     idle

found:
        mov     %bl, slot
        mov     $0x10, %cl
        call    cfg_read
        and     $0xfffffff0, %eax
        mov     %eax, bar0
        mov     %eax, %edi
        lgdt    gdtr
        mov     %cr0, %eax
        or      $1, %al
        mov     %eax, %cr0
        jmp     1f
1:      mov     $8, %cx
        mov     %cx, %fs
        and     $0xfe, %al
        mov     %eax, %cr0
        jmp     2f
2:      movl    %fs:(%edi), %eax
        mov     %eax, ident
        movl    $0x12345678, %fs:4(%edi)
        movl    %fs:4(%edi), %eax
        mov     %eax, live

        mov     $m_slot, %si
        call    puts
        movzbl  slot, %eax
        shl     $24, %eax
        mov     $2, %cx
        call    hexn
        mov     $m_bar, %si
        call    puts
        mov     bar0, %eax
        call    hex32
        mov     $m_id, %si
        call    puts
        mov     ident, %eax
        call    hex32
        mov     $m_live, %si
        call    puts
        mov     live, %eax
        call    hex32
        mov     $m_end, %si
        call    puts
# The idle loop is also the guest's hot-unplug handler: a device_del makes
# QEMU set the slot's bit in its ACPI PCI hotplug "down" register (0xae04);
# an OS's ACPI handler would eject it through B0EJ (0xae08), and only then
# does QEMU remove the device and send DEVICE_DELETED.  Each new request
# is logged once: XT-PCI-EDU eject down=XXXXXXXX.
idle:
        sti
        hlt
        mov     $0xae04, %dx
        in      %dx, %eax
        test    %eax, %eax
        jnz     1f
        mov     %eax, down
        jmp     idle
1:      mov     $0xae08, %dx
        out     %eax, %dx
        cmp     down, %eax
        je      idle
        mov     %eax, down
        mov     $m_eject, %si
        call    puts
        mov     down, %eax
        call    hex32
        mov     $m_end, %si
        call    puts
        jmp     idle

# eax = the configuration dword at bus 0, slot bx, function 0, offset cl
cfg_read:
        movzwl  %bx, %eax
        shl     $11, %eax
        or      $0x80000000, %eax
        movzbl  %cl, %edx
        or      %edx, %eax
        mov     $0xcf8, %dx
        out     %eax, %dx
        mov     $0xcfc, %dx
        in      %dx, %eax
        ret

# COM1: 115200 8N1
com1_init:
        mov     $0x3fb, %dx
        mov     $0x80, %al
        out     %al, %dx
        mov     $0x3f8, %dx
        mov     $1, %al
        out     %al, %dx
        inc     %dx
        xor     %al, %al
        out     %al, %dx
        mov     $0x3fb, %dx
        mov     $3, %al
        out     %al, %dx
        ret

# al to Xen's debug port (the guest's lines in `xl dmesg`) and to COM1
# once its transmitter is empty (LSR bit 5)
putc:
        out     %al, $0xe9
        push    %ax
        mov     $0x3fd, %dx
3:      in      %dx, %al
        test    $0x20, %al
        jz      3b
        pop     %ax
        mov     $0x3f8, %dx
        out     %al, %dx
        ret

# the NUL-terminated string at si
puts:
        lodsb
        test    %al, %al
        jz      4f
        call    putc
        jmp     puts
4:      ret

# eax as 8 hex digits; hexn: its top cx digits
hex32:
        mov     $8, %cx
hexn:
        rol     $4, %eax
        push    %eax
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     5f
        add     $39, %al
5:      call    putc
        pop     %eax
        loop    hexn
        ret

m_none: .asciz  "XT-PCI-EDU none\r\n"
m_slot: .asciz  "XT-PCI-EDU slot="
m_bar:  .asciz  " bar0="
m_id:   .asciz  " id="
m_live: .asciz  " live="
m_end:  .asciz  "\r\n"
m_eject: .asciz "XT-PCI-EDU eject down="

        .balign 8
gdt:    .quad   0
        .quad   0x00cf92000000ffff      # data: base 0, limit 4 GiB, writable
gdtr:   .word   gdtr - gdt - 1
        .long   gdt
slot:   .byte   0
        .balign 4
bar0:   .long   0
ident:  .long   0
live:   .long   0
down:   .long   0
