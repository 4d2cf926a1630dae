# Pipelines: data through two, three and four processes, loops feeding pipes, pipes
# feeding loops, and a pipeline's exit status. Run: sh /tests/pipeline.sh; the output must
# equal /tests/pipeline.expected.
seq 1 10 | grep -v 5 | sed 's/^/n=/' | head -n 3
seq 1 100 | tail -n 2
for i in 1 2 3; do echo $i; done | wc -l
echo $((6*7)) | cat
printf 'pear\napple\nfig\napple\n' | sort | uniq -c | sed 's/^ *//'
seq 1 5 | while read n; do echo "square of $n is $((n * n))"; done
seq 1 20000 | wc -c
yes pipes | head -n 3
printf 'a\nb\n' | cat - /dev/null | tr a-z A-Z
true | false
echo "status of 'true | false': $?"
false | true
echo "status of 'false | true': $?"
