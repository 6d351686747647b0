// migpause.c: one save -> quit -> restore cycle of cprvmm through a state file, or a series of
// live updates (cpr-exec) of one cprvmm, timed from outside, for bench/migration.
//
//   migpause [-t SECONDS] [-l LOGFILE] [-w TICKS] [-r PRIO | -n NICE] [-y | -i US] [-c]
//            -s STATE -q QMPSOCK (-f MEMPATH | -M) -- CPRVMM [ARG...]
//   migpause [-t SECONDS] [-l LOGFILE] [-w TICKS] [-r PRIO | -n NICE] [-y | -i US]
//            -x URI [-x URI ...] [-N UPDATES] [-g TICKS] -q QMPSOCK (-f MEMPATH | -M) -- CPRVMM [ARG...]
//
//   -s STATE    state file for `migrate file:STATE` and `-incoming file:STATE`
//   -q QMPSOCK  QMP socket path: `-qmp unix:QMPSOCK,server=on,wait=off` is added to ARGs
//   -f MEMPATH  guest RAM is the mem-path file MEMPATH: sample the heartbeat through it
//   -M          guest RAM is a memfd: sample it through /proc/PID/fd ("/memfd:pc.ram (deleted)"),
//               the source's, then the target's
//   -c          set migration mode cpr-reboot first (default: mode normal)
//   -w TICKS    wait until the guest has printed TICKS ticks before migrating (default 300)
//   -r PRIO     run the sampler thread SCHED_FIFO at PRIO (needs CAP_SYS_NICE; else a warning)
//   -n NICE     run the sampler thread at this nice value (default 0)
//   -y / -i US  instead of a pure tight loop: sched_yield() / sleep US microseconds between
//               samples (bench/migration uses -r 1 -i 50: see its --help for why)
//   -l LOGFILE  both processes' stderr (default /dev/null)
//   -t SECONDS  give up after this long (default 60; with -x for the whole series)
//   -x URI      live-update mode (below): update through URI, `memfd:` or `file:PATH`; with
//               several -x, the updates take them in turn (interleaved)
//   -N UPDATES  measured updates per URI, after one warm-up update each (default 10)
//   -g TICKS    after each update, wait until the guest printed TICKS ticks more than before it
//               (default 200, about 0.2 s: the old image's teardown ends, the console is checked)
//
// ARGs must put the serial console on stdout (`-serial stdio`): migpause reads it through a
// pipe to time the target's first `tick N` line (a reader thread blocked in read(): no polling),
// and waits for the source's TICKS-th line before migrating.
//
// Sequence: start the source; map the first 24 KiB of guest RAM read-only; wait for TICKS tick
// lines; QMP qmp_capabilities, migrate-set-parameters mode; a sampler thread reads the heartbeat
// (u64 at guest-physical 0x5000) in a tight loop stamped with CLOCK_MONOTONIC; `migrate
// file:STATE`; wait for the MIGRATION "completed" event; let the sampler take two more samples,
// stop it (for -M also unmap the old memfd, so that the source's exit frees its RAM as it would
// without us); send `query-migrate` and `quit` in one write; reap the source; start the target
// (the same ARGs + `-incoming file:STATE`); map its RAM (-f: the same file again; -M: poll its
// /proc/PID/fd every 100 us until the new memfd appears); sample until the heartbeat exceeds
// the value it stopped at; wait for the target's first `tick` line; SIGTERM the target.
// Checks: the source's heartbeat stays still after "completed"; the target neither re-runs the
// guest from the start ("memory filled") nor reports corruption; its first tick follows the
// source's last one.
//
// Prints one line of key=value pairs (times in microseconds):
//   pause_us     last heartbeat change seen in the source -> first change seen in the target
//   pause_err_us sampling uncertainty of pause_us: the widths of the intervals that hold the two
//                changes (err_old_us, err_new_us: from the stamp before the previous read to the
//                stamp after the read that saw the change); the true pause lies in
//                [pause - err_new, pause + err_old]. Large when the sampler was preempted then.
//   stop_us      `migrate` sent -> last source heartbeat change (negative: the vCPU thread was
//                already off the CPU when the command was sent)
//   save_us      last source change -> MIGRATION completed event read (negative when the
//                sampler saw the last change only after the event: it was preempted)
//   downtime_ms, downtime_us, total_time_ms, ram_transferred, ram_total: source query-migrate
//   done_quit_us completed event read -> `quit` sent (the harness's own delay)
//   quit_exit_us `quit` sent -> source reaped;  exit_spawn_us: reaped -> target spawned
//   spawn_map_us target spawned -> its RAM mapped;  spawn_run_us: spawned -> first change
//   quit_tick_us `quit` sent -> target's first `tick N` line read from its console
//   src_tick, dst_tick: the source's last complete tick line, the target's first one
//   state_bytes  size of STATE;  late: 1 if the target's RAM was mapped only after its
//                heartbeat had already moved (then pause_us is an upper bound)
//   samples      samples the source-side sampler took
//
// Live-update mode (-x): start one cprvmm (ARGs + -qmp), map the first 24 KiB of its RAM once
// (-M: its memfd through /proc/PID/fd; the memfd is the same object after every update, so this
// one mapping serves the whole series), wait for TICKS tick lines; then per update: a new QMP
// connection, `migrate-set-parameters {"mode": "cpr-exec", "cpr-exec-command": [ARGs..., -qmp
// ..., "-incoming", URI]}` (the same binary, the same options), start a sampler in gap mode
// (it keeps the longest time between two successive heartbeat changes it sees), 20 ms later
// `migrate {"uri": URI}`, wait for that connection's end of file (the exec, or rather the old
// image's teardown, closes it), connect again (the listening socket survives; the new image
// greets once its monitor runs, after the resume) and poll `x-query-cprvmm` until
// update-generation grows; stop the sampler; read that update's record. Checks: same PID,
// result "completed", the longest gap lies after `migrate`, the guest neither restarts
// ("memory filled") nor reports corruption, the tick sequence stays unbroken. One line per
// update (warm-ups included, warmup=1):
//   via          memfd or file;  generation: the update generation reached
//   pause_us     the longest heartbeat gap: last change before -> first change after the update
//   pause_min_us the gap's lower bound: minus the sampler's step that first saw the change (a
//                sampler off the CPU, even at SCHED_FIFO, stretches a gap it could not watch)
//   pause_err_us, err_old_us, err_new_us: its sampling uncertainty, as above
//   second_gap_us the next longest gap in the same window (the sampler's noise floor)
//   max_step_us  the longest time between two successive samples (sampler off the CPU)
//   stop_us      `migrate` sent -> last change before the gap; seen_resumed_us: -> first after
//   eof_us       `migrate` sent -> the old QMP connection's end of file
//   confirmed_us `migrate` sent -> x-query-cprvmm reported the new generation
//   inside_pause_us, inside_total_us: the update record's pause-us (vCPUs paused -> resumed,
//                from the VMM's own CLOCK_MONOTONIC marks) and total-us (migrate -> resumed)
//   ph_NAME      the record's phases-us (NAME with '_' for ' '): pause_vcpus (migrate ->
//                vCPUs paused, before the pause), save, exec_and_runtime_start, vm_creation,
//                load, resume; all but pause_vcpus add up to inside_pause_us. With vCPU
//                bridges (the default): save_and_hand_to_bridges,
//                guest_runs_during_exec_and_vm_creation (not pause: the guest runs),
//                a_vcpu_waits_for_the_handover, bridge_handover, resume
//   state_bytes  size of the state file (0 for memfd:);  samples: samples taken
//   last_tick    the guest's last tick when the console was checked
//   ram_fd       the fd number under which the VMM now holds the memfd mapped before the first
//                update (checked to be the same inode; 0 with -f)
// Exit status: 0 on success, 1 on any failure (message on stderr).
//
// Build: clang -O2 -pthread -o migpause migpause.c

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HEARTBEAT_OFFSET 0x5000
#define TICKS_OFFSET 0x5008
#define MAP_LENGTH 0x6000

static volatile pid_t source_pid = -1, target_pid = -1;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void kill_children(void) {
    if (source_pid > 0) kill(source_pid, SIGKILL);
    if (target_pid > 0) kill(target_pid, SIGKILL);
    if (source_pid > 0) waitpid(source_pid, NULL, 0);
    if (target_pid > 0) waitpid(target_pid, NULL, 0);
}

static void fail(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "migpause: ");
    vfprintf(stderr, format, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    kill_children();
    exit(1);
}

static int timeout_seconds = 60;

static void on_signal(int sig) {
    // async-signal-safe: kill + waitpid + _exit
    if (source_pid > 0) kill(source_pid, SIGKILL);
    if (target_pid > 0) kill(target_pid, SIGKILL);
    if (source_pid > 0) waitpid(source_pid, NULL, 0);
    if (target_pid > 0) waitpid(target_pid, NULL, 0);
    if (sig == SIGALRM) {
        static const char message[] = "migpause: timed out\n";
        (void)!write(2, message, sizeof(message) - 1);
        _exit(1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

// ---------------------------------------------------------------- console readers
struct console {
    int fd;
    pthread_t thread;
    uint64_t first_tick_ns;  // when the first line starting with "tick " was read (0: none yet)
    long first_tick;
    long last_tick;          // last complete "tick N" line
    int saw_filled, saw_corruption;
    long ticks_seen;         // "tick N" lines read
    long tick_breaks;        // lines whose N is not the previous N + 1 (after the first)
    long break_from, break_to;  // the first such break
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static void *console_main(void *arg) {
    struct console *c = arg;
    char buf[8192];
    size_t used = 0;
    for (;;) {
        if (used == sizeof(buf)) used = 0;  // an overlong line: drop it
        ssize_t n = read(c->fd, buf + used, sizeof(buf) - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        uint64_t t = now_ns();
        used += (size_t)n;
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', used - (size_t)(line - buf)))) {
            *nl = 0;
            pthread_mutex_lock(&c->lock);
            if (strncmp(line, "tick ", 5) == 0) {
                long tick = strtol(line + 5, NULL, 10);
                if (c->ticks_seen++ && tick != c->last_tick + 1 && !c->tick_breaks++) {
                    c->break_from = c->last_tick;
                    c->break_to = tick;
                }
                c->last_tick = tick;
                if (!c->first_tick_ns) {
                    c->first_tick_ns = t;
                    c->first_tick = tick;
                    pthread_cond_broadcast(&c->changed);
                }
            }
            if (strstr(line, "memory filled")) c->saw_filled++;
            if (strstr(line, "MEMORY CORRUPTION")) c->saw_corruption = 1;
            pthread_mutex_unlock(&c->lock);
            line = nl + 1;
        }
        size_t rest = used - (size_t)(line - buf);
        memmove(buf, line, rest);
        used = rest;
    }
    pthread_mutex_lock(&c->lock);
    close(c->fd);
    c->fd = -1;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

// ---------------------------------------------------------------- processes
static pid_t spawn_vmm(char **argv, const char *logfile, struct console *console) {
    int logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) fail("%s: %s", logfile, strerror(errno));
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, logfd, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGQUIT);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGHUP);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], &actions, &attr, argv, environ);
    if (err != 0) fail("cannot run %s: %s", argv[0], strerror(err));
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    close(logfd);
    memset(console, 0, sizeof(*console));
    console->fd = pipefd[0];
    pthread_mutex_init(&console->lock, NULL);
    pthread_cond_init(&console->changed, NULL);
    pthread_create(&console->thread, NULL, console_main, console);
    return pid;
}

static int exit_status(int status) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void check_alive(pid_t pid, const char *what) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
        if (pid == source_pid) source_pid = -1;
        if (pid == target_pid) target_pid = -1;
        fail("the %s ended early (status %d); see its log", what, exit_status(status));
    }
}

// ---------------------------------------------------------------- guest RAM
struct ram {
    int fd;
    const volatile uint64_t *heartbeat, *ticks;
    void *base;
};

static int map_fd(struct ram *ram, int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < MAP_LENGTH) return 0;  // not sized yet
    void *p = mmap(NULL, MAP_LENGTH, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) fail("mmap guest RAM: %s", strerror(errno));
    ram->fd = fd;
    ram->base = p;
    ram->heartbeat = (const volatile uint64_t *)((char *)p + HEARTBEAT_OFFSET);
    ram->ticks = (const volatile uint64_t *)((char *)p + TICKS_OFFSET);
    return 1;
}

// One attempt: 1 if mapped.
static int try_map(struct ram *ram, pid_t pid, const char *mem_path) {
    if (mem_path) {
        int fd = open(mem_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 0;
        if (map_fd(ram, fd)) return 1;
        close(fd);
        return 0;
    }
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int mapped = 0;
    while (!mapped && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[128], target[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strcmp(target, "/memfd:pc.ram (deleted)") != 0) continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        if (map_fd(ram, fd)) mapped = 1;
        else close(fd);
    }
    closedir(d);
    return mapped;
}

static void unmap(struct ram *ram) {
    munmap(ram->base, MAP_LENGTH);
    close(ram->fd);
    memset(ram, 0, sizeof(*ram));
}

// ---------------------------------------------------------------- heartbeat sampler
static int sample_yield = 0;    // -y: sched_yield() between samples
static long sample_sleep_ns = 0; // -i US: sleep between samples
static int sample_nice = 0;      // -n NICE: the sampler thread's nice value
static int sample_fifo = 0;      // -r PRIO: the sampler thread runs SCHED_FIFO at PRIO

struct sampler {
    const volatile uint64_t *heartbeat;
    int wait_for_increase;  // 0: track the last change until told to stop; 1: stop at v > baseline;
                            // 2 (gap mode): until told to stop, keep the longest and second
                            // longest time between two successive changes seen
    uint64_t baseline;
    atomic_int stop;
    atomic_ullong progress;  // samples taken so far, for the main thread
    pthread_t thread;
    // results
    uint64_t value, change_ns, samples, late;
    uint64_t change_prev_ns;  // the change happened in (change_prev_ns, change_ns]
    // gap mode: the longest gap runs from the change seen at gap_start_ns (it happened in
    // (gap_start_prev_ns, gap_start_ns]) to the one seen at gap_end_ns (in (gap_end_prev_ns,
    // gap_end_ns]); second_gap_ns is the next longest (what the sampler sees when nothing
    // stops the guest: its own resolution plus any moment it or the vCPU was off the CPU)
    uint64_t gap_start_ns, gap_start_prev_ns, gap_end_ns, gap_end_prev_ns, second_gap_ns;
    uint64_t max_step_ns;  // the longest time between two successive samples
    atomic_ullong window_ns;  // gap mode: only a gap that ends after this can be the longest
                              // (the update's); earlier ones count toward second_gap_ns
};

static void *sampler_main(void *arg) {
    struct sampler *s = arg;
    if (sample_fifo) {
        struct sched_param param = {.sched_priority = sample_fifo};
        int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
        if (err) fprintf(stderr, "migpause: SCHED_FIFO for the sampler: %s (sampling at normal priority)\n", strerror(err));
    } else if (sample_nice) {
        setpriority(PRIO_PROCESS, (id_t)gettid(), sample_nice);
    }
    // Sample k reads the heartbeat between stamps t[k-1] and t[k] (program order), so a change
    // first seen by sample k happened after read k-1, i.e. in (t[k-2], t[k]]: prev2 .. t below.
    // (A stamp alone can lag its read: the thread may be preempted between the two.)
    uint64_t prev2 = now_ns();
    uint64_t last = *s->heartbeat;
    uint64_t prev = now_ns();
    uint64_t samples = 0;
    s->change_ns = prev;
    s->change_prev_ns = prev2;
    if (s->wait_for_increase == 1 && last > s->baseline) {
        // Mapped too late: the guest already ran. Stamp it now (an upper bound).
        s->late = 1;
        s->value = last;
        return NULL;
    }
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        if (sample_yield) sched_yield();
        else if (sample_sleep_ns) {
            struct timespec ts = {0, sample_sleep_ns};
            nanosleep(&ts, NULL);
        }
        uint64_t v = *s->heartbeat;
        uint64_t t = now_ns();
        samples++;
        atomic_store_explicit(&s->progress, samples, memory_order_relaxed);
        if (t - prev > s->max_step_ns) s->max_step_ns = t - prev;
        if (s->wait_for_increase == 2) {
            if (v != last) {
                uint64_t gap = t - s->change_ns;
                uint64_t window = atomic_load_explicit(&s->window_ns, memory_order_relaxed);
                if (window && t >= window && gap > s->gap_end_ns - s->gap_start_ns) {
                    if (s->gap_end_ns) s->second_gap_ns = s->gap_end_ns - s->gap_start_ns;
                    s->gap_start_ns = s->change_ns;
                    s->gap_start_prev_ns = s->change_prev_ns;
                    s->gap_end_ns = t;
                    s->gap_end_prev_ns = prev2;
                } else if (gap > s->second_gap_ns) {
                    s->second_gap_ns = gap;
                }
                last = v;
                s->change_ns = t;
                s->change_prev_ns = prev2;
            }
        } else if (s->wait_for_increase) {
            if (v > s->baseline) {
                s->value = v;
                s->change_ns = t;
                s->change_prev_ns = prev2;
                break;
            }
        } else if (v != last) {
            last = v;
            s->change_ns = t;
            s->change_prev_ns = prev2;
        }
        prev2 = prev;
        prev = t;
    }
    if (s->wait_for_increase != 1) s->value = last;
    s->samples = samples;
    return NULL;
}

static void start_sampler(struct sampler *s, const volatile uint64_t *heartbeat, int wait_for_increase, uint64_t baseline) {
    memset(s, 0, sizeof(*s));
    s->heartbeat = heartbeat;
    s->wait_for_increase = wait_for_increase;
    s->baseline = baseline;
    atomic_init(&s->stop, 0);
    atomic_init(&s->progress, 0);
    atomic_init(&s->window_ns, 0);
    pthread_create(&s->thread, NULL, sampler_main, s);
}

// ---------------------------------------------------------------- QMP
static int qmp_fd = -1;
static char qmp_buf[65536];
static size_t qmp_used = 0;
static int qmp_eof = 0;  // the last qmp_line() that returned 0 met end of file (not a timeout)
static uint64_t migration_completed_ns = 0;
static int migration_failed = 0;

// Reads one line (without \r\n) into out; returns 0 on timeout or EOF.
static int qmp_line(char *out, size_t size, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    qmp_eof = 0;
    for (;;) {
        char *nl = memchr(qmp_buf, '\n', qmp_used);
        if (nl) {
            size_t len = (size_t)(nl - qmp_buf);
            size_t copy = len < size - 1 ? len : size - 1;
            memcpy(out, qmp_buf, copy);
            out[copy] = 0;
            if (copy && out[copy - 1] == '\r') out[copy - 1] = 0;
            memmove(qmp_buf, nl + 1, qmp_used - len - 1);
            qmp_used -= len + 1;
            if (strstr(out, "\"event\"") && strstr(out, "\"MIGRATION\"")) {
                if (strstr(out, "\"completed\"") && !migration_completed_ns) migration_completed_ns = now_ns();
                if (strstr(out, "\"failed\"") || strstr(out, "\"cancelled\"")) migration_failed = 1;
            }
            return 1;
        }
        if (qmp_used == sizeof(qmp_buf)) fail("QMP: overlong line");
        uint64_t now = now_ns();
        if (now >= deadline) return 0;
        struct pollfd p = {qmp_fd, POLLIN, 0};
        int r = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t n = read(qmp_fd, qmp_buf + qmp_used, sizeof(qmp_buf) - qmp_used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            qmp_eof = 1;
            return 0;
        }
        qmp_used += (size_t)n;
    }
}

static void qmp_send(const char *command) {
    size_t len = strlen(command);
    if (write(qmp_fd, command, len) != (ssize_t)len || write(qmp_fd, "\n", 1) != 1) fail("QMP write: %s", strerror(errno));
}

// Sends a command, returns its reply line (events are skipped) in out.
static void qmp_execute(const char *command, char *out, size_t size) {
    qmp_send(command);
    for (;;) {
        if (!qmp_line(out, size, timeout_seconds * 1000)) fail("QMP: no reply to %s", command);
        if (strncmp(out, "{\"return\"", 9) == 0) return;
        if (strncmp(out, "{\"error\"", 8) == 0) fail("QMP: %s -> %s", command, out);
    }
}

// Connects and reads the greeting; a connection that ends before its greeting (the image that
// accepted it was replaced by exec) is retried.
static void qmp_connect_as(const char *path, pid_t pid, const char *what) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) fail("QMP socket path too long: %s", path);
    strcpy(addr.sun_path, path);
    char line[4096];
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
            close(fd);
            check_alive(pid, what);
            sleep_us(2000);
            continue;
        }
        qmp_fd = fd;
        qmp_used = 0;
        if (qmp_line(line, sizeof(line), timeout_seconds * 1000)) break;
        if (!qmp_eof) fail("QMP: no greeting");
        close(fd);
        qmp_fd = -1;
        check_alive(pid, what);
        sleep_us(1000);
    }
    if (!strstr(line, "\"QMP\"")) fail("QMP: no greeting: %s", line);
    qmp_execute("{\"execute\": \"qmp_capabilities\"}", line, sizeof(line));
}

static void qmp_connect(const char *path, pid_t pid) { qmp_connect_as(path, pid, "source"); }

static long long json_int(const char *text, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\"", key);
    const char *p = strstr(text, pattern);
    if (!p) return -1;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':') p++;
    return strtoll(p, NULL, 10);
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

// The fd number pid now holds guest RAM under ("/memfd:pc.ram (deleted)"), if it is the very
// object fd refers to (same inode); -1 if pid has no such memfd.
static int same_memfd(pid_t pid, int fd) {
    struct stat mine, theirs;
    if (fstat(fd, &mine) < 0) return -1;
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int found = -1;
    while (found < 0 && (e = readdir(d))) {
        char path[128], target[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strcmp(target, "/memfd:pc.ram (deleted)") != 0) continue;
        if (stat(path, &theirs) == 0 && theirs.st_ino == mine.st_ino && theirs.st_dev == mine.st_dev) found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

// ---------------------------------------------------------------- live update (cpr-exec) mode
// Appends text as a JSON string to out (which holds used bytes).
static void json_append_string(char *out, size_t size, size_t *used, const char *text) {
    char buf[4096];
    size_t n = 0;
    buf[n++] = '"';
    for (const char *p = text; *p && n < sizeof(buf) - 8; p++) {
        if (*p == '"' || *p == '\\') buf[n++] = '\\';
        buf[n++] = *p;
    }
    buf[n++] = '"';
    buf[n] = 0;
    int w = snprintf(out + *used, size - *used, "%s", buf);
    if (w < 0 || (size_t)w >= size - *used) fail("command too long");
    *used += (size_t)w;
}

// Copies the string value of "key" in text into out ("" if absent).
static void json_str(const char *text, const char *key, char *out, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\"", key);
    out[0] = 0;
    const char *p = strstr(text, pattern);
    if (!p) return;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':') p++;
    if (*p != '"') return;
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n < size - 1) {
        if (*p == '\\' && p[1]) p++;
        out[n++] = *p++;
    }
    out[n] = 0;
}

// The object of x-query-cprvmm's "updates" array whose "generation" is gen, copied into out.
static int find_update(const char *reply, long long gen, char *out, size_t size) {
    const char *p = strstr(reply, "\"updates\"");
    if (!p || !(p = strchr(p, '['))) return 0;
    p++;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\r' || *p == '\t') p++;
        if (*p != '{') return 0;
        const char *start = p;
        int depth = 0, in_string = 0;
        for (; *p; p++) {
            if (in_string) {
                if (*p == '\\' && p[1]) p++;
                else if (*p == '"') in_string = 0;
            } else if (*p == '"') in_string = 1;
            else if (*p == '{') depth++;
            else if (*p == '}' && --depth == 0) {
                p++;
                break;
            }
        }
        if (depth) return 0;
        size_t len = (size_t)(p - start);
        if (len >= size) len = size - 1;
        memcpy(out, start, len);
        out[len] = 0;
        if (json_int(out, "generation") == gen) return 1;
    }
}

// Prints the "phases-us" object of an update as " ph_NAME=US" pairs (spaces in NAME -> '_').
static void print_phases(const char *update) {
    const char *p = strstr(update, "\"phases-us\"");
    if (!p || !(p = strchr(p, '{'))) return;
    p++;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p != '"') return;
        char name[64];
        size_t n = 0;
        for (p++; *p && *p != '"'; p++)
            if (n < sizeof(name) - 1) name[n++] = (*p == ' ' || *p == '=') ? '_' : *p;
        name[n] = 0;
        if (*p != '"') return;
        p++;
        while (*p == ' ' || *p == ':') p++;
        char *end;
        long long value = strtoll(p, &end, 10);
        if (end == p) return;
        p = end;
        printf(" ph_%s=%lld", name, value);
    }
}

static void qmp_session(const char *path, pid_t pid) { qmp_connect_as(path, pid, "VMM"); }

// Maps the VMM's guest RAM once it exists, then waits for `ticks` tick lines. Ticks come from
// the console, not from RAM: a reused mem-path file holds an old VM's counters.
static void map_and_wait_for_ticks(struct ram *ram, struct console *console, pid_t pid, const char *mem_path, long ticks,
                                   const char *what) {
    while (!try_map(ram, pid, mem_path)) {
        check_alive(pid, what);
        sleep_us(1000);
    }
    for (;;) {
        pthread_mutex_lock(&console->lock);
        long seen = console->last_tick;
        pthread_mutex_unlock(&console->lock);
        if (seen >= ticks) break;
        check_alive(pid, what);
        sleep_us(5000);
    }
}

static int live_update_main(char **vmm_argv, int nargs, const char *logfile, const char *qmp_path, const char *mem_path,
                            char **uris, int nuris, int updates, long wait_ticks, long gap_ticks) {
    struct console console;
    source_pid = spawn_vmm(vmm_argv, logfile, &console);
    pid_t pid = source_pid;
    struct ram ram = {0};
    map_and_wait_for_ticks(&ram, &console, pid, mem_path, wait_ticks, "VMM");
    static char reply[65536], update[16384], command[16384];
    qmp_session(qmp_path, pid);
    qmp_execute("{\"execute\": \"x-query-cprvmm\"}", reply, sizeof(reply));
    long long generation0 = json_int(reply, "update-generation");
    if (generation0 < 0) fail("x-query-cprvmm has no update-generation: %.200s", reply);
    close(qmp_fd);

    int total = (updates + 1) * nuris;
    for (int k = 0; k < total; k++) {
        const char *uri = uris[k % nuris];
        const char *file = strncmp(uri, "file:", 5) == 0 ? uri + 5 : NULL;
        int warmup = k < nuris;
        long long generation = generation0 + k + 1;

        size_t used = 0;
        used += (size_t)snprintf(command, sizeof(command),
                                 "{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"mode\": \"cpr-exec\", \"cpr-exec-command\": [");
        for (int a = 0; a < nargs; a++) {
            json_append_string(command, sizeof(command), &used, vmm_argv[a]);
            used += (size_t)snprintf(command + used, sizeof(command) - used, ", ");
        }
        used += (size_t)snprintf(command + used, sizeof(command) - used, "\"-incoming\", ");
        json_append_string(command, sizeof(command), &used, uri);
        snprintf(command + used, sizeof(command) - used, "]}}");
        if (file) unlink(file);

        qmp_session(qmp_path, pid);
        qmp_execute(command, reply, sizeof(reply));
        pthread_mutex_lock(&console.lock);
        long ticks_before = console.last_tick;
        pthread_mutex_unlock(&console.lock);

        struct sampler s;
        start_sampler(&s, ram.heartbeat, 2, 0);
        sleep_us(20000);  // the sampler sees the guest running first
        char migrate[1024];
        snprintf(migrate, sizeof(migrate), "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"%s\"}}", uri);
        uint64_t migrate_ns = now_ns();
        // With vCPU bridges the update's gaps are short: a sampler hiccup before the migrate
        // could be longer, and is not the update's.
        atomic_store(&s.window_ns, migrate_ns);
        qmp_execute(migrate, reply, sizeof(reply));
        // The exec closes this connection (the listening socket survives): wait for end of file.
        char line[8192];
        migration_failed = 0;
        while (qmp_line(line, sizeof(line), timeout_seconds * 1000))
            if (migration_failed) {
                qmp_execute("{\"execute\": \"query-migrate\"}", reply, sizeof(reply));
                fail("update %d failed: %s", k + 1, reply);
            }
        if (!qmp_eof) fail("update %d: the QMP connection stayed open after migrate: no exec (see the log)", k + 1);
        uint64_t eof_ns = now_ns();
        close(qmp_fd);
        qmp_fd = -1;

        // A new connection: the new image greets it once its monitor runs (after the resume).
        uint64_t deadline = now_ns() + (uint64_t)timeout_seconds * 1000000000ull;
        for (;;) {
            qmp_session(qmp_path, pid);
            qmp_execute("{\"execute\": \"x-query-cprvmm\"}", reply, sizeof(reply));
            if (json_int(reply, "update-generation") >= generation) break;
            if (find_update(reply, generation, update, sizeof(update))) {
                json_str(update, "result", line, sizeof(line));
                fail("update %d: %s", k + 1, line);
            }
            close(qmp_fd);
            qmp_fd = -1;
            if (now_ns() > deadline) fail("update %d: the generation did not reach %lld", k + 1, generation);
            sleep_us(5000);
        }
        uint64_t confirmed_ns = now_ns();
        if (json_int(reply, "pid") != pid) fail("x-query-cprvmm reports pid %lld, not %d", json_int(reply, "pid"), (int)pid);
        if (json_int(reply, "update-generation") != generation)
            fail("update-generation %lld, expected %lld", json_int(reply, "update-generation"), generation);

        // Let the sampler take two more samples, then stop it.
        unsigned long long progress = atomic_load(&s.progress);
        uint64_t settle_deadline = now_ns() + 2000000000ull;
        while (atomic_load(&s.progress) < progress + 2 && now_ns() < settle_deadline) sleep_us(10);
        atomic_store(&s.stop, 1);
        pthread_join(s.thread, NULL);

        if (!find_update(reply, generation, update, sizeof(update))) fail("x-query-cprvmm has no update %lld: %.300s", generation, reply);
        json_str(update, "result", line, sizeof(line));
        if (strcmp(line, "completed") != 0) fail("update %lld: result %s", generation, line);
        close(qmp_fd);
        qmp_fd = -1;
        int ram_fd = mem_path ? 0 : same_memfd(pid, ram.fd);
        if (ram_fd < 0) fail("update %d: the VMM holds no memfd pc.ram that is the one mapped before the first update", k + 1);
        struct stat st;
        long long state_bytes = file ? (stat(file, &st) == 0 ? (long long)st.st_size : -1) : 0;
        if (file) unlink(file);

        // The guest carries on: ticks continue unbroken, no fresh start, no corruption.
        for (;;) {
            pthread_mutex_lock(&console.lock);
            long ticks = console.last_tick;
            pthread_mutex_unlock(&console.lock);
            if (ticks >= ticks_before + gap_ticks) break;
            check_alive(pid, "VMM");
            if (now_ns() > deadline) fail("update %d: the guest printed no ticks afterwards", k + 1);
            sleep_us(2000);
        }
        pthread_mutex_lock(&console.lock);
        int filled = console.saw_filled, corrupt = console.saw_corruption;
        long breaks = console.tick_breaks, from = console.break_from, to = console.break_to, last_tick = console.last_tick;
        pthread_mutex_unlock(&console.lock);
        if (filled > 1) fail("update %d: the guest started afresh (\"memory filled\" again)", k + 1);
        if (corrupt) fail("update %d: the guest reported MEMORY CORRUPTION", k + 1);
        if (breaks) fail("update %d: the tick sequence broke (%ld -> %ld)", k + 1, from, to);
        if (!s.gap_end_ns || s.gap_end_ns < migrate_ns || s.gap_start_ns > eof_ns + 1000000000ull)
            fail("update %d: the longest heartbeat gap is not the update's (%.3f ms after migrate)", k + 1,
                 (double)(int64_t)(s.gap_start_ns - migrate_ns) / 1e6);

        uint64_t pause = s.gap_end_ns - s.gap_start_ns;
        uint64_t err_old = s.gap_start_ns - s.gap_start_prev_ns, err_new = s.gap_end_ns - s.gap_end_prev_ns;
        uint64_t pause_min = pause > err_new ? pause - err_new : 0;
        printf("via=%s warmup=%d generation=%lld pause_us=%.3f pause_min_us=%.3f pause_err_us=%.3f err_old_us=%.3f err_new_us=%.3f "
               "second_gap_us=%.3f max_step_us=%.3f stop_us=%.3f seen_resumed_us=%.3f eof_us=%.3f confirmed_us=%.3f "
               "inside_pause_us=%lld inside_total_us=%lld",
               file ? "file" : "memfd", warmup, generation, us(pause), us(pause_min), us(err_old + err_new), us(err_old), us(err_new),
               us(s.second_gap_ns), us(s.max_step_ns), (double)(int64_t)(s.gap_start_ns - migrate_ns) / 1000.0,
               us(s.gap_end_ns - migrate_ns), us(eof_ns - migrate_ns), us(confirmed_ns - migrate_ns),
               json_int(update, "pause-us"), json_int(update, "total-us"));
        print_phases(update);
        printf(" state_bytes=%lld samples=%llu last_tick=%ld ram_fd=%d\n", state_bytes, (unsigned long long)s.samples, last_tick, ram_fd);
        fflush(stdout);
    }
    int status;
    kill(pid, SIGTERM);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    source_pid = -1;
    pthread_join(console.thread, NULL);
    unmap(&ram);
    alarm(0);
    return 0;
}

// ---------------------------------------------------------------- main
static int usage(void) {
    fprintf(stderr, "usage: migpause [-t SECONDS] [-l LOGFILE] [-w TICKS] [-r PRIO | -n NICE] [-y | -i US] [-c]\n"
                    "                -s STATE -q QMPSOCK (-f MEMPATH | -M) -- CPRVMM [ARG...]\n"
                    "       migpause [-t SECONDS] [-l LOGFILE] [-w TICKS] [-r PRIO | -n NICE] [-y | -i US]\n"
                    "                -x URI [-x URI ...] [-N UPDATES] [-g TICKS] -q QMPSOCK (-f MEMPATH | -M) -- CPRVMM [ARG...]\n");
    return 1;
}

int main(int argc, char **argv) {
    const char *logfile = "/dev/null", *state = NULL, *qmp_path = NULL, *mem_path = NULL;
    int memfd = 0, cpr = 0;
    long wait_ticks = 300;
    char *uris[8];
    int nuris = 0, updates = 10;
    long gap_ticks = 200;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-M") == 0) memfd = 1;
        else if (strcmp(a, "-c") == 0) cpr = 1;
        else if (strcmp(a, "-y") == 0) sample_yield = 1;
        else if (!v) return usage();
        else if (strcmp(a, "-t") == 0) timeout_seconds = atoi(v), i++;
        else if (strcmp(a, "-l") == 0) logfile = v, i++;
        else if (strcmp(a, "-w") == 0) wait_ticks = atol(v), i++;
        else if (strcmp(a, "-n") == 0) sample_nice = atoi(v), i++;
        else if (strcmp(a, "-r") == 0) sample_fifo = atoi(v), i++;
        else if (strcmp(a, "-i") == 0) sample_sleep_ns = atol(v) * 1000, i++;
        else if (strcmp(a, "-s") == 0) state = v, i++;
        else if (strcmp(a, "-q") == 0) qmp_path = v, i++;
        else if (strcmp(a, "-f") == 0) mem_path = v, i++;
        else if (strcmp(a, "-x") == 0 && nuris < 8) uris[nuris++] = (char *)v, i++;
        else if (strcmp(a, "-N") == 0) updates = atoi(v), i++;
        else if (strcmp(a, "-g") == 0) gap_ticks = atol(v), i++;
        else return usage();
    }
    if (i >= argc - 1 || (!state && !nuris) || !qmp_path || (memfd == !!mem_path) || updates < 0) return usage();
    char **vmm = argv + i + 1;
    int nvmm = argc - i - 1;

    // source: ARGs + -qmp; target: that + -incoming file:STATE
    char qmp_option[512], incoming_option[512];
    snprintf(qmp_option, sizeof(qmp_option), "unix:%s,server=on,wait=off", qmp_path);
    snprintf(incoming_option, sizeof(incoming_option), "file:%s", state);
    char **source_argv = calloc((size_t)nvmm + 5, sizeof(char *));
    char **target_argv = calloc((size_t)nvmm + 5, sizeof(char *));
    for (int k = 0; k < nvmm; k++) source_argv[k] = target_argv[k] = vmm[k];
    source_argv[nvmm] = target_argv[nvmm] = "-qmp";
    source_argv[nvmm + 1] = target_argv[nvmm + 1] = qmp_option;
    target_argv[nvmm + 2] = "-incoming";
    target_argv[nvmm + 3] = incoming_option;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)timeout_seconds);
    if (state) unlink(state);
    if (sample_sleep_ns) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (nuris) return live_update_main(source_argv, nvmm + 2, logfile, qmp_path, mem_path, uris, nuris, updates, wait_ticks, gap_ticks);

    // ---- source
    struct console source_console, target_console;
    source_pid = spawn_vmm(source_argv, logfile, &source_console);
    struct ram ram = {0};
    map_and_wait_for_ticks(&ram, &source_console, source_pid, mem_path, wait_ticks, "source");
    qmp_connect(qmp_path, source_pid);
    char reply[8192];
    qmp_execute(cpr ? "{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"mode\": \"cpr-reboot\"}}"
                    : "{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"mode\": \"normal\"}}",
                reply, sizeof(reply));

    struct sampler old_s, new_s;
    start_sampler(&old_s, ram.heartbeat, 0, 0);
    sleep_us(20000);  // the sampler sees the guest running first

    char command[1024];
    snprintf(command, sizeof(command), "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"file:%s\"}}", state);
    uint64_t migrate_ns = now_ns();
    qmp_execute(command, reply, sizeof(reply));
    while (!migration_completed_ns && !migration_failed) {
        char line[4096];
        if (!qmp_line(line, sizeof(line), timeout_seconds * 1000)) fail("QMP: no MIGRATION completed event");
    }
    if (migration_failed) {
        qmp_execute("{\"execute\": \"query-migrate\"}", reply, sizeof(reply));
        fail("migration failed: %s", reply);
    }
    // Let the sampler take two more samples of the stopped heartbeat before stopping it: had it
    // been preempted across the pause, it must still see the final value (stamped late, which
    // pause_err_us then shows). With a tight loop this takes microseconds.
    unsigned long long progress = atomic_load(&old_s.progress);
    uint64_t settle_deadline = now_ns() + 2000000000ull;
    while (atomic_load(&old_s.progress) < progress + 2 && now_ns() < settle_deadline) sleep_us(10);
    atomic_store(&old_s.stop, 1);
    pthread_join(old_s.thread, NULL);
    uint64_t stopped_at = *ram.heartbeat;
    if (stopped_at != old_s.value)
        fail("the source's heartbeat still moves after the migration completed (%llu, the sampler saw %llu)",
             (unsigned long long)stopped_at, (unsigned long long)old_s.value);
    if (memfd) unmap(&ram);  // the source's exit frees its RAM, as it would without us

    // query-migrate and quit in one write: no round trip between them.
    uint64_t quit_ns = now_ns();
    qmp_send("{\"execute\": \"query-migrate\"}\n{\"execute\": \"quit\"}");
    for (;;) {
        if (!qmp_line(reply, sizeof(reply), timeout_seconds * 1000)) fail("QMP: no reply to query-migrate");
        if (strncmp(reply, "{\"return\"", 9) == 0) break;
        if (strncmp(reply, "{\"error\"", 8) == 0) fail("QMP: query-migrate -> %s", reply);
    }
    if (!strstr(reply, "\"completed\"")) fail("query-migrate after the completed event: %s", reply);
    long long downtime_ms = json_int(reply, "downtime"), downtime_us = json_int(reply, "x-downtime-us");
    long long total_time_ms = json_int(reply, "total-time");
    long long transferred = json_int(reply, "transferred"), ram_total = json_int(reply, "total");
    int status;
    while (waitpid(source_pid, &status, 0) < 0 && errno == EINTR) {}
    uint64_t exit_ns = now_ns();
    source_pid = -1;
    if (exit_status(status) != 0) fail("the source exited with status %d after quit", exit_status(status));
    close(qmp_fd);
    pthread_join(source_console.thread, NULL);

    // ---- target
    uint64_t spawn_ns = now_ns();
    target_pid = spawn_vmm(target_argv, logfile, &target_console);
    if (mem_path) {
        // The file is still there: map it again (the target opens it in place, without truncating).
        if (!try_map(&ram, target_pid, mem_path)) fail("cannot map %s again", mem_path);
    } else {
        while (!try_map(&ram, target_pid, NULL)) {
            check_alive(target_pid, "target");
            sleep_us(100);
        }
    }
    uint64_t mapped_ns = now_ns();
    start_sampler(&new_s, ram.heartbeat, 1, stopped_at);
    for (;;) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 100000000;
        if (deadline.tv_nsec >= 1000000000) deadline.tv_sec++, deadline.tv_nsec -= 1000000000;
        if (pthread_timedjoin_np(new_s.thread, NULL, &deadline) == 0) break;
        if (waitpid(target_pid, &status, WNOHANG) == target_pid) {
            target_pid = -1;
            atomic_store(&new_s.stop, 1);
            pthread_join(new_s.thread, NULL);
            fail("the target ended (status %d) before its guest ran; see its log", exit_status(status));
        }
    }
    if (!new_s.late && !new_s.value) fail("sampler stopped without a result");

    pthread_mutex_lock(&target_console.lock);
    while (!target_console.first_tick_ns && target_console.fd >= 0)
        pthread_cond_wait(&target_console.changed, &target_console.lock);
    uint64_t tick_ns = target_console.first_tick_ns;
    long dst_tick = target_console.first_tick;
    pthread_mutex_unlock(&target_console.lock);
    if (!tick_ns) fail("the target printed no tick line");

    kill(target_pid, SIGTERM);
    while (waitpid(target_pid, &status, 0) < 0 && errno == EINTR) {}
    target_pid = -1;
    pthread_join(target_console.thread, NULL);
    unmap(&ram);
    alarm(0);
    if (target_console.saw_filled) fail("the target started its guest afresh (\"memory filled\")");
    if (target_console.saw_corruption) fail("the target's guest reported MEMORY CORRUPTION");
    if (dst_tick < 1 || dst_tick > source_console.last_tick + 2)
        fail("the target's first tick %ld does not follow the source's last %ld", dst_tick, source_console.last_tick);

    struct stat st;
    long long state_bytes = stat(state, &st) == 0 ? (long long)st.st_size : -1;
    uint64_t pause = new_s.change_ns - old_s.change_ns;
    uint64_t err_old = old_s.change_ns - old_s.change_prev_ns, err_new = new_s.change_ns - new_s.change_prev_ns;
    double stop = (double)(int64_t)(old_s.change_ns - migrate_ns) / 1000.0;
    double save = (double)(int64_t)(migration_completed_ns - old_s.change_ns) / 1000.0;
    printf("pause_us=%.3f pause_err_us=%.3f err_old_us=%.3f err_new_us=%.3f stop_us=%.3f save_us=%.3f ",
           us(pause), us(err_old + err_new), us(err_old), us(err_new), stop, save);
    printf("downtime_ms=%lld downtime_us=%lld total_time_ms=%lld ram_transferred=%lld ram_total=%lld ",
           downtime_ms, downtime_us, total_time_ms, transferred, ram_total);
    printf("done_quit_us=%.3f quit_exit_us=%.3f exit_spawn_us=%.3f spawn_map_us=%.3f spawn_run_us=%.3f quit_tick_us=%.3f ",
           us(quit_ns - migration_completed_ns), us(exit_ns - quit_ns), us(spawn_ns - exit_ns), us(mapped_ns - spawn_ns),
           us(new_s.change_ns - spawn_ns), us(tick_ns - quit_ns));
    printf("src_tick=%ld dst_tick=%ld state_bytes=%lld late=%d samples=%llu\n", source_console.last_tick, dst_tick,
           state_bytes, (int)new_s.late, (unsigned long long)old_s.samples);
    return 0;
}
