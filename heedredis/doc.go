// Package heedredis keeps heed's per-key state in Redis, so a fleet of
// instances shares one rate limit, one adaptive pace, one retry budget and
// one circuit breaker per key instead of each knowing a fraction of the
// truth: 20 instances each pacing to a 100 req/s API would overrun it 20
// times. On the server's side it keeps the state of heed's rate-limiting
// middleware ([Store.RateLimitStore]), so a fleet of servers enforces one
// limit per client.
//
// It is a module of its own (redis/go-redis v9), which heed's core does
// not import. A [Store] works on any redis.UniversalClient: a single
// server, Sentinel or Cluster.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"redis:6379"},
//		ContextTimeoutEnabled: true, // required: heedredis bounds every call by its context
//	})
//	store, err := heedredis.New(rdb, heedredis.Config{FallbackShare: 1.0 / 20})
//	limits, err := store.KeyLimits(100, 10)             // the API's documented limit, for the fleet
//	budgets, err := store.Budgets(budget.RatioConfig{}) // heed's default budget, for the fleet
//	t, err := heed.New(heed.WithKeyLimits(limits), heed.WithRetryBudget(budgets),
//		heed.WithBreakerFleet(store.BreakerFleets()))   // one breaker per key for the fleet
//
// For an API whose limit is not documented, store.KeyPacing() shares the
// pace heed learns from 429s and rate-limit fields instead.
//
// # The rate limit
//
// A GCRA token bucket per key, evaluated atomically in Redis by a Lua
// script on Redis's own clock (the instances' clocks need not agree). An
// instance leases Config.Lease slots (8) per round trip and hands them out
// locally, so a busy instance calls Redis once per 8 requests; callers
// arriving while a lease is in flight wait for it rather than lease more.
// A leased slot is used at its time, or up to MaxStale (100 ms) later, and
// dropped after that. How far the fleet can overshoot: a slot used late
// lets a request go up to MaxStale after its turn, so in any window the
// fleet sends at most the limit plus the slots leased in the MaxStale
// before it, which is at most the burst plus rate x MaxStale; it never
// sends more than the limit over a window longer than MaxStale.
// The limit is kept on Redis's clock (its wall clock): while NTP slews it,
// it may run up to 0.05% fast or slow against the instances' own clocks,
// and the fleet's rate with it (tens of parts per million are common).
//
// # The server's rate limit
//
// [Store.RateLimitStore] is a ratelimit.Store for the middleware in
// heed's ratelimit package: with it, a fleet of servers enforces one limit
// per client key, not one per instance.
//
//	store, err := heedredis.New(rdb, heedredis.Config{FallbackShare: 1.0 / 20}) // 20 instances
//	l, err := ratelimit.New(ratelimit.Config{
//		Windows: []ratelimit.Window{{Limit: 100, Per: time.Second, Burst: 20}},
//		Key:     ratelimit.ByHeader("X-Api-Key"),
//		Store:   store.RateLimitStore("api"), // one per Limiter; the name keeps Limiters apart
//	})
//
// Every request is decided in Redis by one Lua script (EVALSHA, one round
// trip) on Redis's clock, as ratelimit.MemoryStore decides it: every
// window of the key at once (admitted only if all admit; a refusal takes
// nothing), the schedule of promised return slots (Spread) and the
// reservations of MaxDelay, with the same results (a test compares the
// two decision by decision). Nothing is leased: each decision is the
// fleet's. A key's state is one string, Prefix:{client key}:ratelimit (or
// ratelimit:name), which expires a second after its windows are full
// again and its promises have passed.
//
// How far the fleet can overshoot: with Redis up, not at all on Redis's
// clock, where the fleet admits exactly what one GCRA admits. The
// instances see the decisions a round trip late, so over a span measured
// on their clocks they may count a request or two more than the limit
// allows (those decided at its ends); a reserved slot and a Retry-After
// are counted from the reply, so a request is never served, nor told to
// come back, before its time. Four instances offered ten times a limit of
// 200 a second for a minute by 100 clients admitted what the limit allows
// to within 0.03% in every run (12,015 to 12,019 where it allows 12,018 or
// 12,019), two busy loops beside them or not.
//
// While Redis fails, the overshoot is the fallback's. A call that fails or
// takes longer than Config.Timeout puts the whole RateLimitStore (every
// client key: there are many, and a fault says nothing of one key) on a
// local ratelimit.MemoryStore for Config.Retry, whose windows keep
// FallbackShare of each window's rate and burst; after Retry one request
// at a time asks Redis while the others keep deciding locally, and the
// first that Redis answers brings the store back. OnFault and OnRecover
// are told the store's kind (ratelimit or ratelimit:name), never a client
// key. An instance that falls back alone (a pause of its own longer than
// the timeout, say) admits its share (its share of the burst at once,
// then of the rate) while the others go on using the whole limit in
// Redis: the fleet admits up to FallbackShare more than the limit for
// Retry. Measured: with the default 50 ms timeout on a loaded 2-vCPU
// machine, where a few decisions a minute waited longer than that for a
// CPU, two to eight faults a minute put the four instances 0.7% to
// 0.9% over the limit; a Timeout longer than the machine's stalls avoids
// such faults. A fleet that falls back together admits the limit if
// FallbackShare is 1/N, and N times it with the default of 1. Back on
// Redis, the keys carry on from their state there (full, if Redis lost
// it). With FailClosed the store refuses instead, telling clients to come
// back after Retry. Take returns an error (and the middleware lets the
// request through) only for windows it cannot serve, never for a Redis
// fault.
//
// The cost is a round trip to Redis per request that is not exempt: on
// loopback on a shared 2-vCPU machine 50-80 µs a decision (as long as
// go-redis/redis_rate's simpler GCRA there), 18 allocations of which 10
// are go-redis's own, and 12-22 µs of Redis's time for one window, 28-32
// for three.
//
// # The adaptive pace
//
// Each instance's pacer learns a pace from what the server says, as
// without Redis, and publishes it ([Pace]); the pace last published is the
// fleet's, and while any instance paces, every instance takes its slots
// from one schedule in Redis at that pace (one slot per round trip, since
// the pace changes often). A 429 seen by one instance lowers the pace of
// all; an instance that starts pacing joins the fleet's pace rather than
// starting over; the fleet stops pacing when no instance has published a
// pace for PaceTTL (10 s). Each instance reads the fleet's pace at most
// every 250 ms.
//
// # The circuit breaker
//
// Each instance keeps its breaker per key ([BreakerFleet], given to
// heed.WithBreakerFleet), joined to the fleet's: a trip anywhere is
// written to Redis at once and opens the key's breaker in every instance
// at its next call after it reads the state (at most every 250 ms); when
// the open time ends one instance at a time claims the half-open probe
// (SET NX for the open time), and its outcome, written at once, closes or
// reopens the breaker everywhere.
//
// # The retry budget
//
// Requests are counted in Redis in buckets of the window (Redis time),
// sent from each instance in batches: with its next retry and every
// second. A retry asks Redis each time (retries are rare, and wait for
// their backoff anyway) and is granted while the fleet's retries stay
// within Percent of the fleet's requests plus MinPerSecond. An instance's
// view of the others' requests is therefore up to a second old.
//
// # Keys
//
// Every Redis key is Prefix:{key}:kind, the heed key (the host, by
// default) in a hash tag so all keys of one heed key live in one Cluster
// slot and each script touches a single slot. Keys expire: the limit a
// minute after its last slot, the budget after two windows, the pace after
// twice PaceTTL, the breaker a minute after its open time ends, the probe
// claim after the open time, a server's limit of a client key a second
// after it holds nothing a new key would not.
//
// # When Redis fails
//
// Every Redis call is bounded by Config.Timeout (50 ms); the client must
// honour context deadlines (go-redis's ContextTimeoutEnabled, which New
// checks). When Redis is down, slow or answers garbage, the key falls back
// to its local state (a local limit of FallbackShare of the shared one, a
// local budget, the instance's own pace and breaker; a server's limit
// falls back as a whole, see above), the
// fault is reported once (OnFault, Logger), and for Config.Retry (1 s) no
// request asks Redis again; then the next one does, and the key is back
// on shared state (OnRecover). No request waits on Redis longer than the
// timeout, nothing fails because of Redis, and nothing panics. With
// FailClosed the key refuses instead (heed returns ErrThrottled).
//
// # The outbox
//
// [Outbox] is an outbox.Store for heed.WithOutbox that a fleet shares:
// failed writes queued by any instance are replayed by any instance's
// heed.Policy.Replay. Entries are handed out through a Redis Stream's
// consumer group, which leases each to one worker; a worker that dies
// holding entries loses them to another worker after OutboxConfig.Lease.
// Unlike the state above, the outbox does not fall back when Redis fails:
// a write that cannot be stored ends with its failure, so the caller
// knows it was not kept.
package heedredis
