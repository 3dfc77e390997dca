/* LD_PRELOAD shim so that a Swift program runs under valgrind 3.19 (used by run-instruction-counts.sh only).
 *
 * Why: an async Swift main parks its main thread in libdispatch's _dispatch_sigsuspend, which passes a
 * `static const sigset_t` (read-only data) to sigsuspend. valgrind's rt_sigsuspend wrapper writes into that mask
 * and dies with an internal SIGSEGV. Passing a writable copy of the mask avoids it; behaviour is unchanged. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, (long)(_NSIG / 8));
}
