package outbox_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/heed-go/heed/outbox"
	"github.com/heed-go/heed/outbox/outboxtest"
)

func TestCorruptEntriesAreRefused(t *testing.T) {
	e := outboxtest.NewEntry(1, outboxtest.T0)
	e.ID, e.LastError, e.Dead = "12", "connection reset", true
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) { // every truncation
		var got outbox.Entry
		if err := got.UnmarshalBinary(b[:n]); !errors.Is(err, outbox.ErrCorrupt) {
			t.Fatalf("%d of %d bytes: err = %v, want ErrCorrupt", n, len(b), err)
		}
	}
	var got outbox.Entry
	if err := got.UnmarshalBinary(append(b, 0)); !errors.Is(err, outbox.ErrCorrupt) {
		t.Errorf("a trailing byte: err = %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 { // random damage must give an error or an entry, never a panic or a huge allocation
		c := append([]byte(nil), b...)
		for range 1 + rng.IntN(4) {
			c[rng.IntN(len(c))] = byte(rng.Uint32())
		}
		var got outbox.Entry
		_ = got.UnmarshalBinary(c)
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	b, _ := outboxtest.NewEntry(1, outboxtest.T0).MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var e outbox.Entry
		if e.UnmarshalBinary(data) != nil {
			return
		}
		again, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var e2 outbox.Entry
		if err := e2.UnmarshalBinary(again); err != nil {
			t.Fatalf("an entry that decoded does not decode after encoding again: %v", err)
		}
	})
}
