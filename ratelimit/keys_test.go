package ratelimit_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/heed-go/heed/ratelimit"
)

func TestByRemoteAddr(t *testing.T) {
	trusted := ratelimit.ByRemoteAddr(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"))
	plain := ratelimit.ByRemoteAddr()
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusting     string // the key with trusted proxies
		plain        string // the key without
	}{
		{"direct client", "203.0.113.5:1234", nil, "203.0.113.5", "203.0.113.5"},
		{"spoofed XFF from an untrusted peer", "203.0.113.5:1234", []string{"198.51.100.1"}, "203.0.113.5", "203.0.113.5"},
		{"one trusted proxy", "10.0.0.1:1234", []string{"198.51.100.7"}, "198.51.100.7", "10.0.0.1"},
		{"client's spoof left of the proxy's entry", "10.0.0.1:1234", []string{"1.1.1.1, 198.51.100.7"}, "198.51.100.7", "10.0.0.1"},
		{"two trusted proxies", "10.0.0.1:1234", []string{"1.1.1.1, 198.51.100.7, 10.0.0.2"}, "198.51.100.7", "10.0.0.1"},
		{"several field lines, rightmost last", "10.0.0.1:1234", []string{"1.1.1.1", "198.51.100.7 , 10.0.0.9"}, "198.51.100.7", "10.0.0.1"},
		{"garbage stops at the last trusted hop", "10.0.0.1:1234", []string{"198.51.100.7, nonsense"}, "10.0.0.1", "10.0.0.1"},
		{"every hop trusted: the leftmost", "10.0.0.1:1234", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3", "10.0.0.1"},
		{"a port in XFF", "10.0.0.1:1234", []string{"198.51.100.7:5555"}, "198.51.100.7", "10.0.0.1"},
		{"IPv6 keyed by /64", "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{"IPv6 behind a v6 proxy", "[fd00::1]:443", []string{"[2001:db8::99]:1000"}, "2001:db8::/64", "fd00::/64"},
		{"v4-mapped peer", "[::ffff:203.0.113.5]:80", nil, "203.0.113.5", "203.0.113.5"},
		{"trusted v4-mapped proxy", "[::ffff:10.0.0.1]:80", []string{"198.51.100.7"}, "198.51.100.7", "10.0.0.1"},
		{"bracketed IPv6 in XFF", "[fd00::1]:443", []string{"[2001:db8::99]"}, "2001:db8::/64", "fd00::/64"},
		{"not an IP", "@", nil, "@", "@"},
		{"empty", "", nil, "-", "-"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := trusted(r); got != c.trusting {
			t.Errorf("%s, trusting: key %q, want %q", c.name, got, c.trusting)
		}
		if got := plain(r); got != c.plain {
			t.Errorf("%s, trusting none: key %q, want %q", c.name, got, c.plain)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("an invalid prefix did not panic")
		}
	}()
	ratelimit.ByRemoteAddr(netip.Prefix{})
}

func TestByHeader(t *testing.T) {
	key := ratelimit.ByHeader("x-api-key")
	for _, c := range []struct{ name, value, want string }{
		{"a key", "sk_live_abc", "sk_live_abc"},
		{"trimmed", "  sk_live_abc ", "sk_live_abc"},
		{"absent: the address", "", "192.0.2.1"},
		{"an IP kept apart from the addresses", "192.0.2.99", "header:192.0.2.99"},
		{"a prefix kept apart too", "2001:db8::/64", "header:2001:db8::/64"},
		{"a JWT is not an address", "eyJ.eyJ.sig", "eyJ.eyJ.sig"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		if c.value != "" {
			r.Header.Set("X-Api-Key", c.value)
		}
		if got := key(r); got != c.want {
			t.Errorf("%s: key %q, want %q", c.name, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Api-Key", strings.Repeat("k", 10000))
	got := key(r)
	if !strings.HasPrefix(got, "header-sha256:") || len(got) != len("header-sha256:")+64 {
		t.Errorf("a 10 kB key became %q", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("an empty name did not panic")
		}
	}()
	ratelimit.ByHeader("")
}

func TestKeysDoNotAllocateForIPv4(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	byAddr := ratelimit.ByRemoteAddr(netip.MustParsePrefix("10.0.0.0/8"))
	byHeader := ratelimit.ByHeader("X-Api-Key")
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1234"
	r.Header.Set("X-Forwarded-For", "1.1.1.1, 198.51.100.7")
	r.Header.Set("X-Api-Key", "sk_live_abc")
	if n := testing.AllocsPerRun(100, func() { byAddr(r) }); n != 0 {
		t.Errorf("ByRemoteAddr through a proxy: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { byHeader(r) }); n != 0 {
		t.Errorf("ByHeader: %v allocations", n)
	}
}
