// Package redact keeps secrets out of the URLs and error texts heed logs and
// its adapters record.
package redact

import (
	"net/url"
	"strings"
)

// Marker is what stands in place of a secret.
const Marker = "REDACTED"

// URL returns u as a string with its userinfo and the values of its
// query parameters replaced by REDACTED, so it can be logged: API keys and
// tokens often travel in either. Parameter names stay, for debugging; a
// parameter without "=" is replaced whole, since it may be the token
// itself (?SECRETFLAG). Path segments stay: mark the secret ones with
// heed.WithSecretPath.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return Copy(u).String()
}

// Copy returns u itself when it holds no userinfo or query, else a copy
// with them redacted as [URL] redacts them.
func Copy(u *url.URL) *url.URL {
	if u == nil || u.User == nil && u.RawQuery == "" {
		return u
	}
	r := *u
	if r.User != nil {
		r.User = url.User(Marker)
	}
	if r.RawQuery != "" {
		parts := strings.Split(r.RawQuery, "&")
		for i, kv := range parts {
			if k, _, ok := strings.Cut(kv, "="); ok {
				parts[i] = k + "=" + Marker
			} else if kv != "" {
				parts[i] = Marker
			}
		}
		r.RawQuery = strings.Join(parts, "&")
	}
	return &r
}

// Text returns s with the secrets of u that [URL] hides (its userinfo,
// its query values and its query parameters without "=") and the path
// segments segs replaced by REDACTED: for an error's text, which may quote
// the URL it failed on. u's text is replaced by hidden's Marker form
// (hidden is u with segs already replaced). A secret elsewhere in s is
// replaced where it stands as in a URL ("=value", "user:password@",
// "?token", "/segment"), and anywhere once it is 6 characters or longer,
// so that short values such as page=2 do not garble the text.
func Text(s string, u, hidden *url.URL, segs []string) string {
	if u == nil {
		return s
	}
	if u.User == nil && u.RawQuery == "" && len(segs) == 0 {
		return s
	}
	s = strings.ReplaceAll(s, u.String(), URL(hidden))
	replace := func(v, before, after string) {
		if v == "" {
			return
		}
		s = strings.ReplaceAll(s, before+v+after, before+Marker+after)
		if len(v) >= minSecret {
			s = strings.ReplaceAll(s, v, Marker)
		}
	}
	if u.User != nil {
		replace(u.User.String(), "", "@")
		if pw, ok := u.User.Password(); ok {
			replace(pw, ":", "@")
		}
	}
	for kv := range strings.SplitSeq(u.RawQuery, "&") {
		if _, v, ok := strings.Cut(kv, "="); ok {
			replace(v, "=", "")
			if dv, err := url.QueryUnescape(v); err == nil && dv != v {
				replace(dv, "=", "")
			}
		} else if kv != "" {
			s = hideToken(s, kv, "?&")
			if dk, err := url.QueryUnescape(kv); err == nil && dk != kv {
				s = hideToken(s, dk, "?&")
			}
		}
	}
	for _, v := range segs {
		s = hideToken(s, v, "/")
		if dv, err := url.PathUnescape(v); err == nil && dv != v {
			s = hideToken(s, dv, "/")
		}
	}
	return s
}

// hideToken replaces v in s where it stands whole right after one of the
// bytes of marks, as a query key or a path segment does in a URL, and
// anywhere once it is minSecret long. "Whole" keeps a short secret such as
// the 1 of /users/1 from garbling HTTP/1.1 or /users/12.
func hideToken(s, v, marks string) string {
	if v == "" {
		return s
	}
	if len(v) >= minSecret {
		return strings.ReplaceAll(s, v, Marker)
	}
	var b strings.Builder
	last := 0
	for i := 0; i+len(v) <= len(s); {
		j := strings.Index(s[i:], v)
		if j < 0 {
			break
		}
		at, end := i+j, i+j+len(v)
		if at > 0 && strings.IndexByte(marks, s[at-1]) >= 0 && (end == len(s) || !tokenByte(s[end])) {
			b.WriteString(s[last:at])
			b.WriteString(Marker)
			last = end
			i = end
			continue
		}
		i = at + 1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// tokenByte reports whether c may continue a query key or a path segment:
// a letter, a digit, or one of "-._~%+".
func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~%+", c) >= 0
}

// minSecret is the length from which Text replaces a secret wherever
// it appears.
const minSecret = 6
