/* Atomic loads and stores for fields that one process reads without the
 * ring's mutex (spin-polling).  Acquire/release pairs: a writer publishes a
 * position with a release store only after the bytes it covers are copied;
 * a reader that sees the new position with an acquire load therefore sees
 * the bytes.  Fields only touched under the mutex need none of this. */
#ifndef FASTMP_ATOMICS_H
#define FASTMP_ATOMICS_H
#include <stdint.h>

static inline uint64_t fastmp_load_acquire_u64(const volatile uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void fastmp_store_release_u64(volatile uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline int32_t fastmp_load_relaxed_i32(const volatile int32_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
/* A polite busy-wait hint: lets the sibling hyperthread run and saves power. */
static inline void fastmp_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
#endif
