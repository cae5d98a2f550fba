// Package brooker re-implements the contention model behind M. Brooker's
// "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015), the
// simulator whose charts show full jitter doing far less work than plain
// exponential backoff.
//
// The model is the one of the simulator published with the post: N clients
// start at t = 0 and each updates one database row once with optimistic concurrency
// control (read the version, then a conditional write carrying it). The
// server answers every message instantly; contention comes only from
// version conflicts. Each of an attempt's four network legs is delayed by
// |Normal(10, 2)| ms. After a failed write a client bumps its attempt
// counter, then sleeps for the backoff before re-reading (the sleep is added
// to the next read request's delay). Work is the number of conditional
// writes the server handled; time is the makespan, the time of the last
// event of a discrete-event simulation driven by a min-heap on time, in ms.
//
// The five reference strategies carry the simulator's names: None,
// Exponential, FullJitter, EqualJitter and Decorr, with base 5 ms and cap
// 2 s. Their sleeps come from heed's own [backoff] package, called with
// the model's attempt counter (1 at the first retry), so Exponential sleeps
// 10, 20, 40, … ms as the model does.
//
// Two heed variants sit beside them, to show what heed itself would do in
// the same storm:
//
//   - heed-defaults: every client is its own heed client with heed's
//     defaults: its default backoff (full jitter, 500 ms to 30 s, with
//     heed's own retry numbering, so the first retry draws under 500 ms) and
//     at most [heed.Policy.MaxAttempts] writes (6), after which the client gives
//     up. Each client's own retry budget never binds for one call, so it is
//     not modelled.
//   - heed-budget: full jitter 5 ms / 2 s as FullJitter, but all N clients
//     share ONE [budget.Ratio] retry budget with the zero [budget.RatioConfig] (heed's default), as
//     the callers of one shared heed client would. Every client's first
//     attempt is a Request; every retry must first Withdraw at the
//     simulation's virtual time, and a refused retry means the client gives
//     up.
//
// Given-up clients are reported per run in [Point.GaveUp].
//
// All randomness of a run comes from one math/rand/v2 PCG generator shared
// by the network and the backoffs, seeded from (seed, strategy, N, run
// index), so a seed reproduces every number byte for byte whatever the
// order or parallelism of the runs.
package brooker
