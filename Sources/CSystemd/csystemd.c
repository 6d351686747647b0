#include "csystemd.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

static struct {
    __typeof__(&sd_pid_notify_with_fds) pid_notify_with_fds;
    __typeof__(&sd_watchdog_enabled) watchdog_enabled;
} api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_result = -ENOSYS;
static char load_error[512];

static void load(void) {
    void *library = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        const char *reason = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load libsystemd.so.0: %s", reason ? reason : "unknown error");
        return;
    }
    api.pid_notify_with_fds = (__typeof__(api.pid_notify_with_fds))dlsym(library, "sd_pid_notify_with_fds");
    api.watchdog_enabled = (__typeof__(api.watchdog_enabled))dlsym(library, "sd_watchdog_enabled");
    if (!api.pid_notify_with_fds || !api.watchdog_enabled) {
        snprintf(load_error, sizeof load_error, "libsystemd.so.0 lacks the sd-daemon functions (too old?)");
        return;
    }
    load_result = 0;
}

int csd_load(void) {
    pthread_once(&load_once, load);
    return load_result;
}

const char *csd_load_error(void) { return load_error; }

int csd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds, unsigned n_fds) {
    if (csd_load() < 0) return -ENOSYS;
    return api.pid_notify_with_fds(pid, unset_environment, state, fds, n_fds);
}

int csd_watchdog_enabled(int unset_environment, uint64_t *usec) {
    if (csd_load() < 0) return -ENOSYS;
    return api.watchdog_enabled(unset_environment, usec);
}
