package audit

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/heed-go/heed/internal/tierctx"
)

// The layers whose retry markers the package knows, by the names they carry
// in a [Snapshot] (and in metric labels).
const (
	// LayerHeed is a heed client: Heed-Attempt: N on its retries (N >= 2),
	// nothing on a first attempt.
	LayerHeed = "heed"
	// LayerEnvoy is Envoy (and the meshes built on it, Istio among them)
	// with include_request_attempt_count: x-envoy-attempt-count: N on
	// every attempt, 1 on the first.
	LayerEnvoy = "envoy"
	// LayerGRPC is a gRPC client with a retry or hedging policy:
	// grpc-previous-rpc-attempts: N, the number of attempts before this
	// one; absent (or 0) on the first.
	LayerGRPC = "grpc"
	// LayerAWS is an AWS SDK: amz-sdk-request: attempt=N; max=M on every
	// attempt, attempt=1 on the first; M is the most the SDK will make.
	LayerAWS = "aws"
)

// The request headers of the built-in layers, in canonical form.
const (
	HeaderHeed  = tierctx.Attempt              // Heed-Attempt
	HeaderEnvoy = "X-Envoy-Attempt-Count"      // x-envoy-attempt-count
	HeaderGRPC  = "Grpc-Previous-Rpc-Attempts" // grpc-previous-rpc-attempts
	HeaderAWS   = "Amz-Sdk-Request"            // amz-sdk-request
)

// MaxAttempt is the largest attempt number a marker may carry. A larger
// value (or a negative one, or anything that is not a number) is no retry
// loop's: the marker is counted as malformed and otherwise ignored, so a
// hostile or broken header can neither inflate a maximum nor overflow a
// product. A thousand is far beyond any retry policy's attempts.
const MaxAttempt = 1000

// maxCustom caps the markers a Config may add to the built-in ones: each
// costs every request a header lookup.
const maxCustom = 4

// Marker describes the retry marker of a layer of your own: a retry loop
// in your code, a gateway, or any proxy that can put its attempt number in
// a request header. The value must be a decimal integer.
type Marker struct {
	// Layer names the layer in a Snapshot and in metric labels: 1 to 32
	// characters of a-z, 0-9 and _, and none of the built-in names.
	Layer string
	// Header is the request header carrying the number.
	Header string
	// Previous says the value counts the attempts before this one (0 or
	// absent on the first, as gRPC's does); by default it is the attempt's
	// own number (1 on the first, as Envoy's).
	Previous bool
}

// kind says how a layer's value is read.
type kind uint8

const (
	kindAttempt  kind = iota // N, the attempt's number, 1 on the first
	kindPrevious             // N, the attempts before this one, 0 on the first
	kindAWS                  // attempt=N; max=M
)

// layer is one retry marker the Auditor reads.
type layer struct {
	name   string
	header string // canonical
	kind   kind
}

// builtin are the layers every Auditor reads, in the order of a
// Snapshot's Layers.
var builtin = []layer{
	{LayerHeed, HeaderHeed, kindAttempt},
	{LayerEnvoy, HeaderEnvoy, kindAttempt},
	{LayerGRPC, HeaderGRPC, kindPrevious},
	{LayerAWS, HeaderAWS, kindAWS},
}

// layers returns the built-in layers followed by the custom ones, or an
// error naming what is wrong with a custom one.
func layers(custom []Marker) ([]layer, error) {
	if len(custom) > maxCustom {
		return nil, fmt.Errorf("audit: %d markers, at most %d", len(custom), maxCustom)
	}
	out := append([]layer(nil), builtin...)
	for _, m := range custom {
		if !validName(m.Layer, 32) {
			return nil, fmt.Errorf("audit: marker layer %q: want 1 to 32 characters of a-z, 0-9 and _", m.Layer)
		}
		if m.Header == "" {
			return nil, fmt.Errorf("audit: marker %q has no header", m.Layer)
		}
		h := http.CanonicalHeaderKey(m.Header)
		for _, l := range out {
			if l.name == m.Layer {
				return nil, fmt.Errorf("audit: marker layer %q is taken", m.Layer)
			}
			if l.header == h {
				return nil, fmt.Errorf("audit: marker %q: header %s is read by layer %q", m.Layer, h, l.name)
			}
		}
		k := kindAttempt
		if m.Previous {
			k = kindPrevious
		}
		out = append(out, layer{m.Layer, h, k})
	}
	return out, nil
}

// Attempt returns r's attempt number as the built-in markers give it (heed,
// Envoy, gRPC, the AWS SDKs): the highest of them, 1 for a first attempt
// or a request no marker calls a retry. Malformed markers are ignored, as
// an Auditor counts them apart. A request two layers both retried reads
// as the higher of their numbers, not their product. It allocates nothing;
// package shed reads it to shed retries first.
func Attempt(r *http.Request) int {
	n := int64(1)
	for i := range builtin {
		if vs := r.Header[builtin[i].header]; len(vs) > 0 {
			if m := builtin[i].parse(vs); m.state == valid {
				n = max(n, m.attempt)
			}
		}
	}
	return int(n)
}

// validName reports whether s is 1 to n characters of a-z, 0-9 and _.
func validName(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// The states of a parsed marker.
const (
	malformed uint8 = iota
	valid
)

// mark is one layer's marker on one request.
type mark struct {
	state    uint8
	attempt  int64 // 1 for a first attempt
	declared int64 // the most attempts the layer says it makes (aws's max), 0 unknown
}

// parse reads the values of l's header. More than one value is malformed:
// a proxy that joined or repeated the field leaves no way to tell which
// attempt this is.
func (l *layer) parse(values []string) mark {
	if len(values) != 1 {
		return mark{state: malformed}
	}
	v := values[0]
	switch l.kind {
	case kindAttempt:
		if n, ok := number(v); ok && n >= 1 && n <= MaxAttempt {
			return mark{state: valid, attempt: n}
		}
	case kindPrevious:
		if n, ok := number(v); ok && n <= MaxAttempt-1 {
			return mark{state: valid, attempt: n + 1}
		}
	case kindAWS:
		return parseAWS(v)
	}
	return mark{state: malformed}
}

// parseAWS reads amz-sdk-request: fields separated by semicolons, each
// key=value, in any order: attempt (required, 1 to MaxAttempt) and max
// (optional, at least attempt, at most MaxAttempt). Other fields (ttl)
// are skipped. A repeated or bad attempt or max makes the marker
// malformed.
func parseAWS(v string) mark {
	var attempt, most int64
	for len(v) > 0 {
		field := v
		if i := strings.IndexByte(v, ';'); i >= 0 {
			field, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		field = strings.Trim(field, " \t")
		if field == "" {
			continue
		}
		eq := strings.IndexByte(field, '=')
		if eq < 0 {
			return mark{state: malformed}
		}
		key, val := strings.Trim(field[:eq], " \t"), strings.Trim(field[eq+1:], " \t")
		switch {
		case strings.EqualFold(key, "attempt"):
			n, ok := number(val)
			if !ok || attempt != 0 || n < 1 || n > MaxAttempt {
				return mark{state: malformed}
			}
			attempt = n
		case strings.EqualFold(key, "max"):
			n, ok := number(val)
			if !ok || most != 0 || n < 1 || n > MaxAttempt {
				return mark{state: malformed}
			}
			most = n
		}
	}
	if attempt == 0 || most != 0 && most < attempt {
		return mark{state: malformed}
	}
	return mark{state: valid, attempt: attempt, declared: most}
}

// number parses 1 to 9 decimal digits: no sign, no spaces, nothing else.
// Nine digits cannot overflow, and no attempt count needs more.
func number(s string) (int64, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// mulSat multiplies two positive numbers, saturating at 2^62 so that a
// product of several layers' attempts never wraps.
func mulSat(a, b int64) int64 {
	const limit = 1 << 62
	if a > limit/b {
		return limit
	}
	return a * b
}
