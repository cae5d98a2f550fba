package heedtest

import (
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

// The request examples of RFC 7541 Appendix C.4 (Huffman-coded, sharing a
// dynamic table) and C.3 (the same without Huffman coding).
func TestHpackDecodeRFCExamples(t *testing.T) {
	for _, tc := range []struct {
		name   string
		blocks []string
		want   [][]hfield
	}{
		{"C.3", []string{
			"828684410f7777772e6578616d706c652e636f6d",
			"828684be58086e6f2d6361636865",
			"828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
		}, rfcRequests},
		{"C.4", []string{
			"828684418cf1e3c2e5f23a6ba0ab90f4ff",
			"828684be5886a8eb10649cbf",
			"828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
		}, rfcRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := hpackDecoder{maxSize: 4096}
			for i, h := range tc.blocks {
				b, err := hex.DecodeString(h)
				if err != nil {
					t.Fatal(err)
				}
				got, err := d.decode(b)
				if err != nil {
					t.Fatalf("block %d: %v", i, err)
				}
				if !slices.Equal(got, tc.want[i]) {
					t.Errorf("block %d = %v, want %v", i, got, tc.want[i])
				}
			}
			if d.size != 164 {
				t.Errorf("dynamic table of %d bytes, want 164", d.size)
			}
		})
	}
}

var rfcRequests = [][]hfield{
	{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "www.example.com"}},
	{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "www.example.com"}, {"cache-control", "no-cache"}},
	{{":method", "GET"}, {":scheme", "https"}, {":path", "/index.html"}, {":authority", "www.example.com"}, {"custom-key", "custom-value"}},
}

func TestHpackRejectsMalformed(t *testing.T) {
	for _, h := range []string{
		"80",                   // index 0
		"ff00",                 // an index past both tables
		"41",                   // a literal missing its value
		"4185",                 // a string longer than the block
		"4181ff",               // Huffman code of 8 ones: padding longer than 7 bits
		"7fffffffffffffffffff", // an integer that does not end
	} {
		b, _ := hex.DecodeString(h)
		d := hpackDecoder{maxSize: 4096}
		if got, err := d.decode(b); err == nil {
			t.Errorf("%s decoded as %v", h, got)
		}
	}
}

// Every byte value survives Huffman coding; the encoder here is the RFC's
// canonical code rebuilt from the same lengths.
func TestHuffmanRoundTrip(t *testing.T) {
	var s strings.Builder
	for c := range 256 {
		s.WriteByte(byte(c))
	}
	in := s.String() + "custom-value"
	got, err := huffmanDecode(huffmanEncode(in))
	if err != nil || got != in {
		t.Fatalf("round trip: %q, %v", got, err)
	}
}

func huffmanEncode(s string) []byte {
	t := huffman()
	code := map[byte][2]int{} // symbol -> code, length
	for l := 1; l <= 30; l++ {
		for k := range t.count[l] {
			code[t.symbols[t.start[l]+k]] = [2]int{t.first[l] + k, l}
		}
	}
	var out []byte
	var acc uint64
	n := 0
	for i := range len(s) {
		c := code[s[i]]
		acc = acc<<c[1] | uint64(c[0])
		n += c[1]
		for n >= 8 {
			out = append(out, byte(acc>>(n-8)))
			n -= 8
		}
	}
	if n > 0 {
		out = append(out, byte(acc<<(8-n))|byte(1<<(8-n)-1))
	}
	return out
}
