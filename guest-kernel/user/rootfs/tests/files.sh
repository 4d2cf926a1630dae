# Files and directories: mkdir, cp, mv, ln, ls, cat, rm, test, stat, find, and writing
# through redirections. Run: sh /tests/files.sh; the output must equal /tests/files.expected.
dir=/tmp/files-test.$$
mkdir -p $dir/a/b
cd $dir
echo hello > a/one.txt
echo world >> a/one.txt
cp a/one.txt a/b/two.txt
ln -s one.txt a/link
ls a
ls -F a
cat a/link
mv a/b/two.txt a/three.txt
ls a/b | wc -l
rm -r a/b
ls a
test -d a && echo "a is a directory"
test -f a/one.txt && echo "one.txt is a file"
test -L a/link && echo "link is a symbolic link to $(readlink a/link)"
stat -c '%A %s %n' a/one.txt a/three.txt
wc -c < a/one.txt
touch a/empty
test -s a/empty || echo "empty is empty"
find a -name '*.txt' | sort
mkdir a/c 2>/dev/null && echo "made a/c"
mkdir a/c 2>/dev/null || echo "a/c exists already"
rmdir a/c && echo "removed a/c"
rm a/one.txt
cat a/link 2>/dev/null || echo "the link dangles"
exec 3> a/through-fd3
echo "written through fd 3" >&3
exec 3>&-
cat a/through-fd3
cd /
rm -rf $dir
test -e $dir || echo "removed the test directory"
