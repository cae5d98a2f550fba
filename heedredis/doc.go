// Package heedredis keeps heed's per-key state in Redis, so a fleet of
// instances shares one rate limit, one adaptive pace, one retry budget and
// one circuit breaker per key instead of each knowing a fraction of the
// truth: 20 instances each pacing to a 100 req/s API would overrun it 20
// times.
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
// claim after the open time.
//
// # When Redis fails
//
// Every Redis call is bounded by Config.Timeout (50 ms); the client must
// honour context deadlines (go-redis's ContextTimeoutEnabled, which New
// checks). When Redis is down, slow or answers garbage, the key falls back
// to its local state (a local limit of FallbackShare of the shared one, a
// local budget, the instance's own pace and breaker), the
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
