package bench

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkOverheadRatio measures the hot path of every contender in
// interleaved batches (bare, heed, ..., bare, heed, ...), so that a noisy
// machine's slow spells hit all of them alike, and reports the median time
// per request of each and each one's overhead over bare (contender minus
// bare, in ns). Run it once:
//
//	go test -run xxx -bench OverheadRatio -benchtime 1x
func BenchmarkOverheadRatio(b *testing.B) {
	base := &Canned{Body: []byte(`{"id":42,"name":"heed"}`)}
	paths := hotPaths(b, base)
	const rounds, batch = 300, 2000
	for b.Loop() {
		per := make([][]float64, len(paths))
		req, _ := http.NewRequest(http.MethodGet, "http://api.example/v1/items/42", nil)
		for range rounds {
			for i, c := range paths {
				start := time.Now()
				for range batch {
					resp, err := c.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				per[i] = append(per[i], float64(time.Since(start).Nanoseconds())/batch)
			}
		}
		median := func(xs []float64) float64 {
			slices.Sort(xs)
			return xs[len(xs)/2]
		}
		bare := median(per[0])
		over := map[string]float64{}
		for i, c := range paths {
			m := median(per[i])
			b.ReportMetric(m, c.name+"-ns/op")
			if i > 0 {
				over[c.name] = m - bare
				b.ReportMetric(m-bare, c.name+"-overhead-ns")
			}
		}
		if f := over["failsafe"]; f > 0 {
			b.ReportMetric(over["heed"]/f, "heed/failsafe-overhead")
		}
	}
}
