package heedtest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heed-go/heed/heedtest"
)

// h2Client speaks HTTP/2 with prior knowledge, as net/http does when its
// Protocols allow only unencrypted HTTP/2.
func h2Client(t *testing.T) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// read returns the response's status and body and the error that ended
// the read.
func read(resp *http.Response) (int, string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestFaultServerAnswersAndRecords(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{
		{Status: 201, Header: http.Header{"X-Kind": {"first"}}, Body: "one"},
		{Body: "two"},
	})
	tr := &http.Transport{} // keeps the connection: both requests share it
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	req := must(http.NewRequest(http.MethodPost, srv.URL+"/items?x=1", strings.NewReader(`{"a":1}`)))
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := read(resp); code != 201 || body != "one" || err != nil || resp.Header.Get("X-Kind") != "first" {
		t.Fatalf("first answer: %d %q %v %v", code, body, err, resp.Header)
	}
	resp, err = c.Get(srv.URL + "/again")
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := read(resp); code != 200 || body != "two" {
		t.Fatalf("second answer: %d %q", code, body)
	}
	if n := srv.Conns(); n != 1 {
		t.Errorf("%d connections, want 1 kept alive", n)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || srv.Count() != 2 || srv.Effects() != 2 {
		t.Fatalf("recorded %d, Count %d, Effects %d, want 2", len(reqs), srv.Count(), srv.Effects())
	}
	r := reqs[0]
	if r.Method != "POST" || r.URL != "/items?x=1" || r.Proto != "HTTP/1.1" || string(r.Body) != `{"a":1}` ||
		!r.Complete || !r.Effect || r.IdempotencyKey != "k1" || r.Entry != 0 || r.Kind != heedtest.Answer {
		t.Errorf("first request recorded as %+v", r)
	}
	if r := reqs[1]; r.Method != "GET" || r.Entry != 1 || r.IdempotencyKey != "" || len(r.Body) != 0 {
		t.Errorf("second request recorded as %+v", r)
	}
	reqs[0].Body[0] = '!'
	if again := srv.Requests(); string(again[0].Body) != `{"a":1}` {
		t.Error("changing the result of Requests changed the record")
	}
}

func TestFaultServerRefused(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.Refused}, {Kind: heedtest.Refused}, {Body: "up"}})
	c := freshClient(t)
	for range 2 {
		if _, err := c.Get(srv.URL); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("err = %v, want ECONNREFUSED", err)
		}
	}
	if srv.Conns() != 0 || srv.Count() != 0 {
		t.Fatalf("a refused connection reached the server: %d connections", srv.Conns())
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("second Listen: %v", err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := read(resp); body != "up" || srv.Requests()[0].Entry != 2 {
		t.Errorf("after Listen: %q from entry %d, want the entry after the Refused ones", body, srv.Requests()[0].Entry)
	}
}

func TestFaultServerRefusedOnlyLeads(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "may only lead") {
			t.Errorf("recovered %v, want a panic saying Refused may only lead", r)
		}
	}()
	heedtest.NewFaultServer(nil, []heedtest.Fault{{}, {Kind: heedtest.Refused}})
}

func TestFaultServerAcceptClose(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.AcceptClose}, {Body: "fine"}})
	c := freshClient(t)
	if _, err := c.Get(srv.URL); err == nil {
		t.Fatal("no error from a connection closed unread")
	}
	if srv.Count() != 0 || srv.Conns() != 1 {
		t.Fatalf("%d requests read on %d connections, want 0 on 1", srv.Count(), srv.Conns())
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := read(resp); body != "fine" {
		t.Errorf("next answer %q", body)
	}
}

func TestFaultServerResets(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{
		{Kind: heedtest.ResetAfterRequest},
		{Kind: heedtest.ResetAfterHeaders, Status: 202, Body: "never sent"},
	})
	c := freshClient(t)
	_, err := c.Post(srv.URL, "text/plain", strings.NewReader("order"))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset after the request: err = %v, want ECONNRESET", err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("reset after the headers: %v", err)
	}
	code, body, err := read(resp)
	if code != 202 || resp.ContentLength != int64(len("never sent")) || body != "" || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reset after the headers: %d, length %d, %q, %v; want 202 promising the body, then ECONNRESET", code, resp.ContentLength, body, err)
	}
	if srv.Effects() != 2 {
		t.Errorf("%d effects, want both requests read", srv.Effects())
	}
}

func TestFaultServerTruncateBody(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.TruncateBody, Body: "0123456789"}})
	resp, err := freshClient(t).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := read(resp); code != 200 || body != "01234" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %d %q %v, want 200, half the body, then io.ErrUnexpectedEOF", code, body, err)
	}
	// HEAD has no body to cut: its answer is whole.
	resp, err = freshClient(t).Head(srv.URL)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 10 {
		t.Errorf("HEAD: %v %v", resp, err)
	}
}

func TestFaultServerSlowHeaders(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{
		{Kind: heedtest.SlowHeaders, Body: "late"}, // a minute: longer than anyone waits
		{Kind: heedtest.SlowHeaders, Body: "late", Delay: 50 * time.Millisecond},
	})
	c := freshClient(t)
	c.Timeout = 100 * time.Millisecond
	start := time.Now()
	if _, err := c.Get(srv.URL); err == nil {
		t.Fatal("an answer after a minute arrived within the client's timeout")
	}
	// The server notices the client hung up and stops waiting: Close
	// returns at once instead of after a minute.
	c.Timeout = 5 * time.Second
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := read(resp); body != "late" {
		t.Errorf("body %q", body)
	}
	srv.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if srv.Effects() != 2 {
		t.Errorf("%d effects, want 2: the request was read before the wait", srv.Effects())
	}
}

func TestFaultServerTrickleBody(t *testing.T) {
	noLeaks(t)
	const gap = 10 * time.Millisecond
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.TrickleBody, Body: "drip", Delay: gap}})
	start := time.Now()
	resp, err := freshClient(t).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	header := time.Since(start)
	if _, body, err := read(resp); body != "drip" || err != nil {
		t.Fatalf("got %q, %v", body, err)
	}
	if d := time.Since(start); d < 3*gap || d-header < 3*gap {
		t.Errorf("the body took %v after the header at %v, want at least %v", d-header, header, 3*gap)
	}
}

func TestFaultServerMalformed(t *testing.T) {
	noLeaks(t)
	for _, tc := range []struct {
		kind heedtest.FaultKind
		want string
	}{
		{heedtest.MalformedStatus, "malformed HTTP status code"},
		{heedtest.InvalidHeader, "malformed MIME header line"},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: tc.kind, Body: "x"}})
			_, err := freshClient(t).Get(srv.URL)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want net/http's %q", err, tc.want)
			}
			if srv.Effects() != 1 {
				t.Errorf("%d effects, want 1", srv.Effects())
			}
		})
	}
}

// net/http ignores interim responses it is not asked about, however many,
// up to its limit on header bytes (10 MB by default); it no longer stops
// after five of them.
func TestFaultServerEarlyHintsStorm(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.EarlyHintsStorm, Body: "final"}})
	hints := 0
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints {
				hints++
			}
			return nil
		},
	})
	resp, err := freshClient(t).Do(must(http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := read(resp); code != 200 || body != "final" || hints != 200 {
		t.Errorf("got %d %q after %d hints, want 200 %q after 200", code, body, hints, "final")
	}
	resp, err = freshClient(t).Get(srv.URL) // and without a trace
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := read(resp); code != 200 {
		t.Errorf("untraced: %d", code)
	}
}

func TestFaultServerUntrustedCertificate(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Body: "secret"}})
	if !strings.HasPrefix(srv.TLSURL, "https://127.0.0.1:") {
		t.Fatalf("TLSURL %q", srv.TLSURL)
	}
	_, err := freshClient(t).Get(srv.TLSURL)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
	}
	if srv.Count() != 0 {
		t.Fatal("a request arrived over a refused handshake")
	}
	// A client that does not check certificates gets the script.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.TLSURL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := read(resp); body != "secret" || resp.TLS == nil || srv.Requests()[0].URL != "/x" {
		t.Errorf("over TLS: %q, TLS %v", body, resp.TLS != nil)
	}
}

func TestFaultServerHTTP2(t *testing.T) {
	noLeaks(t)
	large := bytes.Repeat([]byte("0123456789abcdef"), 20<<10) // 320 KiB: past every flow-control window
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{
		{Status: 503, Header: http.Header{"Retry-After": {"7"}, "X-Multi": {"a", "b"}}, Body: "busy"},
		{Body: "ok"},
	})
	c := h2Client(t)
	req := must(http.NewRequest(http.MethodPut, srv.URL+"/big?v=2", bytes.NewReader(large)))
	req.Header.Set("Idempotency-Key", "key-1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := read(resp)
	if code != 503 || body != "busy" || err != nil || resp.ProtoMajor != 2 ||
		resp.Header.Get("Retry-After") != "7" || len(resp.Header.Values("X-Multi")) != 2 {
		t.Fatalf("got %d %q %v over %s, header %v", code, body, err, resp.Proto, resp.Header)
	}
	// The second request on the connection reads the header table the
	// first filled.
	req = must(http.NewRequest(http.MethodPut, srv.URL+"/big?v=2", strings.NewReader("small")))
	req.Header.Set("Idempotency-Key", "key-1")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := read(resp); code != 200 || body != "ok" {
		t.Fatalf("second: %d %q", code, body)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || srv.Conns() != 1 {
		t.Fatalf("%d requests on %d connections", len(reqs), srv.Conns())
	}
	for i, want := range [][]byte{large, []byte("small")} {
		r := reqs[i]
		if r.Proto != "HTTP/2.0" || r.Method != "PUT" || r.URL != "/big?v=2" || r.IdempotencyKey != "key-1" ||
			!bytes.Equal(r.Body, want) || !r.Complete || !r.Effect {
			t.Errorf("request %d: %s %s %s key %q, %d bytes, complete %v", i, r.Proto, r.Method, r.URL, r.IdempotencyKey, len(r.Body), r.Complete)
		}
	}
}

// net/http sends a refused stream again at once (and after 1 s, 2 s, ...
// if refused again): refusing only the first stream shows that retry.
func TestFaultServerRefusedStream(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.RefusedStream}, {Body: "second try"}})
	resp, err := h2Client(t).Post(srv.URL, "text/plain", strings.NewReader("order"))
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := read(resp); body != "second try" {
		t.Errorf("body %q", body)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || reqs[0].Effect || !reqs[1].Effect || srv.Effects() != 1 || srv.Conns() != 1 {
		t.Fatalf("recorded %+v on %d connections, want a refused stream and an answered one", reqs, srv.Conns())
	}
}

func TestFaultServerGoAway(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.GoAway}, {Body: "fine"}})
	c := h2Client(t)
	_, err := c.Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "GOAWAY") || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Fatalf("err = %v, want net/http's GOAWAY error", err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := read(resp); body != "fine" || srv.Conns() != 2 || srv.Effects() != 2 {
		t.Errorf("after GOAWAY: %q, %d connections, %d effects", body, srv.Conns(), srv.Effects())
	}
}

func TestFaultServerHTTP2ConnectionLost(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.ResetAfterRequest}})
	if _, err := h2Client(t).Get(srv.URL); err == nil {
		t.Fatal("no error from a reset connection")
	}
	if srv.Effects() != 1 {
		t.Errorf("%d effects, want 1", srv.Effects())
	}
}

func TestFaultServerCloseEndsEverything(t *testing.T) {
	noLeaks(t)
	srv := heedtest.NewFaultServer(t, []heedtest.Fault{{Kind: heedtest.TrickleBody, Body: strings.Repeat("x", 1000), Delay: time.Second}})
	resp, err := freshClient(t).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	srv.Close()
	srv.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a body trickling", d)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the body read on after Close")
	}
}

func TestFaultKindString(t *testing.T) {
	if got := heedtest.GoAway.String(); got != "goaway" {
		t.Errorf("GoAway = %q", got)
	}
	if got := heedtest.FaultKind(99).String(); got != "FaultKind(99)" {
		t.Errorf("FaultKind(99) = %q", got)
	}
}

// A server that reads a POST and then resets the connection, so the client
// cannot know whether the order was placed, and answers the next request.
// The record says the server read the order in full both times: sending a
// POST again is how orders are placed twice. In a test, pass t instead of
// nil and leave the closing to NewFaultServer.
func ExampleNewFaultServer() {
	srv := heedtest.NewFaultServer(nil, []heedtest.Fault{
		{Kind: heedtest.ResetAfterRequest},
		{Status: http.StatusCreated, Body: "order 7"},
	})
	defer srv.Close()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for range 2 {
		resp, err := client.Post(srv.URL+"/orders", "application/json", strings.NewReader(`{"item":"tea"}`))
		if err != nil {
			fmt.Println("reset:", errors.Is(err, syscall.ECONNRESET))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	for _, r := range srv.Requests() {
		fmt.Println(r.Method, r.URL, r.Kind, "effect:", r.Effect)
	}
	fmt.Println("effects:", srv.Effects())
	// Output:
	// reset: true
	// 201 order 7
	// POST /orders reset-after-request effect: true
	// POST /orders answer effect: true
	// effects: 2
}
