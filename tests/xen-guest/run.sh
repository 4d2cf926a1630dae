#!/bin/sh
# Boots the Xen bench guest as dom0 of Debian's Xen (target/debian/xen, fetched by
# `cargo xtask bench --kernel`) under TCG and prints its rows; `cargo xtask bench` runs the
# same boot as its `xen` column. The guest ends with a reboot request, which Xen answers by
# resetting the machine (QEMU exits under -no-reboot); QEMU is also stopped at the last line.
# bootscrub=0: Xen would scrub free memory in its idle loop after boot, delaying the timer
# row's wake-ups (xtask/src/commands/bench_xen.rs boots Xen the same way).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
xen="$root/target/debian/xen"
[ -f "$xen" ] || { echo "xen-guest: $xen missing: run 'cargo xtask bench --kernel' once to fetch it" >&2; exit 122; }
(cd "$root/tests/xen-guest" && CARGO_TARGET_DIR="$root/target/xen-guest" cargo build -q --release --target x86_64-unknown-none)
image="$root/target/xen-guest/x86_64-unknown-none/release/xen-guest"
log=$(mktemp)
qemu-system-x86_64 -accel tcg -display none -serial "file:$log" -no-reboot -m 1G -cpu max,-smap \
    -kernel "$xen" -append "console=com1 com1=115200,8n1 dom0_mem=64M bootscrub=0" -initrd "$image" &
qemu=$!
seconds=0
until grep -q -e "xen-guest: done" -e "Reboot in" "$log" || [ "$seconds" -ge 600 ]; do
    sleep 1
    seconds=$((seconds + 1))
done
kill "$qemu" 2>/dev/null || true
wait "$qemu" 2>/dev/null || true
grep -e bench -e "xen-guest:" -e ERROR -e Panic "$log" || true
finished=0
grep -q "xen-guest: done" "$log" && finished=1
rm -f "$log"
[ "$finished" = 1 ] || { echo "xen-guest: no 'xen-guest: done' line (Xen refused the image or 600 s passed)" >&2; exit 120; }
