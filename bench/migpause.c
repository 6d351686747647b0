// migpause.c: one save -> quit -> restore cycle of cprvmm through a state file, timed from
// outside, for bench/migration.
//
//   migpause [-t SECONDS] [-l LOGFILE] [-w TICKS] [-r PRIO | -n NICE] [-y | -i US] [-c]
//            -s STATE -q QMPSOCK (-f MEMPATH | -M) -- CPRVMM [ARG...]
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
//   -t SECONDS  give up after this long (default 60)
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
                c->last_tick = tick;
                if (!c->first_tick_ns) {
                    c->first_tick_ns = t;
                    c->first_tick = tick;
                    pthread_cond_broadcast(&c->changed);
                }
            }
            if (strstr(line, "memory filled")) c->saw_filled = 1;
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
    int wait_for_increase;  // 0: track the last change until told to stop; 1: stop at v > baseline
    uint64_t baseline;
    atomic_int stop;
    atomic_ullong progress;  // samples taken so far, for the main thread
    pthread_t thread;
    // results
    uint64_t value, change_ns, samples, late;
    uint64_t change_prev_ns;  // the change happened in (change_prev_ns, change_ns]
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
    if (s->wait_for_increase && last > s->baseline) {
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
        if (s->wait_for_increase) {
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
    if (!s->wait_for_increase) s->value = last;
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
    pthread_create(&s->thread, NULL, sampler_main, s);
}

// ---------------------------------------------------------------- QMP
static int qmp_fd = -1;
static char qmp_buf[65536];
static size_t qmp_used = 0;
static uint64_t migration_completed_ns = 0;
static int migration_failed = 0;

// Reads one line (without \r\n) into out; returns 0 on timeout or EOF.
static int qmp_line(char *out, size_t size, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
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
        if (n <= 0) return 0;
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

static void qmp_connect(const char *path, pid_t pid) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) fail("QMP socket path too long: %s", path);
    strcpy(addr.sun_path, path);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            qmp_fd = fd;
            break;
        }
        close(fd);
        check_alive(pid, "source");
        sleep_us(2000);
    }
    qmp_used = 0;
    char line[4096];
    if (!qmp_line(line, sizeof(line), 10000) || !strstr(line, "\"QMP\"")) fail("QMP: no greeting");
    qmp_execute("{\"execute\": \"qmp_capabilities\"}", line, sizeof(line));
}

static long long json_int(const char *text, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\"", key);
    const char *p = strstr(text, pattern);
    if (!p) return -1;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':') p++;
    return strtoll(p, NULL, 10);
}

// ---------------------------------------------------------------- main
static int usage(void) {
    fprintf(stderr, "usage: migpause [-t SECONDS] [-l LOGFILE] [-w TICKS] [-r PRIO | -n NICE] [-y | -i US] [-c]\n"
                    "                -s STATE -q QMPSOCK (-f MEMPATH | -M) -- CPRVMM [ARG...]\n");
    return 1;
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

int main(int argc, char **argv) {
    const char *logfile = "/dev/null", *state = NULL, *qmp_path = NULL, *mem_path = NULL;
    int memfd = 0, cpr = 0;
    long wait_ticks = 300;
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
        else return usage();
    }
    if (i >= argc - 1 || !state || !qmp_path || (memfd == !!mem_path)) return usage();
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
    unlink(state);
    if (sample_sleep_ns) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    // ---- source
    struct console source_console, target_console;
    source_pid = spawn_vmm(source_argv, logfile, &source_console);
    struct ram ram = {0};
    while (!try_map(&ram, source_pid, mem_path)) {
        check_alive(source_pid, "source");
        sleep_us(1000);
    }
    // Ticks from the console, not from RAM: a reused mem-path file holds an old VM's counters.
    for (;;) {
        pthread_mutex_lock(&source_console.lock);
        long ticks = source_console.last_tick;
        pthread_mutex_unlock(&source_console.lock);
        if (ticks >= wait_ticks) break;
        check_alive(source_pid, "source");
        sleep_us(5000);
    }
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
