# What programs learn about the system: /proc as ps, uptime and free read it, the user,
# and the kernel's devices. Run: sh /tests/system.sh; the output must equal
# /tests/system.expected.
wc -w < /proc/uptime
grep -c '^MemTotal:' /proc/meminfo
read stat < /proc/self/stat
test "${stat%% *}" = $$ && echo "/proc/self/stat is this shell's"
test -d /proc/$$ && echo "/proc has this shell's directory"
test -d /proc/1 && echo "/proc has init's directory"
whoami
id -u
echo discarded > /dev/null && echo "/dev/null takes writes"
head -c 5 /dev/zero | od -An -tx1 | tr -s ' '
test -c /dev/null && echo "/dev/null is a character device"
echo $HOME
