package heed

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// A buffered request body goes back to the pool only once the call is over
// and every reader handed out is closed: net/http may read a body after
// its RoundTrip returned. A reader closed, or one asked for once the call
// is over, reads nothing.
func TestBufferedBodyOutlivesItsReaders(t *testing.T) {
	for _, payload := range []string{"payload", strings.Repeat("payload ", 1000)} { // in the call's room; pooled
		req, _ := http.NewRequest("POST", "http://api.test/", io.NopCloser(strings.NewReader(payload)))
		req.ContentLength = int64(len(payload))
		var room bodyCopy
		rb, err := prepareBody(req, 1<<16, true, func() *bufferedBody { return &room.body })
		if err != nil || rb.buffered == nil || req.GetBody != nil {
			t.Fatalf("not buffered: %v", err)
		}
		if pooled := room.body.buf != nil; pooled != (len(payload) > smallBody) {
			t.Errorf("%d bytes: pooled %v", len(payload), pooled)
		}
		first := rb.takeFirst()
		second, err := rb.get()
		if err != nil {
			t.Fatal(err)
		}
		rb.release() // the call is over
		if b, _ := io.ReadAll(second); string(b) != payload {
			t.Fatalf("a reader after the call's end read %.20q", b)
		}
		first.Close()
		if room.body.data == nil {
			t.Fatal("the buffer went back while a reader was open")
		}
		second.Close()
		if room.body.data != nil || room.body.buf != nil {
			t.Fatal("the buffer was not given back once every reader was closed")
		}
		if _, err := second.Read(make([]byte, 8)); !errors.Is(err, errReqBodyClosed) {
			t.Errorf("read after close: %v", err)
		}
		if _, err := rb.get(); err == nil {
			t.Error("GetBody after the call's end gave a reader")
		}
	}
}

// A first body that never went out (the breaker refused the call, say) is
// closed when the call ends, so its buffer goes back.
func TestBufferedBodyUnsentIsFreed(t *testing.T) {
	req, _ := http.NewRequest("PUT", "http://api.test/", io.NopCloser(strings.NewReader("doc")))
	var room bodyCopy
	rb, err := prepareBody(req, 1<<10, true, func() *bufferedBody { return &room.body })
	if err != nil {
		t.Fatal(err)
	}
	rb.release()
	if room.body.data != nil {
		t.Fatal("the buffer of a body never sent was not given back")
	}
}

// Readers asked for, read and closed from many goroutines while the call
// ends: each reads the whole body or is refused, never another's bytes.
func TestBufferedBodyConcurrentReaders(t *testing.T) {
	for range 50 {
		req, _ := http.NewRequest("POST", "http://api.test/", io.NopCloser(strings.NewReader("the same bytes")))
		var room bodyCopy
		rb, err := prepareBody(req, 1<<10, true, func() *bufferedBody { return &room.body })
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				r, err := rb.get()
				if err != nil {
					return // the call was over: refused
				}
				defer r.Close()
				if b, err := io.ReadAll(r); err != nil || string(b) != "the same bytes" {
					t.Errorf("read %q, %v", b, err)
				}
			})
		}
		rb.release() // the call ends while the readers work
		wg.Wait()
		if room.body.data != nil {
			t.Fatal("the buffer was kept after every reader closed")
		}
	}
}
