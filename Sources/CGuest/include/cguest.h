// Guest programs assembled by the normal build, reachable from Swift.
// Each blob sits between two symbols in a read-only section; Swift cannot take the
// size of an incomplete extern array, so these accessors return pointer and size.
#ifndef CGUEST_H
#define CGUEST_H

#include <stddef.h>
#include <stdint.h>
#include "guest_layout.h"

extern const uint8_t cprvmm_builtin_guest_start[];
extern const uint8_t cprvmm_builtin_guest_end[];

static inline const uint8_t *cguest_builtin_start(void) { return cprvmm_builtin_guest_start; }
static inline size_t cguest_builtin_size(void) {
    return (size_t)(cprvmm_builtin_guest_end - cprvmm_builtin_guest_start);
}

#endif
