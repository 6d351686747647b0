// livemig.c: one pre-copy live migration between two running VMMs (cprvmm or QEMU), timed from
// outside and from inside the guest's heartbeat, for bench/live-migration. Also prepares the
// RAM file of bench/qemuguest.S (the QEMU guest) and measures the TSC frequency.
//
//   livemig tsc
//       prints the TSC frequency in Hz (rdtsc against CLOCK_MONOTONIC_RAW over 200 ms)
//   livemig prepare FILE SIZE FILL DIRTY TSC_HZ
//       creates FILE (SIZE bytes, QEMU's pc RAM layout), writes the built-in guest's fill
//       pattern over the same ranges cprvmm's `-builtin-guest fill=FILL` fills, and the
//       parameters bench/qemuguest.S reads at 0x6100: the dirty area cprvmm's `dirty=DIRTY`
//       would use, DIRTY % of SIZE in 4 KiB pages per second paced by a TSC of TSC_HZ, a backlog
//       of at most 100 ms, as the built-in guest's ticks (0: no dirtying). Prints the area and
//       the rate.
//   livemig run -k cprvmm|qemu -m SIZE -p FILL [-d DIRTY] -q SRCQMP -Q DSTQMP -u URI
//               [-P PARAMS] [-C CAPS] (-M | -f SRCFILE -F DSTFILE) [-t SECONDS] [-T SECONDS] [-l LOGFILE]
//               [-w TICKS] [-s SETTLE_MS] [-a RUN_MS] [-r PRIO | -n NICE] [-i US] [-x]
//               -- SOURCE-ARGV... -- TARGET-ARGV...
//       -k       cprvmm: the built-in guest (its console on the VMM's stdout is read: ticks,
//                "memory filled", MEMORY CORRUPTION) and cprvmm's RAM layout; qemu: the
//                qemuguest.S guest (no console) and QEMU's layout
//       -m, -p, -d  RAM size, fill and dirty percentages the guest was given (for the checks)
//       -q, -Q   the source's and the target's QMP sockets (the ARGVs must create them)
//       -u URI   `migrate` to this URI (the target's -incoming)
//       -P JSON  migrate-set-parameters arguments for the source (default none)
//       -C JSON  migrate-set-capabilities "capabilities" list; "events" on is always added
//       -M       guest RAM is a memfd "pc.ram" (cprvmm -machine memfd-alloc=on): read it through
//                /proc/PID/fd of each process; -f/-F: the source's and target's mem-path files
//       -w TICKS cprvmm: wait for this many tick lines first (default 300)
//       -s MS    let the guest run this long after it is ready, measuring its dirty rate, before
//                migrating (default 1000)
//       -a MS    let the target run this long after it resumed before checking it (default 300)
//       -r/-n/-i the sampler thread: SCHED_FIFO priority / nice value / sleep between samples
//                (bench/migration's migpause.c options; the bench uses -r 1 -i 50)
//       -x       skip the host-side check of the target's RAM (below)
//       -t       give up after this many seconds (default 300)
//       -T       cancel a migration still running this many seconds after `migrate` (default 0:
//                never): migrate_cancel, the source's guest must run on; prints converged=0 and
//                what query-migrate said just before (a guest that dirties RAM faster than the
//                link carries it never converges without auto-converge)
//       -l       both processes' stderr (default /dev/null)
//   The ARGVs are run as given (posix_spawnp), e.g. `ip netns exec NS qemu-system-x86_64 ...`
//   (ip execs, so the PID is the VMM's). The target is started first.
//
// Sequence of run: start the target and the source; map the first 32 KiB of each one's RAM
// read-only; wait until the source's guest runs (cprvmm: TICKS tick lines; qemu: heartbeat
// moving), then SETTLE_MS more (the dirty rate is measured over it); QMP on both; on the source
// migrate-set-capabilities (events on, plus -C) and migrate-set-parameters (-P); a sampler
// thread reads both heartbeats (u64 at guest-physical 0x5000: the target's first, then the
// source's, stamped with CLOCK_MONOTONIC); `migrate`; wait for the MIGRATION "completed" event;
// wait until the sampler sees the target's guest run: the target's heartbeat above the
// source's read after it (pages the target receives hold values the source had already
// reached, so only the target's own guest can get past it); let the target run RUN_MS; check
// that it runs (query-status, heartbeat moving, for cprvmm its ticks continue where the
// source's stopped and neither console reports MEMORY CORRUPTION or "memory filled" again);
// `stop` the target and, unless -x, check its RAM from the host: every u64 of the fill ranges
// holds the pattern, and in the dirty area the pages behind the guest's cursor hold sweep
// n, the ones ahead n - 1 (the cursor page either), the guest's own corruption count (0x5018)
// is 0; then `quit` both.
//
// Prints one line of key=value pairs (times in ms unless _us), converged=1 first:
//   total_time_ms  the source's query-migrate total-time;  setup_ms: its setup-time
//   wall_ms        `migrate` sent -> MIGRATION "completed" event read
//   resume_ms      `migrate` sent -> the first target heartbeat change the sampler saw
//   stop_ms        `migrate` sent -> the last source heartbeat change
//   downtime_ms    query-migrate downtime;  downtime_us: x-downtime-us (cprvmm; -1 if absent)
//   guest_downtime_us  last source heartbeat change -> first target one (the guest's pause)
//   gd_err_us      its sampling uncertainty (the widths of the two intervals that hold the two
//                  changes; the true pause lies in [gd - new width, gd + old width])
//   landed_us      last source heartbeat change -> the target's heartbeat page last changed
//                  before its guest ran: when the page's final copy arrived, i.e. how far the
//                  target's side was behind the source's stop (the rest of the downtime is the
//                  target loading the device state and starting its vCPU); equal to
//                  guest_downtime_us when both fell between the same two samples
//   transferred, ram_total, normal, duplicate, dirty_sync, passes (x-passes, -1 if absent),
//   mbps           query-migrate's ram figures
//   dirty_rate_req pages/s asked for;  dirty_rate_before: measured over SETTLE_MS;
//   dirty_rate_during: from `migrate` to the source's stop (pages/s)
//   fill_checked   bytes of fill pattern checked on the target;  dirty_checked: pages checked
//   samples, max_step_us: the sampler's samples and its longest step
// Exit status 0 on success, 1 on any failure (message on stderr), 2 on bad usage.
//
// Build: clang -O2 -pthread -o livemig livemig.c

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
#include <x86intrin.h>

extern char **environ;

#define HEARTBEAT_OFFSET 0x5000
#define CORRUPTIONS_OFFSET 0x5018
#define DIRTY_PAGES_OFFSET 0x60e8
#define DIRTY_SWEEPS_OFFSET 0x60f0
#define PARAMS_OFFSET 0x6100
#define QEMUGUEST_MAGIC 0x3254534555474d4cull  // "LMGUEST2"
#define MAP_LENGTH 0x8000
#define RESERVED_END 0x800000ull              // GUEST_RESERVED_END: the fill starts here
#define GIB (1ull << 30)
#define PAGE 4096ull

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
    source_pid = target_pid = -1;
}

static void fail(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "livemig: ");
    vfprintf(stderr, format, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    kill_children();
    exit(1);
}

static void on_signal(int sig) {
    // async-signal-safe: kill + waitpid + _exit
    if (source_pid > 0) kill(source_pid, SIGKILL);
    if (target_pid > 0) kill(target_pid, SIGKILL);
    if (source_pid > 0) waitpid(source_pid, NULL, 0);
    if (target_pid > 0) waitpid(target_pid, NULL, 0);
    if (sig == SIGALRM) {
        static const char message[] = "livemig: timed out\n";
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

static double ms(uint64_t ns) { return (double)ns / 1e6; }
static double us(uint64_t ns) { return (double)ns / 1e3; }

static uint64_t parse_size(const char *text) {
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text) return 0;
    switch (*end) {
    case 'G': case 'g': v <<= 30; end++; break;
    case 'M': case 'm': v <<= 20; end++; break;
    case 'K': case 'k': v <<= 10; end++; break;
    case 0: break;
    default: return 0;
    }
    return *end ? 0 : v;
}

// ---------------------------------------------------------------- RAM layout
// cprvmm (MachineMemory): RAM below 3 GiB, the rest from 4 GiB. QEMU 7.2's pc (i440FX): all
// below 4 GiB up to 3.5 GiB of RAM, else split at 3 GiB (gigabyte_align). The same for the
// sizes the bench uses; they differ between 3 and 3.5 GiB only.
enum kind { KIND_CPRVMM, KIND_QEMU };

struct range { uint64_t start, end; };

static uint64_t low_ram(enum kind kind, uint64_t size) {
    if (kind == KIND_QEMU) return size >= 0xe0000000ull ? 0xc0000000ull : size;
    return size < 3 * GIB ? size : 3 * GIB;
}

static int ram_ranges(enum kind kind, uint64_t size, struct range *r) {
    uint64_t low = low_ram(kind, size);
    r[0] = (struct range){0, low};
    if (size <= low) return 1;
    r[1] = (struct range){4 * GIB, 4 * GIB + size - low};
    return 2;
}

// The file / memfd offset of a guest-physical address.
static uint64_t ram_offset(enum kind kind, uint64_t size, uint64_t gpa) {
    return gpa < 4 * GIB ? gpa : low_ram(kind, size) + gpa - 4 * GIB;
}

// BuiltinGuest.fillRanges
static int fill_ranges(const struct range *ram, int nram, uint64_t size, int percent, struct range *out) {
    uint64_t remaining = (size / 100 * (uint64_t)percent) & ~0xfffull;
    int n = 0;
    for (int i = 0; i < nram && remaining > 0; i++) {
        uint64_t start = ram[i].start > RESERVED_END ? ram[i].start : RESERVED_END;
        if (start >= ram[i].end) continue;
        uint64_t length = ram[i].end - start;
        if (length > remaining) length = remaining;
        length &= ~0xfffull;
        if (!length) continue;
        out[n++] = (struct range){start, start + length};
        remaining -= length;
    }
    return n;
}

// BuiltinGuest.dirtyArea: the largest piece above the boot area no fill range covers.
static struct range dirty_area(const struct range *ram, int nram, const struct range *fill, int nfill) {
    struct range best = {0, 0};
    for (int i = 0; i < nram; i++) {
        uint64_t start = ((ram[i].start > RESERVED_END ? ram[i].start : RESERVED_END) + 0xfff) & ~0xfffull;
        uint64_t end = ram[i].end & ~0xfffull;
        for (int k = 0; k <= nfill; k++) {
            struct range filled = k < nfill ? fill[k] : (struct range){end, end};
            if (!(filled.end > start && filled.start <= end)) continue;
            uint64_t cut = (filled.start & ~0xfffull) < end ? (filled.start & ~0xfffull) : end;
            uint64_t piece_end = cut > start ? cut : start;
            if (piece_end - start > best.end - best.start) best = (struct range){start, piece_end};
            uint64_t next = (filled.end + 0xfff) & ~0xfffull;
            if (next > start) start = next;
        }
    }
    if (best.end - best.start < (1ull << 20)) return (struct range){0, 0};
    return best;
}

static inline uint64_t pattern(uint64_t gpa) { return (gpa * 0x9E3779B97F4A7C15ull) ^ 0x5A5A5A5A5A5A5A5Aull; }

// ---------------------------------------------------------------- tsc, prepare
static uint64_t measure_tsc_hz(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC_RAW, &a);
    uint64_t t0 = __rdtsc();
    sleep_us(200000);
    clock_gettime(CLOCK_MONOTONIC_RAW, &b);
    uint64_t t1 = __rdtsc();
    double seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    return (uint64_t)((double)(t1 - t0) / seconds);
}

static int prepare_main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: livemig prepare FILE SIZE FILL DIRTY TSC_HZ\n");
        return 2;
    }
    const char *path = argv[2];
    uint64_t size = parse_size(argv[3]);
    int fill = atoi(argv[4]), dirty = atoi(argv[5]);
    uint64_t tsc_hz = strtoull(argv[6], NULL, 10);
    if (!size || size < 64 * (1ull << 20) || fill < 0 || fill > 100 || dirty < 0 || dirty > 1000 || !tsc_hz) {
        fprintf(stderr, "livemig prepare: bad arguments\n");
        return 2;
    }
    struct range ram[2], fills[4];
    int nram = ram_ranges(KIND_QEMU, size, ram);
    int nfill = fill_ranges(ram, nram, size, fill, fills);
    struct range area = dirty_area(ram, nram, fills, nfill);
    if (dirty && !area.end) fail("no dirty area of at least 1 MiB with fill=%d", fill);

    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail("%s: %s", path, strerror(errno));
    if (ftruncate(fd, (off_t)size) < 0) fail("ftruncate %s: %s", path, strerror(errno));
    char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) fail("mmap %s: %s", path, strerror(errno));
    uint64_t filled = 0;
    for (int i = 0; i < nfill; i++) {
        uint64_t *p = (uint64_t *)(base + ram_offset(KIND_QEMU, size, fills[i].start));
        for (uint64_t gpa = fills[i].start; gpa < fills[i].end; gpa += 8) *p++ = pattern(gpa);
        filled += fills[i].end - fills[i].start;
    }
    uint64_t rate = dirty ? (uint64_t)dirty * size / 100 / PAGE : 0;
    uint64_t params[5] = {QEMUGUEST_MAGIC, dirty ? area.start : 0, dirty ? area.end : 0, rate ? tsc_hz / rate : 0, tsc_hz / 10};
    memcpy(base + PARAMS_OFFSET, params, sizeof(params));
    if (munmap(base, size) < 0 || close(fd) < 0) fail("%s: %s", path, strerror(errno));
    printf("filled=%llu dirty_start=0x%llx dirty_end=0x%llx dirty_rate=%llu interval=%llu\n", (unsigned long long)filled,
           (unsigned long long)params[1], (unsigned long long)params[2], (unsigned long long)rate, (unsigned long long)params[3]);
    return 0;
}

// ---------------------------------------------------------------- console reader (cprvmm)
struct console {
    int fd;
    pthread_t thread;
    long first_tick, last_tick, ticks_seen, tick_breaks, break_from, break_to;
    int saw_filled, saw_corruption;
    char corruption[256];
    pthread_mutex_t lock;
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
        used += (size_t)n;
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', used - (size_t)(line - buf)))) {
            *nl = 0;
            pthread_mutex_lock(&c->lock);
            if (strncmp(line, "tick ", 5) == 0) {
                long tick = strtol(line + 5, NULL, 10);
                if (c->ticks_seen++ == 0) c->first_tick = tick;
                else if (tick != c->last_tick + 1 && !c->tick_breaks++) {
                    c->break_from = c->last_tick;
                    c->break_to = tick;
                }
                c->last_tick = tick;
            }
            if (strstr(line, "memory filled")) c->saw_filled++;
            if (strstr(line, "MEMORY CORRUPTION") && !c->saw_corruption++)
                snprintf(c->corruption, sizeof(c->corruption), "%s", line);
            pthread_mutex_unlock(&c->lock);
            line = nl + 1;
        }
        size_t rest = used - (size_t)(line - buf);
        memmove(buf, line, rest);
        used = rest;
    }
    close(c->fd);
    return NULL;
}

static struct console console_snapshot(struct console *c) {
    pthread_mutex_lock(&c->lock);
    struct console copy = *c;
    pthread_mutex_unlock(&c->lock);
    return copy;
}

// ---------------------------------------------------------------- processes
static pid_t spawn(char **argv, const char *logfile, struct console *console) {
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
    int err = posix_spawnp(&pid, argv[0], &actions, &attr, argv, environ);
    if (err != 0) fail("cannot run %s: %s", argv[0], strerror(err));
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    close(logfd);
    memset(console, 0, sizeof(*console));
    console->fd = pipefd[0];
    pthread_mutex_init(&console->lock, NULL);
    pthread_create(&console->thread, NULL, console_main, console);
    return pid;
}

static int exit_status(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

static void check_alive(pid_t pid, const char *what) {
    int status;
    if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
        if (pid == source_pid) source_pid = -1;
        if (pid == target_pid) target_pid = -1;
        fail("the %s ended early (status %d); see its log", what, exit_status(status));
    }
}

// Waits up to timeout_ms for pid to exit; SIGKILL after that. Returns its exit status.
static int reap(volatile pid_t *pid, int timeout_ms) {
    int status = 0;
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid) break;
        if (now_ns() > deadline) {
            kill(*pid, SIGKILL);
            while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {}
            *pid = -1;
            return -1;
        }
        sleep_us(2000);
    }
    *pid = -1;
    return exit_status(status);
}

// ---------------------------------------------------------------- guest RAM
struct ram {
    int fd;
    char *base;
    size_t length;
};

static int open_memfd(pid_t pid) {
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int fd = -1;
    while (fd < 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[128], target[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strcmp(target, "/memfd:pc.ram (deleted)") == 0) fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    closedir(d);
    return fd;
}

// Maps the first MAP_LENGTH bytes of pid's RAM (memfd) or of path, once it exists and is sized.
static void map_ram(struct ram *ram, pid_t pid, const char *path, const char *what, uint64_t deadline) {
    for (;;) {
        int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : open_memfd(pid);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= MAP_LENGTH) {
            void *p = mmap(NULL, MAP_LENGTH, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED) fail("mmap the %s's RAM: %s", what, strerror(errno));
            ram->fd = fd;
            ram->base = p;
            ram->length = MAP_LENGTH;
            return;
        }
        if (fd >= 0) close(fd);
        check_alive(pid, what);
        if (now_ns() > deadline) fail("the %s's RAM did not appear", what);
        sleep_us(1000);
    }
}

static inline uint64_t ram_u64(const struct ram *ram, uint64_t offset) {
    return *(const volatile uint64_t *)(ram->base + offset);
}

// ---------------------------------------------------------------- QMP
struct qmp {
    int fd;
    char buf[65536];
    size_t used;
    const char *what;
    uint64_t completed_ns;  // when the MIGRATION "completed" event was read
    int failed;             // a MIGRATION "failed" / "cancelled" event was read
    int passes;             // MIGRATION_PASS events
};

static int timeout_seconds = 300;
static int converge_seconds = 0;  // -T: cancel a migration that has not completed after this long

// Reads one line (without \r\n); 0 on timeout or end of file.
static int qmp_line(struct qmp *q, char *out, size_t size, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->used);
        if (nl) {
            size_t len = (size_t)(nl - q->buf);
            size_t copy = len < size - 1 ? len : size - 1;
            memcpy(out, q->buf, copy);
            out[copy] = 0;
            if (copy && out[copy - 1] == '\r') out[copy - 1] = 0;
            memmove(q->buf, nl + 1, q->used - len - 1);
            q->used -= len + 1;
            if (strstr(out, "\"event\"") && strstr(out, "\"MIGRATION\"")) {
                if (strstr(out, "\"completed\"") && !q->completed_ns) q->completed_ns = now_ns();
                if (strstr(out, "\"failed\"") || strstr(out, "\"cancelled\"")) q->failed = 1;
            }
            if (strstr(out, "\"event\"") && strstr(out, "\"MIGRATION_PASS\"")) q->passes++;
            return 1;
        }
        if (q->used == sizeof(q->buf)) fail("QMP %s: overlong line", q->what);
        uint64_t now = now_ns();
        if (now >= deadline) return 0;
        struct pollfd p = {q->fd, POLLIN, 0};
        int r = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (r <= 0) continue;
        ssize_t n = read(q->fd, q->buf + q->used, sizeof(q->buf) - q->used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        q->used += (size_t)n;
    }
}

static void qmp_send(struct qmp *q, const char *command) {
    size_t len = strlen(command);
    if (write(q->fd, command, len) != (ssize_t)len || write(q->fd, "\n", 1) != 1)
        fail("QMP %s: write: %s", q->what, strerror(errno));
}

// Sends a command; its reply line (events are consumed on the way) goes to out.
static void qmp_execute(struct qmp *q, const char *command, char *out, size_t size) {
    qmp_send(q, command);
    for (;;) {
        if (!qmp_line(q, out, size, timeout_seconds * 1000)) fail("QMP %s: no reply to %s", q->what, command);
        if (strncmp(out, "{\"return\"", 9) == 0) return;
        if (strncmp(out, "{\"error\"", 8) == 0) fail("QMP %s: %s -> %s", q->what, command, out);
    }
}

static void qmp_connect(struct qmp *q, const char *path, pid_t pid, const char *what, uint64_t deadline) {
    memset(q, 0, sizeof(*q));
    q->what = what;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) fail("QMP socket path too long: %s", path);
    strcpy(addr.sun_path, path);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            q->fd = fd;
            break;
        }
        close(fd);
        check_alive(pid, what);
        if (now_ns() > deadline) fail("QMP %s: cannot connect to %s", what, path);
        sleep_us(2000);
    }
    char line[4096];
    if (!qmp_line(q, line, sizeof(line), timeout_seconds * 1000) || !strstr(line, "\"QMP\"")) fail("QMP %s: no greeting", what);
    qmp_execute(q, "{\"execute\": \"qmp_capabilities\"}", line, sizeof(line));
}

/* Where the value of "key" starts in a one-line JSON reply, or NULL. */
static const char *json_value(const char *text, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\"", key);
    const char *p = strstr(text, pattern);
    if (!p) return NULL;
    p += strlen(pattern);
    while (*p == ' ' || *p == ':') p++;
    return p;
}

static long long json_int(const char *text, const char *key) {
    const char *p = json_value(text, key);
    return p ? strtoll(p, NULL, 10) : -1;
}

static double json_double(const char *text, const char *key) {
    const char *p = json_value(text, key);
    return p ? strtod(p, NULL) : -1;
}

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

// ---------------------------------------------------------------- the two-heartbeat sampler
static long sample_sleep_ns = 0;
static int sample_nice = 0, sample_fifo = 0;

struct sampler {
    const volatile uint64_t *source, *target;
    atomic_int stop;
    pthread_t thread;
    // results: the last source change was seen at source_change_ns and happened in
    // (source_change_prev_ns, source_change_ns]; the target's first run likewise
    uint64_t source_value, source_change_ns, source_change_prev_ns;
    uint64_t target_value, target_change_ns, target_change_prev_ns;
    uint64_t target_landed_ns;  // the last change of the target's heartbeat before its guest ran:
                                // the heartbeat page's final copy arriving (or the first run)
    int target_ran;
    uint64_t samples, max_step_ns;
};

static void *sampler_main(void *arg) {
    struct sampler *s = arg;
    if (sample_fifo) {
        struct sched_param param = {.sched_priority = sample_fifo};
        int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
        if (err) fprintf(stderr, "livemig: SCHED_FIFO for the sampler: %s (sampling at normal priority)\n", strerror(err));
    } else if (sample_nice) {
        setpriority(PRIO_PROCESS, (id_t)gettid(), sample_nice);
    }
    // Sample k reads between stamps t[k-1] and t[k]: a change first seen by sample k happened
    // in (t[k-2], t[k]] (a stamp can lag its read when the thread is preempted in between).
    uint64_t prev2 = now_ns();
    uint64_t last = *s->source, last_target = *s->target;
    uint64_t prev = now_ns();
    s->source_value = last;
    s->source_change_ns = prev;
    s->source_change_prev_ns = prev2;
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        if (sample_sleep_ns) {
            struct timespec ts = {0, sample_sleep_ns};
            nanosleep(&ts, NULL);
        }
        // The target first: whatever it received, the source had reached before this read.
        uint64_t t_value = *s->target;
        uint64_t s_value = *s->source;
        uint64_t t = now_ns();
        s->samples++;
        if (t - prev > s->max_step_ns) s->max_step_ns = t - prev;
        if (s_value != last) {
            last = s_value;
            s->source_value = s_value;
            s->source_change_ns = t;
            s->source_change_prev_ns = prev2;
        }
        if (t_value != last_target) {
            last_target = t_value;
            if (t_value <= s_value) s->target_landed_ns = t;
        }
        if (t_value > s_value) {
            if (!s->target_landed_ns || s->target_landed_ns < s->source_change_ns) s->target_landed_ns = t;
            s->target_ran = 1;
            s->target_value = t_value;
            s->target_change_ns = t;
            s->target_change_prev_ns = prev2;
            break;
        }
        prev2 = prev;
        prev = t;
    }
    return NULL;
}

// ---------------------------------------------------------------- the target's RAM, checked
struct check_result {
    uint64_t fill_bytes, fill_bad, first_bad_fill;
    uint64_t dirty_pages, dirty_bad, first_bad_dirty, first_bad_value, first_bad_expected;
    uint64_t corruptions;
};

static struct check_result check_ram(int fd, enum kind kind, uint64_t size, int fill, int dirty) {
    struct check_result r = {0};
    char *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) fail("mmap the target's RAM (%llu bytes): %s", (unsigned long long)size, strerror(errno));
    struct range ram[2], fills[4];
    int nram = ram_ranges(kind, size, ram);
    int nfill = fill_ranges(ram, nram, size, fill, fills);
    for (int i = 0; i < nfill; i++) {
        const uint64_t *p = (const uint64_t *)(base + ram_offset(kind, size, fills[i].start));
        for (uint64_t gpa = fills[i].start; gpa < fills[i].end; gpa += 8, p++) {
            if (*p != pattern(gpa) && !r.fill_bad++) r.first_bad_fill = gpa;
        }
        r.fill_bytes += fills[i].end - fills[i].start;
    }
    r.corruptions = *(const uint64_t *)(base + CORRUPTIONS_OFFSET);
    if (dirty) {
        struct range area = dirty_area(ram, nram, fills, nfill);
        uint64_t pages = (area.end - area.start) / PAGE;
        uint64_t written = *(const uint64_t *)(base + DIRTY_PAGES_OFFSET);
        uint64_t sweeps = *(const uint64_t *)(base + DIRTY_SWEEPS_OFFSET);
        uint64_t cursor = pages ? written - sweeps * pages : 0;
        for (uint64_t i = 0; i < pages; i++) {
            uint64_t v = *(const uint64_t *)(base + ram_offset(kind, size, area.start + i * PAGE));
            // behind the cursor: sweep n = sweeps + 1; ahead: n - 1; the cursor page may hold
            // either (the guest stopped between the store and its count)
            uint64_t expected = i < cursor ? sweeps + 1 : sweeps;
            int ok = v == expected || (i == cursor && v == sweeps + 1);
            if (!ok && !r.dirty_bad++) {
                r.first_bad_dirty = area.start + i * PAGE;
                r.first_bad_value = v;
                r.first_bad_expected = expected;
            }
        }
        r.dirty_pages = pages;
    }
    munmap(base, size);
    return r;
}

// ---------------------------------------------------------------- run
static int usage(void) {
    fprintf(stderr, "usage: livemig tsc\n"
                    "       livemig prepare FILE SIZE FILL DIRTY TSC_HZ\n"
                    "       livemig run -k cprvmm|qemu -m SIZE -p FILL [-d DIRTY] -q SRCQMP -Q DSTQMP -u URI\n"
                    "                   [-P PARAMS] [-C CAPS] (-M | -f SRCFILE -F DSTFILE) [-t SECONDS] [-T SECONDS] [-l LOGFILE]\n"
                    "                   [-w TICKS] [-s SETTLE_MS] [-a RUN_MS] [-r PRIO | -n NICE] [-i US] [-x]\n"
                    "                   -- SOURCE-ARGV... -- TARGET-ARGV...\n");
    return 2;
}

// The migration did not complete in the -T limit: cancel it, check that the source's guest runs
// on, let the target go (it ends when its stream breaks off), quit the source, print what was
// done until then.
static int not_converged(struct qmp *sq, const struct ram *src, pid_t source, struct console *console, uint64_t migrate_ns,
                         uint64_t pages_0, uint64_t rate_req, double rate_before) {
    char reply[16384];
    qmp_execute(sq, "{\"execute\": \"query-migrate\"}", reply, sizeof(reply));
    uint64_t cancel_ns = now_ns();
    uint64_t pages_cancel = ram_u64(src, DIRTY_PAGES_OFFSET);
    long long total_time = json_int(reply, "total-time"), transferred = json_int(reply, "transferred");
    long long remaining = json_int(reply, "remaining"), dirty_sync = json_int(reply, "dirty-sync-count");
    long long passes = json_int(reply, "x-passes");
    double mbps = json_double(reply, "mbps");
    qmp_execute(sq, "{\"execute\": \"migrate_cancel\"}", reply, sizeof(reply));
    uint64_t deadline = now_ns() + 60000000000ull;
    while (!sq->failed && !sq->completed_ns) {
        char line[8192];
        if (!qmp_line(sq, line, sizeof(line), 200) && now_ns() > deadline) fail("migrate_cancel: no MIGRATION cancelled event");
    }
    if (sq->completed_ns) fail("the migration completed as it was being cancelled");
    qmp_execute(sq, "{\"execute\": \"query-status\"}", reply, sizeof(reply));
    char status[64];
    json_str(reply, "status", status, sizeof(status));
    if (strcmp(status, "running") != 0) fail("the source is %s after migrate_cancel, not running: %s", status, reply);
    uint64_t beat = ram_u64(src, HEARTBEAT_OFFSET);
    sleep_us(200000);
    if (ram_u64(src, HEARTBEAT_OFFSET) == beat) fail("the source's heartbeat stopped after migrate_cancel");
    if (console) {
        struct console c = console_snapshot(console);
        if (c.saw_corruption) fail("the source's guest reported: %s", c.corruption);
        if (c.tick_breaks) fail("the source's ticks broke (%ld -> %ld)", c.break_from, c.break_to);
    }
    if (ram_u64(src, CORRUPTIONS_OFFSET)) fail("the source's guest counted corruptions");
    static const char quit[] = "{\"execute\": \"quit\"}\n";
    (void)!write(sq->fd, quit, sizeof(quit) - 1);
    int source_status = reap(&source_pid, 10000);
    reap(&target_pid, 10000);  // whatever it says: its stream broke off
    (void)source;
    if (source_status != 0) fail("the source exited with status %d after quit", source_status);
    double seconds = (double)(cancel_ns - migrate_ns) / 1e9;
    printf("converged=0 total_time_ms=%lld transferred=%lld remaining=%lld dirty_sync=%lld passes=%lld pass_events=%d mbps=%.1f "
           "dirty_rate_req=%llu dirty_rate_before=%.0f dirty_rate_during=%.0f cancelled_after_ms=%.3f\n",
           total_time, transferred, remaining, dirty_sync, passes, sq->passes, mbps, (unsigned long long)rate_req, rate_before,
           (double)(pages_cancel - pages_0) / seconds, ms(cancel_ns - migrate_ns));
    return 0;
}

static int run_main(int argc, char **argv) {
    const char *kind_name = NULL, *src_qmp = NULL, *dst_qmp = NULL, *uri = NULL, *params = NULL, *caps = NULL;
    const char *src_file = NULL, *dst_file = NULL, *logfile = "/dev/null";
    uint64_t size = 0;
    int fill = -1, dirty = 0, memfd = 0, check = 1;
    long wait_ticks = 300, settle_ms = 1000, run_ms = 300;
    int i = 2;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-M") == 0) memfd = 1;
        else if (strcmp(a, "-x") == 0) check = 0;
        else if (!v) return usage();
        else if (strcmp(a, "-k") == 0) kind_name = v, i++;
        else if (strcmp(a, "-m") == 0) size = parse_size(v), i++;
        else if (strcmp(a, "-p") == 0) fill = atoi(v), i++;
        else if (strcmp(a, "-d") == 0) dirty = atoi(v), i++;
        else if (strcmp(a, "-q") == 0) src_qmp = v, i++;
        else if (strcmp(a, "-Q") == 0) dst_qmp = v, i++;
        else if (strcmp(a, "-u") == 0) uri = v, i++;
        else if (strcmp(a, "-P") == 0) params = v, i++;
        else if (strcmp(a, "-C") == 0) caps = v, i++;
        else if (strcmp(a, "-f") == 0) src_file = v, i++;
        else if (strcmp(a, "-F") == 0) dst_file = v, i++;
        else if (strcmp(a, "-t") == 0) timeout_seconds = atoi(v), i++;
        else if (strcmp(a, "-T") == 0) converge_seconds = atoi(v), i++;
        else if (strcmp(a, "-l") == 0) logfile = v, i++;
        else if (strcmp(a, "-w") == 0) wait_ticks = atol(v), i++;
        else if (strcmp(a, "-s") == 0) settle_ms = atol(v), i++;
        else if (strcmp(a, "-a") == 0) run_ms = atol(v), i++;
        else if (strcmp(a, "-r") == 0) sample_fifo = atoi(v), i++;
        else if (strcmp(a, "-n") == 0) sample_nice = atoi(v), i++;
        else if (strcmp(a, "-i") == 0) sample_sleep_ns = atol(v) * 1000, i++;
        else return usage();
    }
    if (!kind_name || (strcmp(kind_name, "cprvmm") && strcmp(kind_name, "qemu")) || !size || fill < 0 || !src_qmp ||
        !dst_qmp || !uri || memfd == !!(src_file && dst_file) || (!memfd && (!src_file || !dst_file)) || i >= argc)
        return usage();
    enum kind kind = strcmp(kind_name, "qemu") == 0 ? KIND_QEMU : KIND_CPRVMM;
    char **source_argv = argv + i + 1;
    int k = i + 1;
    while (k < argc && strcmp(argv[k], "--") != 0) k++;
    if (k >= argc - 1 || k == i + 1) return usage();
    argv[k] = NULL;
    char **target_argv = argv + k + 1;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)timeout_seconds);
    if (sample_sleep_ns) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    uint64_t deadline = now_ns() + (uint64_t)timeout_seconds * 1000000000ull;

    // ---- both VMMs, the target first (it listens)
    struct console source_console, target_console;
    target_pid = spawn(target_argv, logfile, &target_console);
    source_pid = spawn(source_argv, logfile, &source_console);
    struct ram src, dst;
    map_ram(&dst, target_pid, dst_file, "target", deadline);
    map_ram(&src, source_pid, src_file, "source", deadline);
    const volatile uint64_t *src_heartbeat = (const volatile uint64_t *)(src.base + HEARTBEAT_OFFSET);
    const volatile uint64_t *dst_heartbeat = (const volatile uint64_t *)(dst.base + HEARTBEAT_OFFSET);

    // ---- the source's guest runs
    if (kind == KIND_CPRVMM) {
        for (;;) {
            struct console c = console_snapshot(&source_console);
            if (c.ticks_seen >= wait_ticks) break;
            check_alive(source_pid, "source");
            check_alive(target_pid, "target");
            if (now_ns() > deadline) fail("the source printed %ld ticks, not %ld", c.ticks_seen, wait_ticks);
            sleep_us(5000);
        }
    } else {
        uint64_t first = *src_heartbeat;
        while (*src_heartbeat == first || !*src_heartbeat) {
            check_alive(source_pid, "source");
            check_alive(target_pid, "target");
            if (now_ns() > deadline) fail("the source's guest does not run (heartbeat %llu)", (unsigned long long)first);
            sleep_us(1000);
        }
    }
    uint64_t settle_start = now_ns();
    uint64_t pages_a = ram_u64(&src, DIRTY_PAGES_OFFSET);
    sleep_us(settle_ms * 1000);
    uint64_t pages_b = ram_u64(&src, DIRTY_PAGES_OFFSET);
    double rate_before = (double)(pages_b - pages_a) / ((double)(now_ns() - settle_start) / 1e9);
    check_alive(source_pid, "source");
    check_alive(target_pid, "target");

    // ---- QMP
    static struct qmp sq, tq;
    char reply[16384], command[4096];
    qmp_connect(&tq, dst_qmp, target_pid, "target", deadline);
    qmp_connect(&sq, src_qmp, source_pid, "source", deadline);
    snprintf(command, sizeof(command),
             "{\"execute\": \"migrate-set-capabilities\", \"arguments\": {\"capabilities\": "
             "[{\"capability\": \"events\", \"state\": true}%s%s]}}",
             caps && *caps ? ", " : "", caps && *caps ? caps : "");
    qmp_execute(&sq, command, reply, sizeof(reply));
    if (params && *params) {
        snprintf(command, sizeof(command), "{\"execute\": \"migrate-set-parameters\", \"arguments\": %s}", params);
        qmp_execute(&sq, command, reply, sizeof(reply));
    }

    // ---- migrate
    struct sampler s = {0};
    s.source = src_heartbeat;
    s.target = dst_heartbeat;
    atomic_init(&s.stop, 0);
    if (*dst_heartbeat > *src_heartbeat) fail("the target's heartbeat is ahead of the source's before the migration");
    pthread_create(&s.thread, NULL, sampler_main, &s);
    sleep_us(20000);
    uint64_t pages_0 = ram_u64(&src, DIRTY_PAGES_OFFSET);
    snprintf(command, sizeof(command), "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"%s\"}}", uri);
    uint64_t migrate_ns = now_ns();
    qmp_execute(&sq, command, reply, sizeof(reply));
    uint64_t give_up_ns = converge_seconds ? migrate_ns + (uint64_t)converge_seconds * 1000000000ull : 0;
    while (!sq.completed_ns && !sq.failed) {
        char line[8192];
        if (!qmp_line(&sq, line, sizeof(line), 200)) {
            check_alive(source_pid, "source");
            check_alive(target_pid, "target");
            if (give_up_ns && now_ns() > give_up_ns) {
                atomic_store(&s.stop, 1);
                pthread_join(s.thread, NULL);
                return not_converged(&sq, &src, source_pid, kind == KIND_CPRVMM ? &source_console : NULL, migrate_ns, pages_0,
                                     dirty ? (uint64_t)dirty * size / 100 / PAGE : 0, rate_before);
            }
            if (now_ns() > deadline) {
                qmp_execute(&sq, "{\"execute\": \"query-migrate\"}", reply, sizeof(reply));
                fail("the migration did not complete in %d s: %s", timeout_seconds, reply);
            }
        }
    }
    if (sq.failed) {
        qmp_execute(&sq, "{\"execute\": \"query-migrate\"}", reply, sizeof(reply));
        fail("the migration failed: %s", reply);
    }
    // The target's guest runs once its heartbeat passes the source's.
    while (!s.target_ran) {
        check_alive(target_pid, "target");
        if (now_ns() > deadline) {
            atomic_store(&s.stop, 1);
            pthread_join(s.thread, NULL);
            fail("the target's guest did not run after the migration completed (heartbeat %llu, the source's %llu)",
                 (unsigned long long)*dst_heartbeat, (unsigned long long)*src_heartbeat);
        }
        sleep_us(1000);
        if (s.target_ran) break;
    }
    pthread_join(s.thread, NULL);
    uint64_t stopped_at = *src_heartbeat;
    if (stopped_at != s.source_value)
        fail("the source's heartbeat moved after the target's guest ran (%llu, the sampler saw %llu last)",
             (unsigned long long)stopped_at, (unsigned long long)s.source_value);
    uint64_t pages_stop = ram_u64(&src, DIRTY_PAGES_OFFSET);

    qmp_execute(&sq, "{\"execute\": \"query-migrate\"}", reply, sizeof(reply));
    char status[64];
    json_str(reply, "status", status, sizeof(status));
    if (strcmp(status, "completed") != 0) fail("query-migrate on the source: %s", reply);
    long long total_time = json_int(reply, "total-time"), setup_time = json_int(reply, "setup-time");
    long long downtime = json_int(reply, "downtime"), downtime_us = json_int(reply, "x-downtime-us");
    long long transferred = json_int(reply, "transferred"), ram_total = json_int(reply, "total");
    long long normal = json_int(reply, "normal"), duplicate = json_int(reply, "duplicate");
    long long dirty_sync = json_int(reply, "dirty-sync-count"), passes = json_int(reply, "x-passes");
    double mbps = json_double(reply, "mbps");

    // ---- the target runs on
    uint64_t resumed_value = *dst_heartbeat;
    sleep_us(run_ms * 1000);
    check_alive(target_pid, "target");
    if (*dst_heartbeat <= resumed_value) fail("the target's heartbeat stopped after %llu", (unsigned long long)resumed_value);
    qmp_execute(&tq, "{\"execute\": \"query-status\"}", reply, sizeof(reply));
    json_str(reply, "status", status, sizeof(status));
    if (strcmp(status, "running") != 0) fail("the target is %s, not running: %s", status, reply);
    if (kind == KIND_CPRVMM) {
        struct console sc = console_snapshot(&source_console), tc = console_snapshot(&target_console);
        if (sc.saw_corruption) fail("the source's guest reported: %s", sc.corruption);
        if (tc.saw_corruption) fail("the target's guest reported: %s", tc.corruption);
        if (tc.saw_filled) fail("the target's guest started afresh (\"memory filled\")");
        if (!tc.ticks_seen) fail("the target's guest printed no tick in %ld ms", run_ms);
        if (tc.first_tick < 1 || tc.first_tick > sc.last_tick + 2)
            fail("the target's first tick %ld does not follow the source's last %ld", tc.first_tick, sc.last_tick);
        if (tc.tick_breaks) fail("the target's ticks broke (%ld -> %ld)", tc.break_from, tc.break_to);
    }

    // ---- the target's RAM, stopped
    qmp_execute(&tq, "{\"execute\": \"stop\"}", reply, sizeof(reply));
    struct check_result cr = {0};
    uint64_t corruptions = ram_u64(&dst, CORRUPTIONS_OFFSET);
    if (corruptions) fail("the target's guest counted %llu corruptions", (unsigned long long)corruptions);
    if (check) {
        cr = check_ram(dst.fd, kind, size, fill, dirty);
        if (cr.fill_bad)
            fail("the target's fill pattern differs in %llu words (first at 0x%llx)", (unsigned long long)cr.fill_bad,
                 (unsigned long long)cr.first_bad_fill);
        if (cr.dirty_bad)
            fail("%llu pages of the target's dirty area hold a wrong sweep (first at 0x%llx: %llu, expected %llu)",
                 (unsigned long long)cr.dirty_bad, (unsigned long long)cr.first_bad_dirty,
                 (unsigned long long)cr.first_bad_value, (unsigned long long)cr.first_bad_expected);
    }

    // ---- done: quit both
    munmap(src.base, src.length);
    close(src.fd);
    munmap(dst.base, dst.length);
    close(dst.fd);
    // quit: a write that fails (the process closed its monitor already) shows in the exit status.
    static const char quit[] = "{\"execute\": \"quit\"}\n";
    int source_quit = write(sq.fd, quit, sizeof(quit) - 1) == (ssize_t)sizeof(quit) - 1;
    int target_quit = write(tq.fd, quit, sizeof(quit) - 1) == (ssize_t)sizeof(quit) - 1;
    int source_status = reap(&source_pid, 10000), target_status = reap(&target_pid, 10000);
    close(sq.fd);
    close(tq.fd);
    pthread_join(source_console.thread, NULL);
    pthread_join(target_console.thread, NULL);
    alarm(0);
    if (source_status != 0) fail("the source exited with status %d after quit%s", source_status, source_quit ? "" : " (its monitor was closed)");
    if (target_status != 0) fail("the target exited with status %d after quit%s", target_status, target_quit ? "" : " (its monitor was closed)");

    uint64_t gd = s.target_change_ns - s.source_change_ns;
    uint64_t err = (s.source_change_ns - s.source_change_prev_ns) + (s.target_change_ns - s.target_change_prev_ns);
    double during_s = (double)(int64_t)(s.source_change_ns - migrate_ns) / 1e9;
    uint64_t rate_req = dirty ? (uint64_t)dirty * size / 100 / PAGE : 0;
    printf("converged=1 total_time_ms=%lld setup_ms=%lld wall_ms=%.3f resume_ms=%.3f stop_ms=%.3f downtime_ms=%lld downtime_us=%lld "
           "guest_downtime_us=%.3f gd_err_us=%.3f landed_us=%.3f transferred=%lld ram_total=%lld normal=%lld duplicate=%lld dirty_sync=%lld "
           "passes=%lld pass_events=%d mbps=%.1f dirty_rate_req=%llu dirty_rate_before=%.0f dirty_rate_during=%.0f "
           "fill_checked=%llu dirty_checked=%llu samples=%llu max_step_us=%.3f\n",
           total_time, setup_time, ms(sq.completed_ns - migrate_ns), ms(s.target_change_ns - migrate_ns),
           (double)(int64_t)(s.source_change_ns - migrate_ns) / 1e6, downtime, downtime_us, us(gd), us(err),
           (double)(int64_t)(s.target_landed_ns - s.source_change_ns) / 1e3, transferred,
           ram_total, normal, duplicate, dirty_sync, passes, sq.passes, mbps, (unsigned long long)rate_req, rate_before,
           during_s > 0 ? (double)(pages_stop - pages_0) / during_s : 0.0, (unsigned long long)cr.fill_bytes,
           (unsigned long long)cr.dirty_pages, (unsigned long long)s.samples, us(s.max_step_ns));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "tsc") == 0) {
        printf("%llu\n", (unsigned long long)measure_tsc_hz());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "prepare") == 0) return prepare_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "run") == 0) return run_main(argc, argv);
    return usage();
}
