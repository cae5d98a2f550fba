package heed_test

import (
	"errors"
	"fmt"
	"net/http"
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
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "src", "net", "http", "transport.go"))
	if err != nil {
		t.Skipf("net/http source: %v", err)
	}
	for _, s := range texts {
		if !strings.Contains(string(src), s) {
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
