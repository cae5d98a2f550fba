package heed_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heed-go/heed"
)

// net/http reports a connection that closed under a request with errors
// it does not export: heed recognises them by their text, and retries
// them for requests safe to repeat. The texts are pinned against the
// net/http source of the Go that runs the test, so a Go release that
// rewords them fails here rather than silently.
func TestClosedConnErrors(t *testing.T) {
	texts := []string{"http: server closed idle connection", "transport connection broken"}
	src := netHTTPSource(t, "transport.go")
	for _, s := range texts {
		if !strings.Contains(src, s) {
			t.Errorf("net/http no longer says %q: update closedConn", s)
		}
	}

	p := mustPolicy(t)
	for _, e := range []error{
		errors.New("http: server closed idle connection"),
		fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", errors.New("http: putIdleConn: too many idle connections")),
	} {
		get := heed.Outcome{Attempt: 1, Err: e, Idempotent: true, Replayable: true}
		if d := p.Decide(get, heed.When{Now: t0}); !d.Retry || d.Kind != heed.KindEOF {
			t.Errorf("%v on a GET: %+v, want a retry of kind eof", e, d)
		}
		post := heed.Outcome{Attempt: 1, Err: e, Replayable: true, Request: &http.Request{Method: http.MethodPost}}
		if d := p.Decide(post, heed.When{Now: t0}); d.Retry || d.Reason != heed.ErrNotIdempotent {
			t.Errorf("%v on a POST without a key: %+v, want no retry (the server may have it)", e, d)
		}
	}
}

// net/http's HTTP/2 errors are unexported types or plain errors: heed
// knows them by their text, pinned here against the net/http source. A
// refused stream was not processed, so even a POST is sent again; a
// connection lost or closed by GOAWAY may have carried the request, so
// only a request safe to repeat is.
func TestHTTP2Errors(t *testing.T) {
	src := netHTTPSource(t, "h2_bundle.go")
	for _, s := range []string{
		"server sent GOAWAY and closed the connection", "client connection lost", "client conn is closed",
		"client conn not usable", "graceful shutdown GOAWAY", "client connection force closed",
		`"stream error: stream ID %d; %v"`, `"REFUSED_STREAM"`, `"INTERNAL_ERROR"`, `"ENHANCE_YOUR_CALM"`,
	} {
		if !strings.Contains(src, s) {
			t.Errorf("net/http no longer says %s: update h2ConnFailure", s)
		}
	}

	p := mustPolicy(t)
	for _, tc := range []struct {
		err      error
		kind     heed.ErrorKind
		postToo  bool // retried even without a key: never processed
		retryGet bool
	}{
		{errors.New("stream error: stream ID 3; REFUSED_STREAM"), heed.KindRefused, true, true},
		{fmt.Errorf("http2: Transport: cannot retry err [%v] after Request.Body was written; define Request.GetBody to avoid this error", "stream error: stream ID 5; REFUSED_STREAM"), heed.KindRefused, true, true},
		{errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), heed.KindReset, false, true},
		{errors.New("stream error: stream ID 3; ENHANCE_YOUR_CALM"), heed.KindReset, false, true},
		{errors.New("stream error: stream ID 3; PROTOCOL_ERROR"), heed.KindOther, false, false},
		{errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=INTERNAL_ERROR, debug=""`), heed.KindEOF, false, true},
		{errors.New("http2: client connection lost"), heed.KindEOF, false, true},
		{errors.New("http2: client conn not usable"), heed.KindEOF, true, true},
		{errors.New("http2: Transport received Server's graceful shutdown GOAWAY"), heed.KindEOF, true, true},
		{&url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}}, heed.KindEOF, false, true},
	} {
		get := heed.Outcome{Attempt: 1, Err: tc.err, Idempotent: true, Replayable: true}
		if d := p.Decide(get, heed.When{Now: t0}); d.Retry != tc.retryGet || d.Kind != tc.kind {
			t.Errorf("%v on a GET: %+v, want retry %v of kind %q", tc.err, d, tc.retryGet, tc.kind)
		}
		post := heed.Outcome{Attempt: 1, Err: tc.err, Replayable: true, Request: &http.Request{Method: http.MethodPost}}
		if d := p.Decide(post, heed.When{Now: t0}); d.Retry != tc.postToo {
			t.Errorf("%v on a POST without a key: %+v, want retry %v", tc.err, d, tc.postToo)
		}
	}
}

// netHTTPSource returns a file of the net/http source of the Go running the
// test, or skips the test where the source is not installed.
func netHTTPSource(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "src", "net", "http", name))
	if err != nil {
		t.Skipf("net/http source: %v", err)
	}
	return string(src)
}
