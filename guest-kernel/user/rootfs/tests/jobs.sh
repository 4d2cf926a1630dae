# Jobs and processes: a background job and wait, $!, kill of a job and its status, ps
# seeing a process and its parent, many background jobs. Run: sh /tests/jobs.sh; the
# output must equal /tests/jobs.expected.
(sleep 1; echo "background job done") &
echo "started the background job"
wait
echo "after wait"
sleep 10 &
pid=$!
# Until the child has become sleep (it starts as a copy of this shell), at most 5 s.
for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    [ "$(ps -o pid,comm | awk -v pid=$pid '$1 == pid { print $2 }')" = sleep ] && break
    sleep 0.25
done
ps -o pid,ppid,comm | awk -v pid=$pid -v shell=$$ '$1 == pid { print "ps sees", $3, ($2 == shell ? "with this shell as parent" : "with parent " $2) }'
# The shell's own "Terminated"/"Killed" notes come when it happens to reap the job: kept
# out of the output, which must not depend on timing.
{ kill $pid; wait $pid; } 2>/dev/null
echo "killed sleep ended with status $?"
sleep 10 &
{ kill -9 $!; wait $!; } 2>/dev/null
echo "sleep killed with -9 ended with status $?"
for delay in 0.2 0.4 0.6 0.8 1.0; do (sleep $delay; echo "job after $delay s") & done
wait
echo "all jobs done"
{ sh -c 'kill -TERM $$'; } 2>/dev/null
echo "a shell that killed itself ended with status $?"
ps | head -n 1
