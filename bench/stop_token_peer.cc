// The peer of bench_token.c: the same operations with C++20 std::stop_source / stop_token /
// stop_callback from libstdc++. Built only for the benchmark. Each function runs one timed batch
// and returns nanoseconds per operation.
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <new>
#include <stop_token>

namespace {

std::int64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Noop {
    void operator()() const noexcept {}
};

struct Count {
    long *n;
    void operator()() const noexcept { ++*n; }
};

// A source canceled when either of two parents is: a stop_source plus one callback per parent.
struct Linked {
    struct Forward {
        std::stop_source *child;
        void operator()() const noexcept { child->request_stop(); }
    };
    std::stop_source src;
    std::stop_callback<Forward> a, b;
    Linked(const std::stop_token &p1, const std::stop_token &p2)
        : a(p1, Forward{&src}), b(p2, Forward{&src})
    {
    }
};

volatile long sink;

} // namespace

extern "C" double peer_check_ns(long n)
{
    std::stop_source src;
    std::stop_token tok = src.get_token();
    long hits = 0;
    std::int64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        hits += tok.stop_requested();
    std::int64_t t1 = now_ns();
    sink = hits;
    return double(t1 - t0) / double(n);
}

extern "C" double peer_register_ns(long n)
{
    std::stop_source src;
    std::stop_token tok = src.get_token();
    std::int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        std::stop_callback<Noop> cb(tok, Noop{});
    }
    return double(now_ns() - t0) / double(n);
}

extern "C" double peer_source_ns(long n)
{
    std::int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        std::stop_source src;
        sink = src.stop_possible();
    }
    return double(now_ns() - t0) / double(n);
}

extern "C" double peer_linked_ns(long n)
{
    std::stop_source p1, p2;
    std::stop_token t1 = p1.get_token(), t2 = p2.get_token();
    std::int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        Linked l(t1, t2);
        sink = l.src.stop_requested();
    }
    return double(now_ns() - t0) / double(n);
}

// Time request_stop() alone with `ncb` callbacks registered; `reps` rounds; returns the total
// nanoseconds spent inside request_stop over all rounds (the caller divides).
extern "C" double peer_cancel_total_ns(long ncb, long reps, double clock_overhead_ns)
{
    using CB = std::stop_callback<Count>;
    void *mem = std::malloc(sizeof(CB) * std::size_t(ncb));
    CB *cbs = static_cast<CB *>(mem);
    long count = 0;
    double total = 0;
    for (long r = 0; r < reps; r++) {
        std::stop_source src;
        std::stop_token tok = src.get_token();
        for (long i = 0; i < ncb; i++)
            new (&cbs[i]) CB(tok, Count{&count});
        std::int64_t t0 = now_ns();
        src.request_stop();
        std::int64_t t1 = now_ns();
        total += double(t1 - t0) - clock_overhead_ns;
        for (long i = 0; i < ncb; i++)
            cbs[i].~CB();
    }
    std::free(mem);
    if (count != ncb * reps)
        std::abort();
    return total;
}
