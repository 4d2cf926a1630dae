# The shell itself: test, variables and expansions, arithmetic, functions, case, loops,
# exit statuses, subshells, command substitution, here-documents, read, env, trap. Run:
# sh /tests/shell.sh; the output must equal /tests/shell.expected.
x=5
if test $x -gt 3; then echo "5 > 3"; fi
[ "$x" = 5 ] && echo "x is 5"
[ -z "" ] && [ -n "a" ] && echo "empty and not empty"
test -d / && test ! -f / && echo "/ is a directory"
name=world
echo "hello ${name}, ${#name} letters, ${unset:-default}, ${name%ld}"
echo $((2 + 3 * 4)) $((17 / 5)) $((17 % 5)) $((1 << 10))
greet() { echo "function got $# arguments: $*"; return 3; }
greet a b c
echo "function returned $?"
for word in red green blue; do
    case $word in
        r*) echo "$word starts with r" ;;
        g*) echo "$word starts with g" ;;
        *) echo "$word is something else" ;;
    esac
done
i=0
while [ $i -lt 3 ]; do i=$((i + 1)); done
echo "counted to $i"
sh -c 'exit 7'
echo "sh -c 'exit 7' gave $?"
false || echo "false, then ||"
true && echo "true, then &&"
(cd /tmp && pwd)
pwd
now=$(echo inner; echo second)
echo "substituted: $now" | tr '\n' ' '; echo
cat <<END
here-document with $name
END
printf '%s|%5s|%-3s|%d\n' a b c 42
echo "line one" | { read first; echo "read: $first"; }
env -i GREETING=hi sh -c 'echo "env -i gives: $GREETING"; env'
FOO=bar env | grep '^FOO='
trap 'echo trapped USR1' USR1
kill -USR1 $$
echo "after the trap"
set -- one two three
echo "positional: $2, count $#"
shift
echo "after shift: $1"
