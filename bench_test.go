package heed_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/heed-go/heed"
)

// canned answers 200 with a small body, like a fast local server would,
// without any network: what is left is the cost of the layers around it.
type canned struct {
	body []byte
	// ignoreBody leaves the request body alone, as test doubles often do;
	// by default canned reads and closes it, as every real transport does.
	ignoreBody bool
}

// RoundTrip is never inlined: like a real transport's, its response
// escapes, so "bare" is not flattered by the compiler.
//
//go:noinline
func (c *canned) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && !c.ignoreBody {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       req,
	}, nil
}

func benchRoundTrip(b *testing.B, rt http.RoundTripper) {
	req, _ := http.NewRequest(http.MethodGet, "http://api.example/v1/items", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkCanned200(b *testing.B) {
	base := &canned{body: []byte(`{"ok":true}`)}
	t, err := heed.New(heed.WithBase(base))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("bare", func(b *testing.B) { benchRoundTrip(b, base) })
	b.Run("heed", func(b *testing.B) { benchRoundTrip(b, t) })
}
