package boltstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heed-go/heed/outbox/boltstore"
	"github.com/heed-go/heed/outbox/outboxtest"
)

// BenchmarkAdd measures durable adds (fsync on commit) from 1 to 256
// writers at once: ns/op is the time per entry, so 1e9/(ns/op) is the
// entries a second. Group commit lets many writers share a commit.
//
//	go test ./outbox/boltstore -run xxx -bench Add -benchtime 2s
func BenchmarkAdd(b *testing.B) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "outbox.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			e := outboxtest.NewEntry(1, outboxtest.T0)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						c := *e
						if err := s.Add(context.Background(), &c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
