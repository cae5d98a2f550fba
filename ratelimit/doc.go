// Package ratelimit is rate-limiting middleware for Go servers that tells
// clients what they need to behave: the quota on every response, and on a
// refusal a Retry-After that spreads the clients refused together instead
// of sending them all back at the same instant.
//
//	l, err := ratelimit.New(ratelimit.Config{
//		Windows: []ratelimit.Window{
//			{Limit: 100, Per: time.Second, Burst: 10},
//			{Limit: 100_000, Per: 24 * time.Hour, Burst: 1_000},
//		},
//		Key: ratelimit.ByHeader("X-Api-Key"),
//	})
//	...
//	http.ListenAndServe(addr, l.Handler(mux))
//
// # Limits
//
// Each client key (see [ByRemoteAddr], [ByHeader], or any function of the
// request) has one GCRA bucket per [Window]: Limit requests per Per, Burst
// at once. A request is admitted only if every window admits it, and a
// refused request takes nothing from any window, so a client that keeps
// retrying too early does not lock itself out for longer. The state lives
// in a [Store]: a sharded [MemoryStore] by default, which forgets idle
// keys and holds at most MaxKeys; a store in Redis makes the limit a
// fleet's.
//
// # The fields
//
// Every response that went through the limiter, admitted or refused,
// carries the quota in the IETF fields of draft-ietf-httpapi-ratelimit-headers
// (drafts -08 to -10, whose syntax heed's hint package reads):
//
//	RateLimit-Policy: "second";q=100;w=1, "day";q=100000;w=86400
//	RateLimit: "second";r=9;t=1
//
// RateLimit-Policy lists every window: q is Limit, w is Per in seconds, so
// q/w is the sustained rate. RateLimit reports the most constraining
// window: the fewest remaining, then the latest reset, the rule by which
// heed's client picks among several. r is the requests the bucket would
// admit at once now (at most Burst), t the seconds, rounded up, until the
// bucket is full again: the time the quota is restored, as hint reads t.
// With Config.LegacyHeaders, X-RateLimit-Limit, -Remaining and -Reset
// (seconds from now) say the same of the same window.
//
// A refusal is a 429 with Retry-After in delta-seconds and, by default, an
// RFC 9457 problem details body ([WriteProblem]); Config.OnLimited may
// write another.
//
// # Spreading refusals
//
// A server that tells every client refused in the same instant the same
// Retry-After gets them all back in the same instant, where the bucket
// admits a burst and refuses the rest again: at 100 requests a second with
// a burst of 10, fifty clients refused together and told "1" come back
// together, and forty are refused again, then thirty, and so on.
//
// So the store keeps, per key, a schedule of promised return slots, spaced
// by the emission interval (Per/Limit) from the earliest time a request
// would conform, and each refusal takes the next slot (see [Spread]). A
// promise takes nothing from the bucket, and a newcomer may still be
// admitted ahead of a promised client; but later refusals queue behind it,
// and promises expire once their time has passed. The schedule reaches at
// most Config.SpreadHorizon ahead, so clients that ignore Retry-After
// cannot push it ever further out.
//
// Retry-After counts whole seconds, so slots a hundredth of a second apart
// would collapse into the same second. Two answers:
//
//   - By default each slot is rounded up to a whole second after the
//     refusal, and no second is promised to more clients than the bucket
//     can absorb at that instant (its burst, plus what refills by then,
//     less what earlier promises take): the fifty clients above are told
//     1, 1, ..., 2, ..., 5 seconds, ten a second, and none is refused
//     again. The cost is time: the limit could have served them all within
//     half a second, and at a low rate, or a small burst, whole seconds
//     leave much of it unused.
//   - With Config.HoldRefusals, slots fall anywhere, and the 429 is held
//     back by the slot's fraction of a second (at most Config.MaxHold)
//     before it is written with the whole seconds that remain, so that
//     "now + Retry-After" on the client's side lands on the slot itself:
//     the fifty come back 10 ms apart, within half a second, and none is
//     refused again. The cost is a goroutine and a connection held per
//     refusal for under MaxHold, and a client told "Retry-After: 0" for a
//     slot within the hold.
//
// Either way the spread holds only for clients that come back when told;
// heed's client does, and adds its own jitter on top.
//
// # Delaying instead of refusing
//
// With Config.MaxDelay, as nginx's limit_req with a burst queue, a request
// that would conform within MaxDelay is not refused at all: its slot is
// reserved in the bucket at once (later requests queue behind it), the
// request waits for it, and is served then. The fifty clients above are
// served 10 ms apart with no refusal and no second attempt. Only requests
// whose slot lies beyond MaxDelay, or that come while Config.MaxWaiting
// requests already wait, are refused, as above. The cost is a goroutine
// and a connection held per waiting request, for at most MaxDelay; a
// client that gives up while waiting does not get its slot back for
// others (see Config.MaxDelay).
//
// # Events
//
// With Config.Hooks, each request that is not exempt gives one
// heed.EventAdmitted (before the handler runs, so without a Status; with
// Err when the store failed and the request was let through; for a
// request delayed to its slot, when the slot is reserved, with Wait the
// delay) or one
// heed.EventLimited (Status 429, Wait the Retry-After told, RetryAt the
// slot). Their Key is the request's class (Config.Class), a bounded label,
// never the client key; their URL has its query values redacted. heedprom
// counts them by class and kind.
package ratelimit
