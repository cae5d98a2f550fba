// Package hint parses what a server says about when to come back: the
// Retry-After field and the rate-limit fields of an HTTP response.
//
// [RetryAfter] and [ParseRetryAfter] read Retry-After (RFC 9110 §10.2.3) as
// delta-seconds or as an HTTP-date in any of its three forms. [RateLimit]
// reads the IETF RateLimit and RateLimit-Policy fields
// (draft-ietf-httpapi-ratelimit-headers, every form the drafts have used)
// and, failing those, the de facto X-RateLimit-* and X-Rate-Limit-* fields.
//
// # Hostile values
//
// Header values come from the network, so every input has a defined result:
// nothing here panics, and no duration is negative or longer than
// [MaxDelay]. Values too large to represent saturate (to [MaxDelay] for
// durations, to math.MaxInt64 for counts) rather than overflow; a time in
// the past means "now" (a zero wait); anything malformed is ignored, as if
// the server had not sent it. The parsers accept a little more than the
// specifications where real servers are known to deviate, such as fractional
// seconds in Retry-After, and document each such case.
//
// # Epoch or delta
//
// X-RateLimit-Reset is sent as seconds to wait by some servers and as a Unix
// time by others, in seconds or milliseconds. [RateLimit] tells them apart
// by magnitude: below 1e9 (31 years) it is a delay in seconds, below 1e12 a
// Unix time in seconds, and from 1e12 on a Unix time in milliseconds.
//
// # Header keys
//
// Lookups use canonical keys, such as "Retry-After" and
// "X-Ratelimit-Remaining", which is what net/http produces for received
// responses and what [net/http.Header.Set] and [net/http.Header.Add] store.
// A key written into the map directly in another case, as in
// h["retry-after"], is not seen.
//
// The common paths (delta-seconds Retry-After, integer X-RateLimit-* fields
// and a plain RateLimit field) do not allocate.
package hint
