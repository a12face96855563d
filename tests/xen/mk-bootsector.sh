#!/bin/sh
# mk-bootsector.sh OUT [MARKER]: a 1 MiB raw disk image whose MBR boot
# sector, hand-assembled below (no toolchain), initialises COM1 (0x3f8,
# 115200 8N1), writes MARKER (default XT-BOOTED-FROM-XVDA) and CR LF to it,
# polling LSR (0x3fd) bit 5 before each byte, and then halts with
# interrupts on (sti; hlt, for ever: SeaBIOS's timer interrupt wakes it and
# it halts again).  Not cli; hlt: Xen takes a halt with interrupts off as
# the vCPU going down, so the guest powers off (docs/real-xen.md).  The
# marker is stored XORed with 0x5a, so it is not on the disk as text: the
# marker on the serial line means the sector's code ran.  Used by section
# bootdisk of tests/xen/payload.sh (docs/real-xen.md).
set -eu
out=$1 marker=${2:-XT-BOOTED-FROM-XVDA}
# byte VALUE...: each VALUE (0-255) as one raw byte
byte() { for v do printf "\\$(printf %03o "$v")"; done; }
{
    # offset: code (loaded at 0000:7c00)
    byte 0xfa                    # 00 cli
    byte 0x31 0xc0               # 01 xor ax,ax
    byte 0x8e 0xd8               # 03 mov ds,ax
    byte 0xfc                    # 05 cld
    byte 0xba 0xfb 0x03          # 06 mov dx,0x3fb   LCR
    byte 0xb0 0x80               # 09 mov al,0x80    DLAB
    byte 0xee                    # 0b out dx,al
    byte 0xba 0xf8 0x03          # 0c mov dx,0x3f8   DLL
    byte 0xb0 0x01               # 0f mov al,1       115200
    byte 0xee                    # 11 out dx,al
    byte 0x42                    # 12 inc dx         DLM
    byte 0x30 0xc0               # 13 xor al,al
    byte 0xee                    # 15 out dx,al
    byte 0xba 0xfb 0x03          # 16 mov dx,0x3fb
    byte 0xb0 0x03               # 19 mov al,3       8N1, DLAB off
    byte 0xee                    # 1b out dx,al
    byte 0xbe 0x3c 0x7c          # 1c mov si,0x7c3c  the message
    byte 0xac                    # 1f next: lodsb
    byte 0x34 0x5a               # 20 xor al,0x5a
    byte 0x84 0xc0               # 22 test al,al
    byte 0x74 0x12               # 24 jz done (0x38)
    byte 0x88 0xc3               # 26 mov bl,al
    byte 0xba 0xfd 0x03          # 28 mov dx,0x3fd   LSR
    byte 0xec                    # 2b wait: in al,dx
    byte 0xa8 0x20               # 2c test al,0x20   THR empty
    byte 0x74 0xfb               # 2e jz wait (0x2b)
    byte 0x88 0xd8               # 30 mov al,bl
    byte 0xba 0xf8 0x03          # 32 mov dx,0x3f8   THR
    byte 0xee                    # 35 out dx,al
    byte 0xeb 0xe7               # 36 jmp next (0x1f)
    byte 0xfb                    # 38 done: sti
    byte 0xf4                    # 39 idle: hlt
    byte 0xeb 0xfd               # 3a jmp idle (0x39)
    # 3c: the message, each byte XOR 0x5a, then the terminator (0 XOR 0x5a)
    m="$marker
"
    while [ -n "$m" ]; do
        c=${m%"${m#?}"}; m=${m#?}
        if [ "$c" = "
" ]; then byte $((13 ^ 0x5a)) $((10 ^ 0x5a))
        else byte $(( $(printf %d "'$c") ^ 0x5a )); fi
    done
    byte 0x5a
} > "$out"
n=$(wc -c < "$out")
[ "$n" -le 446 ] || { echo "mk-bootsector: code and marker take $n bytes (> 446)" >&2; exit 1; }
# pad to 510, the boot signature 55 aa, then zeros to 1 MiB
head -c $((510 - n)) /dev/zero >> "$out"
byte 0x55 0xaa >> "$out"
head -c $((1048576 - 512)) /dev/zero >> "$out"
