#!/usr/bin/env python3
"""Splits one bench iteration into instructions per function (hypervisor and guest).

Why: `cargo xtask bench --counted` gives instructions per iteration, not where they go.
This reads a QEMU TCG log taken with `-d in_asm,exec,nochain` (every translated block's
instructions, then one `Trace` line per block executed, no chaining so none is skipped)
and charges each executed block's instruction count to the function holding its first
address (symbols from `nm` of the ELFs given). Iterations are delimited by executions of
a marker function (e.g. `trap_stub_3` for the exception bounce, `trap_stub_14` for the
page fault, `bench_with_clock` for rows without a trap, which runs MARKS times per
iteration); the mean over iterations from the middle of the run is printed, hypervisor
and guest totals last. A block that faults midway is charged in full, so the sum can
exceed the bench's own median by a few per cent.

Run the guest alone on instruction-counted time with few iterations (the log grows by
~2 MB per thousand instructions of boot and iterations):

    qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -nodefaults -no-user-config \
      -display none -no-reboot -m 512M -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
      -accel tcg -cpu max -icount shift=0,sleep=off \
      -kernel target/ringfence/hypervisor.elf -initrd target/ringfence/runs/bench_exception.tar \
      -append "domain=bench_exception,arg=iterations=40" -serial file:serial.txt \
      -d in_asm,exec,nochain -D trace.log
    xtask/scripts/trace_split.py trace.log trap_stub_3 1 \
      target/ringfence/hypervisor.elf target/ringfence/guests/bench_exception.elf

Usage: trace_split.py LOG MARKER MARKS ELF...
"""
import bisect
import collections
import re
import subprocess
import sys


def symbols(elf):
    listing = subprocess.run(["nm", "-n", "-C", elf], capture_output=True, text=True, check=True).stdout
    found = []
    for line in listing.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1] in "tTwW":
            found.append((int(parts[0], 16), parts[2]))
    return found


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    log, marker, marks_per_iteration, elves = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    table = []
    for elf in elves:
        tag = elf.rsplit("/", 1)[-1].split(".")[0]
        table += [(address, f"{tag}:{name}") for address, name in symbols(elf)]
    table.sort()
    starts = [address for address, _ in table]
    names = {}

    def name(pc):
        if pc not in names:
            index = bisect.bisect_right(starts, pc) - 1
            names[pc] = table[index][1] if index >= 0 else "?"
        return names[pc]

    instruction = re.compile(r"^0x([0-9a-f]+):")
    executed = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
    size, trace, block = {}, [], None
    with open(log, errors="replace") as lines:
        for line in lines:
            if line.startswith("IN:"):
                block = None
                continue
            match = instruction.match(line)
            if match:
                if block is None:
                    block, count = int(match.group(1), 16), 0
                count += 1
                size[block] = count
                continue
            match = executed.match(line)
            if match:
                block = None
                trace.append(int(match.group(1), 16))
    marks = [index for index, pc in enumerate(trace) if marker in name(pc)]
    print(f"{len(trace)} blocks executed, {len(marks)} markers")
    iterations = min(10, (len(marks) - 2) // 2 // marks_per_iteration)
    if iterations < 1:
        sys.exit("too few markers: run more iterations or pick another marker")
    first = len(marks) // 2 - iterations * marks_per_iteration // 2
    window = trace[marks[first]:marks[first + iterations * marks_per_iteration]]
    charged, order = collections.Counter(), []
    for pc in window:
        function = name(pc)
        if function not in charged:
            order.append(function)
        charged[function] += size.get(pc, 0)
    print(f"per iteration (mean of {iterations}): {sum(charged.values()) / iterations:.1f} instructions")
    sides = collections.Counter()
    for function in order:
        sides[function.split(":")[0]] += charged[function]
        print(f"{charged[function] / iterations:8.1f}  {function[:150]}")
    for side, count in sides.items():
        print(f"{count / iterations:8.1f}  total {side}")


if __name__ == "__main__":
    main()
