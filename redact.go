package heed

import (
	"net/url"
	"strings"

	"github.com/heed-go/heed/internal/redact"
)

// WithSecretPath marks path segments as secrets, to be shown as REDACTED
// wherever heed shows a URL: its log lines, the text of its [*Error], and
// the URL (and error text) of the [Event]s its hooks receive, so that
// heedotel and heedprom never record them. By default heed redacts a URL's
// userinfo and query values but keeps its path, which
// some APIs use for keys and tokens.
//
// A pattern is a path whose segments "*" stand for secrets:
// "/v1/tokens/*" turns /v1/tokens/sk_live_abc/charges into
// /v1/tokens/REDACTED/charges, and "/users/*/keys/*" hides two segments. A
// pattern matches a path with at least as many segments whose segments
// other than "*" are equal (compared unescaped), so a pattern is a prefix:
// what follows it stays. Several patterns, and several WithSecretPath
// options, add up. A pattern that does not start with "/", has no "*"
// segment, an empty segment, or a "*" inside a segment is refused by
// [NewPolicy] and [New].
//
// A policy without this option pays nothing for it.
func WithSecretPath(patterns ...string) Option {
	return optionFunc(func(c *config) {
		if len(patterns) == 0 {
			c.problem("WithSecretPath(): need at least one pattern")
			return
		}
		for _, s := range patterns {
			p, why := parsePathPattern(s)
			if why != "" {
				c.problem("WithSecretPath(%q): %s", s, why)
				continue
			}
			c.secretPaths = append(c.secretPaths, p)
		}
	})
}

// pathPattern is a WithSecretPath pattern split at its slashes, as a path
// is (its first element is the empty one before the leading "/"); "*"
// elements mark secret segments.
type pathPattern []string

// parsePathPattern splits s, or says why it is no pattern.
func parsePathPattern(s string) (pathPattern, string) {
	switch {
	case s == "":
		return nil, "empty pattern"
	case s[0] != '/':
		return nil, `a pattern is a path and starts with "/"`
	}
	p := pathPattern(strings.Split(s, "/"))
	stars := 0
	for _, seg := range p[1:] {
		switch {
		case seg == "":
			return nil, `empty segment (a doubled or trailing "/")`
		case seg == "*":
			stars++
		case strings.Contains(seg, "*"):
			return nil, `"*" stands for a whole segment`
		}
	}
	if stars == 0 {
		return nil, `no "*" segment: nothing to redact`
	}
	return p, ""
}

// matches reports whether the path split into segs starts with p.
func (p pathPattern) matches(segs []string) bool {
	if len(segs) < len(p) {
		return false
	}
	for i, ps := range p {
		if ps != "*" && !segmentIs(segs[i], ps) {
			return false
		}
	}
	return true
}

// segmentIs reports whether the escaped segment seg is lit, escaped or not.
func segmentIs(seg, lit string) bool {
	if seg == lit {
		return true
	}
	if strings.IndexByte(seg, '%') < 0 {
		return false
	}
	d, err := url.PathUnescape(seg)
	return err == nil && d == lit
}

// hidePath returns a copy of u whose path segments that pats mark secret
// are REDACTED, and those segments as they stood in u's escaped path. When
// none is, it returns u itself and nil, without allocating if pats is
// empty.
func hidePath(u *url.URL, pats []pathPattern) (*url.URL, []string) {
	if len(pats) == 0 || u == nil || u.Opaque != "" {
		return u, nil
	}
	segs := strings.Split(u.EscapedPath(), "/")
	var out, secrets []string
	for _, p := range pats {
		if !p.matches(segs) { // against the original segments, so patterns do not hide each other's literals
			continue
		}
		for i, ps := range p {
			if ps != "*" || segs[i] == "" || out != nil && out[i] == redact.Marker {
				continue
			}
			if out == nil {
				out = append([]string(nil), segs...)
			}
			secrets = append(secrets, segs[i])
			out[i] = redact.Marker
		}
	}
	if out == nil {
		return u, nil
	}
	r := *u
	// RawPath keeps the other segments' escaping (%2F stays one segment);
	// Path is its unescaped form, as url.Parse would set it.
	r.RawPath = strings.Join(out, "/")
	r.Path, _ = url.PathUnescape(r.RawPath)
	return &r, secrets
}

// redactURL redacts u as redact.URL does, and hides the path segments c
// marks secret.
func (c *config) redactURL(u *url.URL) string { return redactURLPaths(u, c.secretPaths) }

// redactURLPaths redacts u as redact.URL does, and hides the segments pats
// mark.
func redactURLPaths(u *url.URL, pats []pathPattern) string {
	hidden, _ := hidePath(u, pats)
	return redact.URL(hidden)
}

// hideEvent returns e with its URL's secrets REDACTED (userinfo, query
// values, and the path segments c marks secret), and its error wrapped with
// its text redacted when that text shows them: hooks record both.
func (c *config) hideEvent(e Event) Event {
	if e.URL == nil {
		return e
	}
	hidden, secrets := hidePath(e.URL, c.secretPaths)
	if secrets == nil && e.URL.User == nil && e.URL.RawQuery == "" {
		return e
	}
	if e.Err != nil {
		t := e.Err.Error()
		if rt := redactText(t, e.URL, c.secretPaths); rt != t {
			e.Err = &redactedError{err: e.Err, text: rt}
		}
	}
	e.URL = redact.Copy(hidden)
	return e
}

// redactedError is an error shown with secrets removed from its text. It
// unwraps to the original, so errors.Is and errors.As still see it.
type redactedError struct {
	err  error
	text string
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }
