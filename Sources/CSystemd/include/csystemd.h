#ifndef CSYSTEMD_H
#define CSYSTEMD_H

#include <stdint.h>
#include <sys/types.h>

/* libsystemd's sd-daemon API, loaded on first use with dlopen("libsystemd.so.0").
 *
 * Why not link it: libsystemd.so pulls libgcrypt, lzma, zstd, lz4 and libcap into every
 * image, which costs 1.5-2.5 ms per exec on these hosts (docs/platform.md) -- inside the
 * guest pause of every live update -- and Debian ships no libsystemd.a, so a binary that links
 * it cannot be static. Loading it on first use keeps the pause free of it: a new image first
 * talks to systemd after the guest runs again. The prototypes come from libsystemd-dev's
 * <systemd/sd-daemon.h>, so a signature change breaks the build, not the VM.
 *
 * Each function returns what its sd_* namesake returns, or -ENOSYS (with csd_load_error()
 * saying why) when the library cannot be loaded. None of them hands back memory libsystemd
 * allocated: in a static cprvmm, libsystemd runs on a second libc with its own heap (the
 * passed fds are read without it, Systemd/ListenFDs.swift). */

/* 0 if libsystemd is loaded (loading it now if needed), else -ENOSYS. */
int csd_load(void);
/* Why the last csd_load failed ("" if it did not). */
const char *csd_load_error(void);

int csd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds, unsigned n_fds);
int csd_watchdog_enabled(int unset_environment, uint64_t *usec);

#endif
