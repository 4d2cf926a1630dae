#!/bin/sh
# Boots the Xen bench guest as dom0 of Debian's Xen (target/debian/xen, fetched by
# `cargo xtask bench --kernel`) under TCG, prints its rows, and stops QEMU at the guest's
# last line: Xen answers dom0's SCHEDOP_shutdown poweroff by halting, not powering off.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
xen="$root/target/debian/xen"
[ -f "$xen" ] || { echo "xen-guest: $xen missing: run 'cargo xtask bench --kernel' once to fetch it" >&2; exit 122; }
(cd "$root/tests/xen-guest" && CARGO_TARGET_DIR="$root/target/xen-guest" cargo build -q --release --target x86_64-unknown-none)
image="$root/target/xen-guest/x86_64-unknown-none/release/xen-guest"
qemu-system-x86_64 -accel tcg -display none -serial stdio -no-reboot -m 1G -cpu max,-smap \
    -kernel "$xen" -append "console=com1 com1=115200,8n1 dom0_mem=64M" -initrd "$image" 2>&1 |
    while IFS= read -r line; do
        case "$line" in
            *bench*|xen-guest:*|*ERROR*|*Panic*) printf '%s\n' "$line" ;;
        esac
        case "$line" in
            "xen-guest: done"*|*"Reboot in"*) pkill -P $$ qemu-system-x86_64 2>/dev/null; break ;;
        esac
    done
