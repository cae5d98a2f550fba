// Package shed is load-shedding middleware: it keeps a server's latency
// when more requests come than it can serve, by answering the excess at
// once with 503 Service Unavailable and Retry-After instead of letting
// them queue.
//
// A server past its capacity does not slow down gracefully. Every request
// it accepts waits behind the ones before it, its latency grows without
// bound, its callers time out and retry, and it ends up spending all its
// work on answers nobody waits for any more: goodput collapses while the
// server is busiest. Refusing a request costs about a microsecond; refusing
// the excess early keeps the rest served at the latency of an idle server.
//
//	s, err := shed.New(shed.Config{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	http.ListenAndServe(addr, tier.Middleware(s.Handler(mux)))
//
// A [Shedder] runs at most a limit of requests at once in the handlers it
// wraps. It learns the limit from their latency (see [Config]): the limit
// grows while latency stays near the handler's latency without a queue and
// is cut when a queue builds inside the handler. Requests past the limit
// wait in a short queue managed like CoDel, so a burst is served a little
// late rather than refused, and a standing queue does not become a second
// source of latency. No configuration is needed: no capacity to measure,
// no rate to keep up to date as the server, its dependencies or its
// traffic change.
//
// # Who is shed first
//
// Retries are shed before first attempts: a request [Attempt] reads as a
// retry (heed's Heed-Attempt, Envoy's x-envoy-attempt-count, gRPC's
// grpc-previous-rpc-attempts, the AWS SDKs' amz-sdk-request) may use only
// part of the limit. So are requests Config.Priority marks [Sheddable];
// those it marks [Critical] are shed last. heed's cross-tier protocol
// (docs/protocol.md) has no field for a request's priority, so only the
// server, through Config.Priority, decides it.
//
// A request whose caller's deadline has passed (its Heed-Timeout says no
// time is left, or its context ended) is not started, since nobody waits
// for its answer; nor is one whose deadline passes while it waits in the
// queue.
//
// # The shed response
//
// A shed request gets 503 with a problem-details body (RFC 9457,
// application/problem+json) of type [ProblemOverloaded], Retry-After in
// whole seconds (Config.RetryAfter, spread by Config.RetryAfterJitter so
// that the clients shed together do not return together) and
// Cache-Control: no-store. Nothing of the request was done, so it is safe
// to send again after Retry-After, to this server or another, even when it
// is not idempotent. A heed client retries it by its decision table, after
// the Retry-After, and its adaptive pacing slows down for the server.
//
// A request not started for its deadline gets 503 with a body of type
// [ProblemDeadline], and no Retry-After when its deadline had passed on
// arrival: its caller will not come back for it, and the server may not be
// overloaded at all. 503 rather than 504: 504 says a gateway timed out
// waiting for an upstream that may have done the work; here nothing was
// started.
//
// A shed response never carries Heed-Retried. That mark tells a heed client
// that a tier below already retried a failure of its own dependency, and
// makes every caller above give up. A shed is the opposite case: nothing
// below failed, this server is busy, and the client, the tier closest to
// the failure, is the one that should retry.
//
// # Where to put it
//
// Inside tier.Middleware, as above: tier sets the caller's Heed-Timeout as
// the request's deadline when the request arrives, so the time it waits in
// the shedder's queue counts against it, and the handler's own heed calls
// are bounded by it. (The shedder reads Heed-Timeout itself too, and works
// alone.)
//
// One Shedder per pool of capacity: the handlers that share CPUs, a
// database pool or a downstream share its limit. Handlers whose time is
// not work (long polls, server-sent events, WebSockets) do not belong
// behind it: their latency says nothing of the server's capacity.
//
// # Events
//
// With Config.Hooks set, the shedder reports [heed.EventAdmitted] for every
// request it lets through (Wait is the time it waited in the queue) and
// [heed.EventShed] for every request it refuses: Status 503, Wait the
// Retry-After it was told, Attempt its attempt number, Reason why
// ([ErrOverloaded], [ErrQueueTimeout] or [ErrDeadline]), Err set when its
// deadline had passed, Duration the time from its arrival to the refusal.
// Key is Config.Class's name for the request ("default" without one),
// Method and URL the request's, the URL's query values redacted. Without
// hooks, no event is made.
package shed
