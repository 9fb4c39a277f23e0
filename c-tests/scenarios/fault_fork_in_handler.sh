# speed: fast
# fork() from a signal handler while another thread holds a CPU's
# ownership word: the child must run a cpu-op on every CPU (alarm guards
# against a deadlock), also when the handler interrupted a cpu-op of its
# own thread (case 2: the prepare handler cannot wait then, and the child
# frees the words of the threads it does not have).
. "$CTESTS/scenarios/src/lib.sh"
build fork_in_handler fork_in_handler && run_both fork_in_handler "$WORK/fork_in_handler"
finish
