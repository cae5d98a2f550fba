// Package heedtest helps test code that talks to HTTP servers which fail,
// throttle and ask clients to come back later: the Go answer to Python's
// responses and respx.
//
// It offers four tools.
//
//   - [Server] is a real HTTP/1.1 server on loopback (127.0.0.1) that plays
//     a script of [Step] values, one per request: a status with headers and
//     a body, a delay, a connection that hangs, a TCP reset, a truncated or
//     chunked body, or a handler of your own. It records every request it
//     receives, so a test can check what the client sent, attempt by
//     attempt.
//   - [Transport] is an in-memory [net/http.RoundTripper] that plays the same
//     kind of script with no network at all, so it also works inside
//     [testing/synctest] bubbles.
//   - [FaultServer] fails below HTTP semantics, on loopback too: a refused
//     or closed connection, a reset before or after the answer's header, a
//     truncated, slow or trickled answer, a malformed status line or header,
//     a storm of 1xx responses, a certificate nobody trusts, and HTTP/2's
//     REFUSED_STREAM and GOAWAY. It plays a script of [Fault] values and
//     records, per request, whether it read it whole and so would have
//     acted on it: what a test of retries must count.
//   - [Clock] is a fake [github.com/heed-go/heed/clock.Clock] whose time
//     moves only when the test says so. Give it to heed and to a Server or
//     Transport (see [DelayOn]) and retry waits of minutes take no real
//     time.
//
// The i-th request gets the i-th step. Once the script is used up the last
// step repeats, so a script ending in [OK] keeps answering 200; an empty
// script answers 200 with an empty body to every request.
//
// A test that checks a client retries a 503 until it succeeds:
//
//	srv := heedtest.NewServer(t, []heedtest.Step{
//		heedtest.RetryAfter(503, 2),
//		heedtest.Status(502),
//		heedtest.OK(`{"ok":true}`),
//	})
//	resp, err := client.Get(srv.URL + "/items")
//	// ... check resp, then what the server saw:
//	if got := srv.Count(); got != 3 {
//		t.Errorf("server got %d requests, want 3", got)
//	}
//
// The same script without a network:
//
//	tr := heedtest.NewTransport(steps)
//	client := &http.Client{Transport: tr}
package heedtest
