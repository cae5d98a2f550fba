// Package audit measures, at a server, the retry fan-out of the stack in
// front of it: how many requests arrive for every call a client started,
// and which retrying layer made them.
//
// Every layer of a stack may retry: the SDK, the service mesh, the load
// balancer, your own code. Each is reasonable alone; together they
// multiply, and a service failing half its requests behind a client making
// 3 attempts and a mesh making 2 may receive up to 6 requests per call.
// The total fan-out across all layers should be bounded, and the first
// step is to see it. Retrying layers mark their attempts in request
// headers; the [Auditor] reads every marker it knows, per caller class:
//
//	layer  header                       first attempt   a retry
//	heed   Heed-Attempt                 absent          N (2, 3, ...)
//	envoy  x-envoy-attempt-count        1               N
//	grpc   grpc-previous-rpc-attempts   absent or 0     N-1 (attempts before)
//	aws    amz-sdk-request              attempt=1; ...  attempt=N; max=M
//
// and [Config.Markers] adds layers of your own that can put an attempt
// number in a header.
//
//	a := audit.New(audit.Config{Class: callerOf})
//	http.ListenAndServe(addr, a.Middleware(mux))
//	...
//	s := a.Snapshot() // per class: requests, first attempts, fan-out, per layer
//
// The middleware changes nothing about the request; recording one that
// carries no marker costs no allocation: a header lookup per layer, a
// read of the clock and an atomic add.
//
// # What fan-out means across layers
//
// Layers nest: each attempt of an outer layer (heed in the client) passes
// through the inner ones (Envoy), which retry it in turn. The requests one
// call makes form a tree, and each request reaching the server carries
// one marker per layer it went through, giving its attempt number at that
// layer. A request whose markers all say "first" (absent, or attempt 1)
// is the first leaf of a tree: exactly one per call, however many layers
// retry. So
//
//	FanOut = Requests / First
//
// is the number of requests per call, the stack's real amplification,
// without knowing how the layers nest or how many there are. A request
// one marker calls a retry counts in that layer's Retries; two or more at
// once (heed's attempt 2, Envoy's attempt 2 under it) count in Compound,
// the retry of a retry that shows the layers multiply.
//
// Per layer, Factor = Requests / (Requests - the layer's Retries): all the
// requests, over those sent under the layer's first attempts, which are
// about what would have arrived had that layer not retried. It is the
// layer's own multiplication: for Envoy behind heed, its attempts per heed
// attempt; for heed, its attempts per call. When the layers fail
// independently the factors multiply to the FanOut; when failures persist
// (a later heed attempt meets more Envoy retries than the first) they do
// not, and FanOut, which needs no assumption, is the figure to trust.
//
// A request's position is the product of its attempt numbers (1 for a layer
// without a marker). It is not the request's rank in its call: that would
// need the attempts of the earlier branches, which this request does not
// carry (Envoy's count starts again at 1 under every heed attempt, so heed
// attempt 3, Envoy attempt 2 may be the call's 4th request or its 6th).
// It is a bound: layers that made a request at attempts 3 and 2 allow at
// least 3 and 2 attempts, so the stack lets one call make at least 3 x 2 =
// 6 requests. MaxPosition, the highest seen, is the worst case the stack
// has shown; with MaxAttempt per layer (3 and 2: a bound of 6 too, and
// higher when the maxima were reached on different requests) it says how
// bad a call can get, where FanOut says how bad calls are on average.
//
// # What one request cannot tell
//
//   - Layers that mark nothing. A load balancer, an SDK or a loop of your
//     own that retries without a marker is invisible: above the marked
//     layers, its retries look like new calls (more First, the same
//     FanOut); below one, like the same attempt again (Heed-Attempt: 2
//     twice). Give such layers a marker ([Marker]) or make them stop.
//   - Markers that describe another hop. Envoy sets its count on the
//     request it sends, replacing the one it received, so behind two
//     Envoys that both set it only the nearest is seen (Istio's inbound
//     sidecar does not set it: the count of the caller's outbound sidecar,
//     the one that retries, arrives). A service that copies its incoming
//     headers onto its outgoing requests forwards its caller's markers to
//     the next tier, where they mean nothing. Markers must not be
//     forwarded.
//   - Hedges. A hedged copy carries the marker of the attempt it copies
//     (none for a copy of a first attempt), so heed's hedges count as
//     first attempts or repeated positions; gRPC's hedged attempts do
//     count as retries.
//   - Where the other requests went. A retry often lands on another
//     replica than the attempt before it (the balancer picks again), so
//     one instance's counts are not its own fan-out: sum Requests and
//     First over every instance of the service before dividing.
//   - Calls in progress. A window's edges cut through trees: the first
//     attempt of a call may fall in one window and its retries in the
//     next. Over a window much longer than a call this does not matter.
//   - How many attempts a layer allows, except the AWS SDKs', which say
//     (MaxDeclared): MaxAttempt is only the highest number seen.
//
// Malformed markers (not a number, 0, negative, above [MaxAttempt],
// repeated, or an amz-sdk-request without a valid attempt) are counted per
// layer and otherwise ignored: the request is classified by its other
// markers, and no value a caller sends can raise a maximum past
// MaxAttempt or make a count grow by more than one per request.
//
// # Classes and the window
//
// The caller class comes from [Config.Class] (by default every request is
// in [DefaultClass]); at most [Config.MaxClasses] names are kept and the
// rest count in [OtherClass], so the classes can be metric labels. A
// [Snapshot] gives each class's counts over the sliding window
// ([Config.Window], 5 minutes by default, read on [Config.Clock]) and in
// total since [New]: the totals only grow, and are what a Prometheus
// collector exports as counters.
package audit
