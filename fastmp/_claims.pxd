# Declarations of _claims.h (role claims, holder liveness, fork generation):
# cimport-only, there is no _claims module.  See the header for the protocol.

from libc.stdint cimport uint64_t

cdef extern from "_claims.h" nogil:
    uint64_t FASTMP_CLAIM_CLOSED

    uint64_t fastmp_claim_load(const uint64_t* word)
    uint64_t fastmp_claim_peek(const uint64_t* word)
    bint fastmp_claim_cas(uint64_t* word, uint64_t expected, uint64_t desired)
    uint64_t fastmp_claim_me()
    bint fastmp_claim_holder_alive(uint64_t claim)
    bint fastmp_claim_take(uint64_t* word, uint64_t me, uint64_t* holder)
    bint fastmp_claim_close(uint64_t* word, uint64_t mine)

    ctypedef struct fastmp_peer_watch:
        uint64_t dead
        double next_check
    bint fastmp_peer_gone(const uint64_t* word, fastmp_peer_watch* w, double now,
                          double interval)

    int fastmp_claim_watch_forks()          # once per module, at import
    unsigned int fastmp_claim_fork_gen()
    unsigned long fastmp_claim_thread()

    ctypedef struct fastmp_role:
        uint64_t claim
        unsigned long thread
        unsigned int forkgen
    bint fastmp_role_held(const fastmp_role* r, const uint64_t* word)
    bint fastmp_role_claim(fastmp_role* r, uint64_t* word, uint64_t* holder)
    bint fastmp_role_close(fastmp_role* r, uint64_t* word)


# "process P, thread T" for a claim word (in error messages).
cdef inline str describe_claim(uint64_t claim):
    return f"process {claim >> 32}, thread {claim & 0xffffffff}"


# The RuntimeError for a caller refused a role that `holder` holds: "this
# {owner}'s {role} is process P, thread T, which is still running: {rule}
# (this is <the caller>)".
cdef inline object role_taken_error(str owner, str role, uint64_t holder, str rule):
    return RuntimeError(
        f"this {owner}'s {role} is {describe_claim(holder)}, which is still running: "
        f"{rule} (this is {describe_claim(fastmp_claim_me())})")
