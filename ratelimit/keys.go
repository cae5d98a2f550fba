package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
)

// maxHeaderKey bounds the length of a header value kept as a key: longer
// values are kept as their SHA-256, so that a client cannot make the store
// hold megabytes per key.
const maxHeaderKey = 128

// ByHeader keys requests by the value of the header name, such as an API
// key; a request without it (or with an empty value) is keyed by its
// remote address, as [ByRemoteAddr] with no trusted proxies keys it.
//
// A value that reads as an IP address or prefix is kept apart from the
// addresses ("header:" is put before it), so that a client cannot spend
// the quota of another client's address by sending it as its key; a value
// longer than 128 bytes is kept as its SHA-256 ("header-sha256:<hex>").
// Both cost an allocation; an ordinary value costs none.
//
// Key by a header only once the value is checked (run the limiter after
// authentication, or use Key to look the value up): any client can send
// any value, and each new value starts with full windows. It panics if
// name is empty.
func ByHeader(name string) func(*http.Request) string {
	if name == "" {
		panic("ratelimit: ByHeader needs a header name")
	}
	canon := http.CanonicalHeaderKey(name)
	return func(r *http.Request) string {
		var v string
		if vs := r.Header[canon]; len(vs) > 0 {
			v = strings.TrimSpace(vs[0])
		}
		switch {
		case v == "":
			return remoteKey(r, nil)
		case len(v) > maxHeaderKey:
			sum := sha256.Sum256([]byte(v))
			return "header-sha256:" + hex.EncodeToString(sum[:])
		case looksLikeAddr(v):
			return "header:" + v
		}
		return v
	}
}

// looksLikeAddr reports whether v could be a key ByRemoteAddr makes. The
// character screen keeps ordinary values away from netip's parsers, whose
// errors allocate.
func looksLikeAddr(v string) bool {
	if !strings.ContainsAny(v, ".:") {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '%' {
			break // an IPv6 zone may hold anything
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == '.' || c == ':' || c == '/') {
			return false
		}
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(v)
	return err == nil
}

// ByRemoteAddr keys requests by the client's IP address. IPv4 addresses
// are keys as they are; IPv6 addresses are keyed by their /64, since one
// client (one home, one cloud instance) is usually given a whole /64 and
// could otherwise take a fresh quota from each of its 2^64 addresses.
//
// With no trusted prefixes the client is the connection's peer
// (Request.RemoteAddr) and X-Forwarded-For is ignored: anyone can send it.
// When the peer is in a trusted prefix (a load balancer or reverse proxy
// of one's own), X-Forwarded-For is read from the right, where each proxy
// appends the peer it saw: the client is the first address, going left,
// that is not itself trusted. So what a client writes into the field is
// never believed: its own proxy appends the client's real address to
// the right of it. If every address is trusted, the leftmost is the
// client; an entry that is not an address (garbage a proxy passed on)
// stops the walk, and the last trusted hop is the client. Entries may
// carry a port ("192.0.2.1:4711", "[2001:db8::1]:4711"). The Forwarded
// field (RFC 7239) is not read.
//
// A key costs no allocation for IPv4, one for IPv6. It panics if a prefix
// is not valid.
func ByRemoteAddr(trusted ...netip.Prefix) func(*http.Request) string {
	tr := make([]netip.Prefix, len(trusted))
	for i, p := range trusted {
		if !p.IsValid() {
			panic("ratelimit: ByRemoteAddr: invalid trusted prefix " + p.String())
		}
		tr[i] = p.Masked()
	}
	return func(r *http.Request) string { return remoteKey(r, tr) }
}

// remoteKey is ByRemoteAddr's key for r.
func remoteKey(r *http.Request, trusted []netip.Prefix) string {
	if len(trusted) == 0 {
		if host, ok := ipv4Host(r.RemoteAddr); ok {
			return host // the common case, without parsing: net/http wrote it
		}
	}
	peer, text, ok := parseHop(r.RemoteAddr)
	if !ok {
		if r.RemoteAddr == "" {
			return "-"
		}
		return r.RemoteAddr // not an IP (a Unix socket, a test): itself
	}
	if len(trusted) == 0 || !isTrusted(peer, trusted) {
		return addrKey(peer, text)
	}
	lines := r.Header["X-Forwarded-For"]
	for li := len(lines) - 1; li >= 0; li-- {
		v := lines[li]
		for v != "" {
			elem := v
			if i := strings.LastIndexByte(v, ','); i >= 0 {
				elem, v = v[i+1:], v[:i]
			} else {
				v = ""
			}
			elem = strings.TrimSpace(elem)
			if elem == "" {
				continue
			}
			a, t, ok := parseHop(elem)
			if !ok {
				return addrKey(peer, text) // garbage: the last hop believed
			}
			peer, text = a, t
			if !isTrusted(a, trusted) {
				return addrKey(peer, text)
			}
		}
	}
	return addrKey(peer, text)
}

// ipv4Host returns the host of "d.d.d.d:port", the form net/http gives an
// IPv4 peer, having checked only its characters.
func ipv4Host(s string) (string, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 7 || i > 15 {
		return "", false
	}
	for j := 0; j < i; j++ {
		if c := s[j]; c != '.' && (c < '0' || c > '9') {
			return "", false
		}
	}
	return s[:i], true
}

// parseHop reads an address with or without a port, and returns it with
// the text of the address alone. It tries the form s has (a port follows
// a bracketed IPv6 address, or the one colon of an IPv4 address), since a
// failed parse allocates its error.
func parseHop(s string) (netip.Addr, string, bool) {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1] // a bracketed IPv6 address without a port
	}
	if !strings.HasPrefix(s, "[") && strings.Count(s, ":") != 1 {
		a, err := netip.ParseAddr(s)
		return a, s, err == nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, "", false
	}
	host := s[:strings.LastIndexByte(s, ':')]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return ap.Addr(), host, true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrKey is the key of address a, whose text is text. An IPv4 address
// that parsed is its own canonical text (netip refuses other spellings),
// so the key is a piece of a string the request holds already.
func addrKey(a netip.Addr, text string) string {
	switch {
	case a.Is4():
		return text
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}
