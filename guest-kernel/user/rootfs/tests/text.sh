# Text tools: sort, md5sum, sed, grep, head, tail, cut, tr, wc, uniq. Run: sh
# /tests/text.sh; the output must equal /tests/text.expected.
printf '10\n9\n100\n1\n' | sort
printf '10\n9\n100\n1\n' | sort -n
printf 'b\nc\na\n' | sort -r
printf 'x 3\ny 1\nz 2\n' | sort -k2 -n
echo hello | md5sum
printf '' | md5sum
seq 1 1000 | md5sum
echo 'the cat sat on the mat' | sed 's/at/og/g'
echo 'one two three' | sed -e 's/one/1/' -e 's/three/3/'
printf 'alpha\nbeta\ngamma\n' | sed -n '2p'
printf 'alpha\nbeta\ngamma\n' | sed '/beta/d'
printf 'apple\nbanana\ncherry\navocado\n' | grep '^a'
printf 'apple\nbanana\ncherry\navocado\n' | grep -c an
printf 'apple\nbanana\ncherry\n' | grep -v an
printf 'Apple\napple\n' | grep -i APPLE | wc -l
seq 1 10 | head -n 2
seq 1 10 | tail -n 2
echo abcdefgh | head -c 3; echo
echo 'a:b:c:d' | cut -d: -f2,4
echo 'hello world' | cut -c1-5
echo 'hello' | tr a-y b-z
printf 'one two\nthree four five\n' | wc
printf 'a\na\nb\na\n' | uniq
