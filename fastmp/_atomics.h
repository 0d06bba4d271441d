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
/* For the lock word of fastmp's Lock/RLock (_lock.pyx): taking it is an
 * acquire, giving it back a release, so the data it guards is seen whole. */
static inline uint32_t fastmp_load_acquire_u32(const volatile uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline int fastmp_cas_acquire_u32(volatile uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static inline uint32_t fastmp_xchg_release_u32(volatile uint32_t *p, uint32_t v) {
    return __atomic_exchange_n(p, v, __ATOMIC_RELEASE);
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
