package chart_test

import (
	"bytes"
	"fmt"

	"github.com/heed-go/heed/cmd/heed/internal/sim/chart"
)

func ExampleWrite() {
	// Calls per 100 ms bucket, drawn as steps.
	x, y := chart.Histogram([]float64{12, 40, 95, 130, 180, 420}, 100)
	c := chart.Chart{
		Title:  "Calls to the origin",
		XLabel: "time (ms)",
		YLabel: "calls per 100 ms",
		Series: []chart.Series{{Name: "calls", X: x, Y: y}},
		Step:   true,
	}
	var buf bytes.Buffer
	if err := chart.Write(c, &buf, "svg"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(x, y)
	fmt.Println(bytes.Contains(buf.Bytes(), []byte("Calls to the origin")))
	// Output:
	// [0 100 200 300 400] [3 2 0 0 1]
	// true
}
